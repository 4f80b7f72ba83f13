"""Thread policy for numerical libraries that read their thread count once per process.

ITK (inside antspyx) reads ``ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS`` when it first builds its thread pool,
and OpenBLAS/MKL/OpenMP read their variables at load time. Setting them *before* a worker process starts
(or before the library is first used in it) is the only way to control them, so the engine sets them once
per run and the interfaces set them again before their lazy ``import ants``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

THREAD_VARIABLES = (
    "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS",
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)


def set_thread_env(num_threads: int) -> None:
    """Set every thread-count variable of :data:`THREAD_VARIABLES` to ``num_threads``.

    Parameters
    ----------
    num_threads : int
        Threads per process, at least 1.
    """
    if int(num_threads) < 1:
        raise ValueError(f"'num_threads' must be at least 1. {num_threads!r} was provided.")
    for var in THREAD_VARIABLES:
        os.environ[var] = str(int(num_threads))


@contextmanager
def thread_env(num_threads: int) -> Iterator[None]:
    """Set the thread variables for the duration of a ``with`` block, then restore them."""
    saved = {var: os.environ.get(var) for var in THREAD_VARIABLES}
    set_thread_env(num_threads)
    try:
        yield
    finally:
        for var, value in saved.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value
