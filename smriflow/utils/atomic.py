"""Atomic file writes: a file appears complete under its name, or not at all.

Every writer of smriflow's outputs and caches goes through :func:`atomic_write`: the content is written to a
hidden temporary file with a unique name (:func:`tempfile.mkstemp`) in the destination folder (same file
system), which is then renamed into place with :func:`os.replace`. Readers see the old file, the new one or
none; two processes writing the same file at once each write their own temporary file, and the last rename
wins with a complete file; a failure (a full disk, a signal) removes the temporary file.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["DIR_MODE", "FILE_MODE", "atomic_write"]


def _umask() -> int:
    mask = os.umask(0)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


#: Permissions of a new file and folder under the process's umask (what ``open()``/``mkdir`` give).
FILE_MODE = 0o666 & ~_umask()
DIR_MODE = 0o777 & ~_umask()


def atomic_write(out: str | os.PathLike, write: Callable[[str], object]) -> Path:
    """Create ``out`` through ``write(temporary_path)`` in the same folder, then rename it into place.

    The temporary file is hidden (``.<name>.<random>``) and keeps ``out``'s extension, so writers that infer
    the format from it (nibabel, matplotlib) work. The file gets the permissions of any new file (``0666``
    less the umask), not the ``0600`` of :func:`tempfile.mkstemp`. A destination that is a symbolic link is
    replaced by the file, never written through.

    Parameters
    ----------
    out : path
        The file to create or replace; missing folders are created.
    write : callable
        Writes the content to the path it is given (a string).

    Returns
    -------
    pathlib.Path
        ``out``.

    Raises
    ------
    OSError
        When creating the folder, writing or renaming fails; an error with an ``errno`` (a full disk, no
        permission) is raised again naming ``out`` instead of the temporary file.
    """
    out = Path(out)
    extension = ".nii.gz" if out.name.endswith(".nii.gz") else out.suffix
    tmp = None
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=extension, dir=out.parent)
        os.close(fd)
        write(tmp)
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, out)
    except OSError as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if exc.errno is None:
            raise
        raise OSError(exc.errno, exc.strerror, str(out)) from exc
    except BaseException:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise
    return out
