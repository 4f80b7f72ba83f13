"""Turn a validated workflow YAML file into a nipype ``Workflow`` with ``inputnode``/``outputnode``.

This is the only place that knows how YAML nodes become nipype nodes, so a packaged workflow, a user's
YAML file and the ``init_<name>_wf`` factories all produce the same graph.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import replace
from functools import cache
from pathlib import Path
from typing import Any

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe
from niworkflows.engine.workflows import LiterateWorkflow

from smriflow.config.errors import Problem, SpecError, did_you_mean
from smriflow.engine.loading import BUILTIN_ARGS, GROUP_ARGS, LoadedSpec
from smriflow.engine.registry import (
    UnresolvedReference,
    packaged_workflows,
    resolve_interface,
    resolve_workflow,
)
from smriflow.engine.scheduling import ESTIMATE_ATTR
from smriflow.engine.validate import validate_file
from smriflow.engine.values import arg_expectation, check_values, coerce_arg, must_be, substitute

__all__ = [
    "load_workflow",
    "list_workflows",
    "locate_workflow",
    "resolve_args",
    "build_workflow",
    "methods_text",
]


def locate_workflow(name_or_path: str | Path) -> Path:
    """Return the YAML file of a packaged workflow name (``anat_preproc``) or an existing path.

    Raises
    ------
    SpecError
        Naming the packaged workflows when nothing matches.
    """
    path = Path(name_or_path)
    if path.suffix in (".yml", ".yaml") or path.exists():
        if not path.is_file():
            raise SpecError([Problem(str(name_or_path), None, None, "", "workflow file not found")])
        return path
    try:
        found = resolve_workflow(str(name_or_path))
    except UnresolvedReference as exc:
        raise SpecError([Problem(str(name_or_path), None, None, "", exc.message, exc.hint)]) from None
    if not isinstance(found, Path):
        raise SpecError([Problem(str(name_or_path), None, None, "", "not a YAML workflow")])
    return found


def list_workflows() -> dict[str, str]:
    """Packaged workflow names and the first line of their ``doc``."""
    from smriflow.engine.loading import load_spec

    docs = {}
    for stem, path in packaged_workflows().items():
        try:
            docs[stem] = load_spec(path).spec.doc.strip().splitlines()[0]
        except SpecError:
            docs[stem] = "(invalid: run `smriflow validate` on it)"
    return docs


def resolve_args(
    loaded: LoadedSpec, given: dict[str, Any], *, source: str = "argument", check: bool = True
) -> dict[str, Any]:
    """Merge the caller's argument values over the defaults, checking names, types and choices, then
    every place each value lands (nested arguments, interface inputs, installed atlases and templates).

    Parameters
    ----------
    loaded : LoadedSpec
        The workflow whose ``args`` declare what may be set.
    given : dict
        Values from the caller (``load_workflow(**args)`` or ``--set``).
    source : str
        How the caller set them, for messages: ``--set`` (a problem reads ``--set NAME: …``) or
        ``argument`` (``file: args.NAME: …``).
    check : bool
        Follow the values to where they land (:func:`smriflow.engine.values.check_values`); the builder
        skips it for nested workflows, whose values were followed from the top.

    Raises
    ------
    SpecError
        Listing every unknown or ill-typed value.
    """
    declared = loaded.all_args()
    values = {name: arg.default for name, arg in declared.items() if not arg.required}
    origins = {  # where each given value was written, for the messages
        key: Problem(f"--set {key}", None, None, "", "")
        if source == "--set"
        else Problem(str(loaded.path), None, None, f"args.{key}", "")
        for key in given
    }
    problems = [
        Problem(
            str(loaded.path),
            None,
            None,
            f"args.{name}",
            f"'{name}' is required by workflow '{loaded.spec.name}' and was not given"
            + (f"; set it with --set {name}=VALUE" if source == "--set" else ""),
        )
        for name, arg in declared.items()
        if arg.required and name not in given
    ]
    for key, value in given.items():
        if key not in declared:
            problems.append(
                Problem(
                    str(loaded.path),
                    None,
                    None,
                    f"args.{key}",
                    f"unknown {source} '{key}' for workflow '{loaded.spec.name}'",
                    did_you_mean(key, declared),
                )
            )
            continue
        value = coerce_arg(declared[key], value)
        expected = arg_expectation(declared[key], value)
        if expected:
            problems.append(replace(origins[key], message=must_be(f"'{key}'", expected, value)))
            continue
        values[key] = value
    if not problems and check:
        # the run's folders are set by the run (and created by it), not by the caller
        followed = {key: origin for key, origin in origins.items() if key not in GROUP_ARGS}
        problems = check_values(loaded, values, followed)
    if problems:
        raise SpecError(problems)
    return values


def load_workflow(name_or_path: str | Path, *, name: str | None = None, **args: Any) -> LiterateWorkflow:
    """Build the nipype workflow of a packaged name or YAML path.

    Parameters
    ----------
    name_or_path : str or Path
        A packaged workflow (see ``smriflow list``) or a YAML file.
    name : str, optional
        The nipype name of the returned workflow (default: the file's ``name``).
    **args
        Values for the workflow's ``args``, plus the built-ins ``omp_nthreads`` and ``seed``.

    Returns
    -------
    LiterateWorkflow
        A nipype workflow whose public surface is ``inputnode`` and ``outputnode``. It writes no
        derivatives and has no ``base_dir``: embed it, or run it with ``smriflow run``.

    Raises
    ------
    SpecError
        When the file or the arguments have mistakes (all of them are listed).
    """
    loaded = validate_file(locate_workflow(name_or_path))
    return build_workflow(loaded, resolve_args(loaded, args), name=name)


def build_workflow(loaded: LoadedSpec, args: dict[str, Any], *, name: str | None = None) -> LiterateWorkflow:
    """Build a validated spec with resolved ``args`` (see :func:`resolve_args`)."""
    spec = loaded.spec
    wf = LiterateWorkflow(name=name or spec.name)
    wf.__desc__ = spec.doc.strip() + "\n"
    outputnode = pe.Node(niu.IdentityInterface(fields=list(spec.outputs)), name="outputnode")
    inputnode = None
    if spec.inputs:  # a group workflow may take everything through its args
        inputnode = pe.Node(niu.IdentityInterface(fields=list(spec.inputs)), name="inputnode")
    wf.add_nodes([node for node in (inputnode, outputnode) if node is not None])

    left_out = mapped_over_nothing(spec, args)
    built: dict[str, pe.Node | pe.Workflow] = {}
    for node_name, node in spec.nodes.items():
        if node_name in left_out:
            continue
        if node.interface is not None:
            built[node_name] = _interface_node(node_name, node, args)
        else:
            built[node_name] = _workflow_node(loaded, node_name, node, args)
    wf.add_nodes(list(built.values()))

    def source(ref: str) -> tuple[Any, str]:
        upstream, port = ref.split(".", 1)
        if upstream == "inputs":
            return inputnode, port
        obj = built[upstream]
        return obj, f"outputnode.{port}" if isinstance(obj, pe.Workflow) else port

    connections = []
    for node_name, node in spec.nodes.items():
        if node_name in left_out:
            continue
        target = built[node_name]
        for port, ref in node.in_.items():
            src, src_port = source(ref)
            dst_port = f"inputnode.{port}" if isinstance(target, pe.Workflow) else port
            connections.append((src, target, [(src_port, dst_port)]))
    for out_name, out in spec.outputs.items():
        if out.from_.split(".", 1)[0] in left_out:
            continue  # stays unset
        src, src_port = source(out.from_)
        connections.append((src, outputnode, [(src_port, out_name)]))
    wf.connect(connections)
    return wf


def mapped_over_nothing(spec, args: dict[str, Any]) -> set[str]:
    """The nodes left out of the workflow: those mapped over an empty list, and every node they feed.

    An output fed by one of them stays unset (e.g. nothing per further template space when none is asked).
    """
    left_out = {
        name
        for name, node in spec.nodes.items()
        if any(substitute(node.params.get(port), args) == [] for port in node.map_over or ())
    }
    grown = True
    while grown:
        fed = {
            name
            for name, node in spec.nodes.items()
            if name not in left_out and any(ref.split(".", 1)[0] in left_out for ref in node.in_.values())
        }
        left_out |= fed
        grown = bool(fed)
    return left_out


def _interface_node(node_name: str, node, args: dict[str, Any]) -> pe.Node:
    cls = resolve_interface(node.interface)
    params = substitute(node.params, args)
    # A mapped port holds the list to iterate over: the MapNode takes it, not the interface.
    mapped = {key: params.pop(key) for key in list(params) if key in (node.map_over or ())}
    iface = cls(**params)
    inputs = set(iface.inputs.trait_names())
    # Run-level settings reach every interface that has the trait, unless the YAML set it.
    if "seed" not in params and "seed" in inputs:
        iface.inputs.seed = args["seed"]
    resources = substitute(node.resources.model_dump(), args)
    n_procs = int(resources["n_procs"])
    if "n_procs" not in node.resources.model_fields_set and "num_threads" in inputs:
        # A threaded node books the cores it will use; nipype's Node copies n_procs into num_threads.
        n_procs = int(args["omp_nthreads"])
    kwargs = dict(name=node_name, n_procs=n_procs, mem_gb=float(resources["mem_gb"]))
    if node.run_without_submitting:
        kwargs["run_without_submitting"] = True
    if node.map_over:
        built = pe.MapNode(iface, iterfield=list(node.map_over), **kwargs)
        for key, value in mapped.items():
            setattr(built.inputs, key, value)
    else:
        built = pe.Node(iface, **kwargs)
    setattr(built, ESTIMATE_ATTR, float(resources["seconds"]))
    return built


def _workflow_node(loaded: LoadedSpec, node_name: str, node, args: dict[str, Any]) -> pe.Workflow:
    wf_name = node_name if node_name.endswith("_wf") else f"{node_name}_wf"
    given = substitute(node.args, args)
    # Built-in run settings flow down unless the node overrides them.
    for builtin in BUILTIN_ARGS:
        given.setdefault(builtin, args[builtin])
    target = resolve_workflow(node.workflow, relative_to=loaded.path)
    if isinstance(target, Path):
        nested = validate_file(target)
        return build_workflow(nested, resolve_args(nested, given, check=False), name=wf_name)
    accepted = inspect.signature(target).parameters
    kwargs = {k: v for k, v in given.items() if k in accepted or k not in BUILTIN_ARGS}
    if "name" in accepted:
        kwargs["name"] = wf_name
    wf = target(**kwargs)
    if "name" not in accepted:
        wf.name = wf_name
    return wf


def methods_text(loaded: LoadedSpec, args: dict[str, Any]) -> str:
    """The methods paragraph of a workflow: its ``doc`` followed by those of its nested workflows."""
    return " ".join(build_workflow(loaded, dict(args)).visit_desc().split())


@cache
def _factory_doc(stem: str) -> str:
    loaded = validate_file(packaged_workflows()[stem])
    lines = [loaded.spec.doc.strip(), "", "Parameters", "----------"]
    for arg_name, arg in loaded.all_args().items():
        default = "required" if arg.required else f"default {arg.default!r}"
        lines += [f"{arg_name} : {arg.type}, {default}", f"    {arg.doc}"]
    lines += ["name : str", f"    nipype name of the workflow (default {loaded.spec.name!r})", ""]
    lines += ["Inputs (``inputnode``)", "----------------------"]
    lines += [f"{k}\n    {v.doc}" for k, v in loaded.spec.inputs.items()]
    lines += ["", "Outputs (``outputnode``)", "------------------------"]
    lines += [f"{k}\n    {v.doc}" for k, v in loaded.spec.outputs.items()]
    return "\n".join(lines)


def packaged_factory(stem: str) -> Callable[..., LiterateWorkflow]:
    """The ``init_<stem>_wf(**args)`` factory of a packaged YAML workflow."""
    if stem not in packaged_workflows():
        raise AttributeError(f"no packaged workflow '{stem}' (so no init_{stem}_wf)")

    def factory(*, name: str | None = None, **args: Any) -> LiterateWorkflow:
        return load_workflow(stem, name=name, **args)

    factory.__name__ = factory.__qualname__ = f"init_{stem}_wf"
    factory.__doc__ = _factory_doc(stem)
    return factory
