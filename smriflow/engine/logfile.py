"""The run's log file: where :func:`log_to_file` sends nipype's and smriflow's logging during a run.

:mod:`smriflow.engine.run` writes ``OUTPUT/logs/run-<time>.log`` through it; the handler turns a log that
cannot be written (a full disk) into one line on stderr, and the loggers are restored after the run.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["log_to_file"]

_NO_LOCK = threading.Lock()


class _LogFile(logging.FileHandler):
    """The run's log file; when it cannot be written (a full disk), one line on stderr instead of a
    traceback for every record."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._failed = threading.Event()
        self._owner = os.getpid()

    def handleError(self, record: logging.LogRecord | None) -> None:  # noqa: N802 (logging's name)
        error = sys.exc_info()[1]
        with self.lock or _NO_LOCK:
            if self._failed.is_set():
                return
            self._failed.set()
        if os.getpid() != self._owner:  # a forked MultiProc worker: the run's process says it once
            return
        reason = getattr(error, "strerror", None) or error
        print(
            f"smriflow: cannot write the log {self.baseFilename} ({reason}); its end is lost", file=sys.stderr
        )

    def flush(self) -> None:
        try:
            super().flush()
        except OSError:
            self.handleError(None)

    def close(self) -> None:
        try:
            super().close()
        except OSError:
            self.handleError(None)


@contextmanager
def log_to_file(path: Path, *, echo: bool = False) -> Iterator[None]:
    """Send the ``nipype``, ``smriflow``, warnings and ``concurrent.futures`` loggers to ``path``.

    With ``echo``, to stderr too. Their handlers are restored afterwards, so a run inside a Python session
    leaves logging as it was.
    """
    handler = _LogFile(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s"))
    handlers: list[logging.Handler] = [handler]
    if echo:
        terminal = logging.StreamHandler()
        terminal.setFormatter(handler.formatter)
        handlers.append(terminal)
    saved = []
    # concurrent.futures logs a traceback when a killed MultiProc worker breaks the pool (Ctrl-C, SIGTERM)
    for name in ("nipype", "smriflow", "py.warnings", "concurrent.futures"):
        named = logging.getLogger(name)
        saved.append((named, named.handlers[:], named.propagate, named.level))
        named.handlers, named.propagate = list(handlers), False
    logging.getLogger("smriflow").setLevel(logging.INFO)
    logging.captureWarnings(True)
    try:
        yield
    finally:
        logging.captureWarnings(False)
        for named, old_handlers, propagate, level in saved:
            named.handlers, named.propagate = old_handlers, propagate
            named.setLevel(level)
        handler.close()
