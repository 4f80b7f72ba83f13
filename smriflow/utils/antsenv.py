"""Import antspyx with smriflow's thread policy applied first."""

from __future__ import annotations

from types import ModuleType

from smriflow.utils.threads import set_thread_env


def import_ants(num_threads: int = 1) -> ModuleType:
    """Return the ``ants`` module after setting the thread variables to ``num_threads``.

    ITK fixes its thread pool the first time a filter runs in a process, so this takes effect only in a
    process that has not used ITK yet (a fresh MultiProc worker or SLURM job). The engine therefore also
    sets the same variables before it starts any worker; see :func:`smriflow.utils.threads.thread_env`.

    Raises
    ------
    ImportError
        With the command to install antspyx, when it is missing.
    """
    set_thread_env(num_threads)
    try:
        import ants
    except ImportError as exc:  # pragma: no cover - antspyx is a hard dependency
        raise ImportError("antspyx is required for this step: pip install antspyx") from exc
    return ants
