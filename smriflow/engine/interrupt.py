"""Ending a run cleanly on SIGINT (Ctrl-C) and SIGTERM (``kill``, ``scancel``, a container stop).

:func:`termination_as_interrupt` turns SIGTERM into :class:`RunInterrupted` (a ``KeyboardInterrupt``, as
Ctrl-C gives) in the process that runs the graph, so both end :func:`smriflow.engine.run.execute_run` the
same way: :func:`stop_workers` kills the MultiProc worker processes (they would otherwise finish their
node, or outlive the run), and the run returns a summary whose exit code is ``128 + signal`` (130 for
SIGINT, 143 for SIGTERM). Finished nodes stay in the work directory, so the same command resumes; a node
that was killed half-way left no result file there and runs again.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["RunInterrupted", "signal_name", "signal_number", "stop_workers", "termination_as_interrupt"]


class RunInterrupted(KeyboardInterrupt):
    """The run received ``signum`` (SIGTERM); a ``KeyboardInterrupt`` so that code that lets Ctrl-C through
    lets it through too."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = int(signum)


def signal_number(exc: BaseException) -> int:
    """The signal behind an interruption: SIGTERM for :class:`RunInterrupted`, else SIGINT (Ctrl-C)."""
    return int(getattr(exc, "signum", signal.SIGINT))


def signal_name(signum: int) -> str:
    """``SIGINT``, ``SIGTERM``, ..."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


_ACTIVE = False  # whether a run is inside termination_as_interrupt (read in forked children)


def _after_fork_in_child() -> None:
    """MultiProc workers forked during a run: Ctrl-C is for the run's process (which kills the workers),
    so they ignore SIGINT instead of printing a KeyboardInterrupt traceback each; SIGTERM kills them."""
    if _ACTIVE:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


@contextmanager
def termination_as_interrupt() -> Iterator[None]:
    """While active, SIGTERM raises :class:`RunInterrupted` in this process's main thread.

    Processes forked meanwhile (MultiProc workers) ignore SIGINT and die of SIGTERM (see
    :func:`_after_fork_in_child`); the run's process stops them. Outside the main thread (where Python
    cannot set handlers) this does nothing.
    """
    global _ACTIVE
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    owner = os.getpid()

    def handler(signum: int, frame: object) -> None:
        if os.getpid() != owner:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        raise RunInterrupted(signum)

    previous = signal.signal(signal.SIGTERM, handler)
    _ACTIVE = True
    try:
        yield
    finally:
        _ACTIVE = False
        signal.signal(signal.SIGTERM, previous)


def stop_workers(timeout: float = 10.0) -> int:
    """Kill the worker processes this process started (MultiProc's pool), and the programs they started;
    wait for the workers; return how many there were.

    SIGKILL: a worker is in the middle of a node that may take minutes, and nothing it would do on a
    gentler signal is wanted (nipype keeps no result for a node that did not finish).
    """
    children = multiprocessing.active_children()
    descendants = [pid for child in children if child.pid for pid in _descendants(child.pid)]
    for child in children:
        child.kill()
    for pid in descendants:  # e.g. a command-line tool run by a node: it would outlive the run
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    for child in children:
        child.join(timeout)
    return len(children)


def _descendants(pid: int) -> list[int]:
    """The processes below ``pid`` (children, grandchildren, ...), read from ``/proc``; [] elsewhere."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found
