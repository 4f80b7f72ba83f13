"""Shared bases for smriflow interfaces.

Interfaces that use threads or randomness declare the traits ``num_threads`` (``nohash``) and ``seed``.
The builder fills both from the run-level settings (``--omp-nthreads``/``--seed``): ``seed`` unless the
YAML node sets it, ``num_threads`` through the node's ``n_procs`` (nipype copies one into the other), so
one setting reaches every node (see :func:`smriflow.engine.builder.build_workflow`).

An input whose value names something that must be installed (an atlas, a template) says so with the trait
metadata ``resource="atlas"`` or ``resource="template"``; the engine checks such names with
:func:`resource_problem` before anything runs (the interface itself still fails with its own message if run
directly with a missing one).
"""

from __future__ import annotations

from typing import Any

from nipype.interfaces.base import BaseInterfaceInputSpec, LibraryBaseInterface, SimpleInterface, traits

from smriflow.utils.params import Param
from smriflow.utils.seed import DEFAULT_SEED

__all__: list[str] = []  # nothing here is a processing step; keep it out of the registry

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


def param_trait(param: Param, **metadata: Any) -> Any:
    """The input trait of a declared parameter (:class:`~smriflow.utils.params.Param`).

    An Enum of its choices, a Range of its bounds, or a trait of its type; its default used, its doc as
    ``desc``, and the declaration itself as the ``param`` metadata (a test checks the workflow files'
    ``args`` that feed such inputs against it).
    """
    common = {"usedefault": True, "desc": param.doc, "param": param, **metadata}
    if param.choices is not None:
        return traits.Enum(param.choices, **common).clone(param.default)
    if param.low is not None or param.high is not None:
        return traits.Range(
            low=param.type(param.low) if param.low is not None else None,
            high=param.type(param.high) if param.high is not None else None,
            value=param.default,
            exclude_low=param.low_open,
            exclude_high=param.high_open,
            **common,
        )
    kinds = {bool: traits.Bool, int: traits.Int, float: traits.Float, str: traits.Str}
    return kinds[param.type](param.default, **common)


#: The kinds of installed resources an input may name (its ``resource`` trait metadata).
RESOURCE_KINDS = ("atlas", "template")


def resource_problem(kind: str, name: Any) -> str | None:
    """What an input naming an installed ``kind`` accepts, when ``name`` is not installed.

    Parameters
    ----------
    kind : {'atlas', 'template'}
        The input's ``resource`` metadata.
    name : str
        An atlas (its name or BIDS label) or a template. ``""`` is accepted: it means "none" or "from
        elsewhere" for the inputs that allow it (their trait decides whether it is allowed).

    Returns
    -------
    str or None
        ``None`` when the name is installed, else the accepted values as the end of a "must be …" sentence
        (e.g. ``"an installed atlas: one of {'aal', …} or its BIDS label"``).
    """
    if kind not in RESOURCE_KINDS:
        raise ValueError(f"'kind' must be one of {set(RESOURCE_KINDS)}. {kind!r} was provided.")
    if name == "":
        return None
    if kind == "atlas":
        from smriflow.data.atlases import available_atlases, resolve_atlas

        try:
            resolve_atlas(name)
        except ImportError as exc:
            return f"an installed atlas ({exc})"
        except ValueError:
            return f"an installed atlas: one of {_braced(available_atlases())} or its BIDS label"
        return None
    from smriflow.data.templates import available_templates, template_space_name, templateflow_home

    installed = available_templates()
    try:
        if template_space_name(name) in installed:
            return None
    except ValueError:
        pass
    return (
        f"an installed template: one of {_braced(installed)} (from nilearn, or downloaded into the "
        f"TemplateFlow cache {templateflow_home()}, which TEMPLATEFLOW_HOME may move)"
    )


def _braced(names: list[str]) -> str:
    return "{" + ", ".join(repr(name) for name in names) + "}"
