"""Files written under an output folder, atomically and without leaving it.

:func:`publish_file` copies one file: the BIDS datasink (:mod:`smriflow.interfaces.bids`) publishes each
derivative and its JSON sidecar with it, after :func:`check_inside` has made sure that no symbolic link on the
way leads out of the output folder. :func:`publish_outputs` copies the outputs a workflow file names with
``path:`` (group tables, figures, the subject HTML report), files or whole folders, to the place they name.
"""

from __future__ import annotations

import filecmp
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from smriflow.utils.atomic import DIR_MODE, atomic_write

__all__ = [
    "OutputPathError",
    "OutsideOutputError",
    "check_inside",
    "publish_file",
    "publish_outputs",
    "resolve_output_path",
]


class OutsideOutputError(ValueError):
    """A write that would land outside the output folder (through ``..`` or a symbolic link)."""


def check_inside(root: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Return ``path`` if it lies inside ``root`` once the symbolic links on its way are followed.

    Folders that do not exist yet are fine (they will be created inside). ``path`` itself may be a symbolic
    link: :func:`publish_file` replaces such a link by the file, it never writes through it.

    Raises
    ------
    OutsideOutputError
        Naming the path and where it leads.
    """
    path, root = Path(path), Path(root).resolve()
    real = path.parent.resolve() / path.name
    if not real.is_relative_to(root):
        raise OutsideOutputError(
            f"{path}: refusing to write outside the output folder {root} (the path leads to {real})"
        )
    return path


def publish_file(
    source: str | os.PathLike, destination: str | os.PathLike, *, root: str | os.PathLike | None = None
) -> bool:
    """Copy ``source`` to ``destination`` atomically; leave an identical ``destination`` untouched.

    The copy is written to a hidden temporary name in the destination folder (same filesystem) and moved
    into place with :func:`os.replace`, so readers see either the old file, the new one or none; a failed
    copy (a full disk, a signal) removes its temporary file. With ``root``, a destination that leads out
    of ``root`` (a symlinked folder on the way) is refused before anything is written, and a destination
    that is itself a symbolic link is replaced by the file, never written through.

    Returns
    -------
    bool
        ``True`` when the file was written, ``False`` when an identical copy was already there.

    Raises
    ------
    OutsideOutputError
        When ``destination`` leads out of ``root``.
    OSError
        When the copy fails; the message names ``destination`` (e.g. ``No space left on device``).
    """
    destination = Path(destination)
    if root is not None:
        check_inside(root, destination)
    if (
        destination.is_file()
        and not destination.is_symlink()
        and filecmp.cmp(source, destination, shallow=False)
    ):
        return False
    try:
        atomic_write(destination, lambda temporary: shutil.copyfile(source, temporary))
    except OSError as exc:
        if exc.errno is None:
            raise
        raise OSError(exc.errno, f"cannot write the derivative ({exc.strerror})", str(destination)) from exc
    return True


class OutputPathError(ValueError):
    """An output path that would leave the output folder, or a value that cannot go where it is asked."""


def resolve_output_path(output_dir: str | Path, relative: str) -> Path:
    """``output_dir / relative``, refused when it (or a symlink on the way) leads outside ``output_dir``.

    Raises
    ------
    OutputPathError
        For an absolute path, ``..``, or a symbolic link that points out of the output folder.
    """
    root = Path(output_dir).resolve()
    if Path(relative).is_absolute() or ".." in Path(relative).parts:
        raise OutputPathError(f"output path {relative!r} must be relative and stay inside {root}")
    target = root / relative
    # Resolve what already exists on the way (a symlinked folder would redirect the write).
    if not target.resolve().is_relative_to(root):
        raise OutputPathError(f"output path {relative!r} leads outside {root} (through a symbolic link)")
    return target


def publish_outputs(
    value: str | Path | Sequence[str | Path], output_dir: str | Path, relative: str
) -> list[Path]:
    """Copy ``value`` to ``output_dir/relative``; return the paths written.

    Parameters
    ----------
    value : path or list of paths
        A file, a directory or a list of files.
    output_dir : path
        The run's output folder.
    relative : str
        Where to write, relative to ``output_dir``. Ending in ``/`` it is a folder that receives the file,
        each file of the list, or the entries of the directory (keeping their names); otherwise the file
        or the directory itself is written under that name.

    Each file appears only complete: it is copied to a hidden temporary name beside its final one and
    renamed into place; a directory is copied whole to a temporary directory, then swapped in.

    Raises
    ------
    OutputPathError
        When the path leaves the output folder, or a list or directory is given a file name.
    FileNotFoundError
        When a value does not exist.
    """
    target = resolve_output_path(output_dir, relative)
    items = [Path(item) for item in ([value] if isinstance(value, str | Path) else value)]
    for item in items:
        if not item.exists():
            raise FileNotFoundError(f"output {relative!r}: {item} does not exist")
    if relative.endswith("/"):
        written: list[Path] = []
        for item in items:
            entries = sorted(item.iterdir()) if item.is_dir() else [item]
            for entry in entries:
                written.append(_copy(entry, resolve_output_path(output_dir, relative + entry.name)))
        return written
    if len(items) != 1:
        raise OutputPathError(
            f"output path {relative!r} names one file but the output holds {len(items)}; end it with '/' "
            "to write them into a folder"
        )
    return [_copy(items[0], target)]


def _copy(source: Path, target: Path) -> Path:
    if source.is_dir():
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            shutil.copytree(source, staging, dirs_exist_ok=True)
            os.chmod(staging, DIR_MODE)  # mkdtemp makes 0700
            if target.is_dir() and not target.is_symlink():
                retired = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
                os.replace(target, retired / target.name)
                os.replace(staging, target)
                shutil.rmtree(retired, ignore_errors=True)
            else:
                os.replace(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return target

    atomic_write(target, lambda tmp: shutil.copyfile(source, tmp))
    return target
