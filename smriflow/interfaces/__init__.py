"""Nipype interfaces: one class per processing step, each a thin shell over a pure function in ``utils``.

Every public class listed in a submodule's ``__all__`` is registered under its class name for YAML workflows
(see :mod:`smriflow.engine.registry`).
"""
