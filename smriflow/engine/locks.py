"""One lock file per subject in the output folder, so that two runs never process the same subject at once.

``smriflow run`` takes the lock of every subject it is about to process, as the file
``OUTPUT/.locks/sub-<label>.lock`` (hidden, so BIDS tools ignore it), before anything is written, and
releases it at the end. A second run that asks for a subject in use is refused with one line naming the
subject, the process that holds it and the lock file; runs on *other* subjects of the same folder go on.

The lock is a POSIX record lock (``fcntl.lockf``) on that file, so the operating system releases it when
the holding process ends in any way, ``kill -9`` and a crash of the machine included: a lock file left
behind by a dead run is *stale* and simply taken over by the next run (the file also records the holder's
PID, host, start time and command line, for the message). POSIX locks are not inherited by forked
processes, so the MultiProc workers of a killed run do not keep the lock alive; they work across NFS
clients with a lock manager. On a filesystem without record locks (``ENOLCK``), the PID in the file decides:
a lock whose process is dead on this host is stale, and one taken on another host is held.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from smriflow.engine.derivatives import RunSetupError

__all__ = ["LOCK_FOLDER", "LockedError", "RunLocks", "lock_path", "read_holder"]

#: Folder of the lock files, inside the output folder.
LOCK_FOLDER = ".locks"
_HELD: set[str] = set()  # lock files held by this process (POSIX locks never conflict within one process)
_HELD_GUARD = threading.Lock()


class LockedError(RunSetupError):
    """A subject is being processed by another run; the message names it, the holder and the lock file."""


def lock_path(output_dir: str | os.PathLike, name: str) -> Path:
    """The lock file of ``name`` (``sub-01``, or ``group-<workflow>`` for a group run) in ``output_dir``."""
    return Path(output_dir) / LOCK_FOLDER / f"{name}.lock"


def read_holder(path: str | os.PathLike) -> dict[str, Any]:
    """What a lock file says about its holder (``pid``, ``host``, ``started``, ``command``), or ``{}``."""
    try:
        holder = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def _describe(holder: dict[str, Any]) -> str:
    if not holder:
        return "another process"
    where = f" on {holder['host']}" if holder.get("host") and holder["host"] != socket.gethostname() else ""
    since = f" since {holder['started']}" if holder.get("started") else ""
    return f"process {holder.get('pid', '?')}{where}{since}"


def _pid_alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    return True


class RunLocks:
    """Hold the locks of some subjects in an output folder; all of them or none.

    Parameters
    ----------
    output_dir : path
        The derivatives folder.
    names : iterable of str
        One lock per name, e.g. ``["sub-01", "sub-02"]``.
    what : str
        What the run is (for the holder record), e.g. the workflow name.

    Examples
    --------
    >>> with RunLocks("derivatives", ["sub-01"], what="anat_preproc_wf"):  # doctest: +SKIP
    ...     ...  # a second RunLocks on sub-01 raises LockedError meanwhile
    """

    def __init__(self, output_dir: str | os.PathLike, names: Iterable[str], *, what: str = ""):
        self.output_dir = Path(output_dir)
        self.names = list(dict.fromkeys(names))
        self.what = what
        self._held: dict[Path, int] = {}

    def acquire(self) -> None:
        """Take every lock, or none.

        Raises
        ------
        LockedError
            When some are held by another run (every one of them is named).
        """
        busy: list[str] = []
        for name in self.names:
            path = lock_path(self.output_dir, name)
            holder = self._take(path)
            if holder is not None:
                busy.append(f"{name} is being processed by {_describe(holder)} (lock {path})")
        if busy:
            self.release()
            raise LockedError(
                f"{'; '.join(busy)}; wait for that run to end, or leave "
                f"{'this subject' if len(busy) == 1 else 'these subjects'} out with --participant-label"
            )

    def release(self) -> None:
        """Remove the lock files this object holds and release the locks (and the folder, when empty)."""
        if not self._held:
            return
        for path, fd in self._held.items():
            try:
                path.unlink(missing_ok=True)  # before unlocking: a waiting process sees a new file, or none
            finally:
                os.close(fd)
                with _HELD_GUARD:
                    _HELD.discard(str(path))
        self._held.clear()
        try:
            lock_path(self.output_dir, "x").parent.rmdir()
        except OSError:  # other runs hold locks there, or it is gone already
            pass

    def __enter__(self) -> RunLocks:
        self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    # -- one lock ---------------------------------------------------------------------------------------
    def _take(self, path: Path) -> dict[str, Any] | None:
        """Take the lock at ``path``; return ``None`` on success, else what the file says of its holder."""
        with _HELD_GUARD:
            if str(path) in _HELD:
                return read_holder(path) or {"pid": os.getpid()}
        for _ in range(50):  # a holder may remove the file (or the folder) meanwhile: then retry
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except FileNotFoundError:
                continue
            try:
                locked = self._lock(fd, path)
            except BaseException:
                os.close(fd)
                raise
            if not locked:
                holder = read_holder(path)
                os.close(fd)
                return holder or {"pid": "?"}
            try:
                same = os.fstat(fd).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            record = {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "what": self.what,
                "command": " ".join(sys.argv),
            }
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
            self._held[path] = fd
            with _HELD_GUARD:
                _HELD.add(str(path))
            return None
        raise RunSetupError(f"{path}: cannot take the lock (the file keeps being replaced)")

    @staticmethod
    def _lock(fd: int, path: Path) -> bool:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EAGAIN):
                return False
            if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                raise RunSetupError(f"{path}: cannot take the lock ({exc.strerror})") from exc
            # no record locks here: the PID in the file decides (on another host it cannot be checked)
            holder = read_holder(path)
            if not holder:
                return True
            if holder.get("host") != socket.gethostname():
                return False
            return not _pid_alive(holder.get("pid")) or holder.get("pid") == os.getpid()
        return True
