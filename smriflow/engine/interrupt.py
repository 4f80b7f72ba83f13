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


@contextmanager
def termination_as_interrupt() -> Iterator[None]:
    """While active, SIGTERM raises :class:`RunInterrupted` in this process's main thread.

    Processes forked meanwhile (MultiProc workers) inherit the handler; in them it restores the default
    action and re-sends the signal, so a worker still dies of SIGTERM. Outside the main thread (where
    Python cannot set handlers) this does nothing.
    """
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
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def stop_workers(timeout: float = 10.0) -> int:
    """Kill the worker processes this process started (MultiProc's pool) and wait for them; return how many.

    SIGKILL, because the workers inherited handlers that turn SIGINT/SIGTERM into exceptions inside the node
    they run, and would report it as that node's failure.
    """
    children = multiprocessing.active_children()
    for child in children:
        child.kill()
    for child in children:
        child.join(timeout)
    return len(children)
