"""The ``smriflow`` command: ``run``, ``validate``, ``graph`` and ``list`` (see ``smriflow --help``).

:func:`smriflow.cli.main.main` is the console script; :func:`smriflow.cli.main.get_parser` builds the
argument parser (for the docs). The work itself is done in :mod:`smriflow.engine`, so Python callers and
tests use :func:`smriflow.engine.run.run_bids` directly.
"""

__all__ = ["get_parser", "main"]


def __getattr__(name: str):
    # Lazy, so that importing smriflow.cli does not import nipype.
    if name in __all__:
        from smriflow.cli import main as _main

        return getattr(_main, name)
    raise AttributeError(f"module 'smriflow.cli' has no attribute {name!r}")
