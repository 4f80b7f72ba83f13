"""Shared bases for smriflow interfaces.

Interfaces that use threads or randomness declare the traits ``num_threads`` (``nohash``) and ``seed``.
The builder fills both from the run-level settings (``--omp-nthreads``/``--seed``): ``seed`` unless the
YAML node sets it, ``num_threads`` through the node's ``n_procs`` (nipype copies one into the other), so
one setting reaches every node (see :func:`smriflow.engine.builder.build_workflow`).
"""

from __future__ import annotations

from nipype.interfaces.base import BaseInterfaceInputSpec, LibraryBaseInterface, SimpleInterface, traits

from smriflow.utils.seed import DEFAULT_SEED

__all__: list[str] = []  # nothing here is a processing step; keep it out of the registry


class ThreadedInputSpec(BaseInterfaceInputSpec):
    """Inputs of an interface whose library runs threads."""

    num_threads = traits.Int(1, usedefault=True, nohash=True, desc="threads the library may use")


class SeededInputSpec(BaseInterfaceInputSpec):
    """Inputs of an interface that draws random numbers."""

    seed = traits.Int(DEFAULT_SEED, usedefault=True, desc="random seed (same seed, same output)")


class AntsPyInputSpec(ThreadedInputSpec, SeededInputSpec):
    """Inputs shared by every antspyx-backed interface."""


class AntsPyInterface(LibraryBaseInterface, SimpleInterface):
    """Base of antspyx-backed interfaces: ``_pkg = "ants"`` makes nipype check the import before running.

    Subclasses call :func:`smriflow.utils.antsenv.import_ants` with ``self.inputs.num_threads`` inside
    ``_run_interface`` (never at module import), so the thread policy is applied before ITK starts.
    """

    _pkg = "ants"
    imports = ("ants",)
