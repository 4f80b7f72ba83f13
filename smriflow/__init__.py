"""smriflow: structural MRI from BIDS to quality-controlled derivatives, as declarative nipype workflows.

Nothing heavy is imported here: ``load_workflow`` and the ``init_<name>_wf`` factories of the packaged
YAML workflows are resolved on first use.
"""

from smriflow._version import __version__

__all__ = ["__version__", "load_workflow", "list_workflows"]


def __getattr__(name: str):
    # Lazy: importing nipype costs ~1 s, and `smriflow --version` should not pay it.
    if name in ("load_workflow", "list_workflows"):
        from smriflow.engine import builder

        return getattr(builder, name)
    if name.startswith("init_") and name.endswith("_wf"):
        from smriflow.engine.builder import packaged_factory

        return packaged_factory(name[len("init_") : -len("_wf")])
    raise AttributeError(f"module 'smriflow' has no attribute {name!r}")
