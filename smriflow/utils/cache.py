"""smriflow's file cache (derived templates, atlas label images) and atomic file writes."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


#: Permissions of a new file and folder under the process's umask (what ``open()``/``mkdir`` give).
FILE_MODE = 0o666 & ~_umask()
DIR_MODE = 0o777 & ~_umask()


def cache_root() -> Path:
    """The cache folder: ``$SMRIFLOW_CACHE``, else ``~/.cache/smriflow``."""
    root = os.environ.get("SMRIFLOW_CACHE") or str(Path.home() / ".cache" / "smriflow")
    return Path(root).expanduser()


def atomic_write(out: Path, write: Callable[[str], None]) -> None:
    """Create ``out`` through ``write(temporary_path)`` in the same folder, then rename it into place.

    Readers never see a half-written file, and two processes filling the same cache entry at once both
    end with a complete one. The temporary file keeps ``out``'s extension so writers that infer the format
    from it (nibabel) work. The file gets the permissions of any new file (``0666`` less the umask), not
    the ``0600`` of :func:`tempfile.mkstemp`.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    extension = "".join(out.suffixes[-2:]) if out.name.endswith(".nii.gz") else out.suffix
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=extension, dir=out.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
