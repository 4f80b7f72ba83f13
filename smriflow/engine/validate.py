"""Validate a workflow YAML file in phases, collecting every problem before reporting.

1. syntax and 2. schema: :func:`smriflow.engine.loading.load_spec` (YAML, then the pydantic models);
3. references, here: interfaces and workflows exist, ``params`` exist on the input spec and pass trait
   validation (and name installed atlases and templates), ports exist, mandatory inputs are set exactly
   once, ``$arg`` references are declared, no cycles; the values written for nested workflows are followed
   to where they land (:func:`smriflow.engine.values.check_values`).

Phase 3 needs phase 2 to have passed for the part it checks, so a file with schema errors reports those
first. :func:`check_spec` runs 3, :func:`validate_file` runs all of them.
"""

from __future__ import annotations

import inspect
import string
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import networkx as nx

from smriflow.config.errors import Problem, SpecError, did_you_mean
from smriflow.config.loader import KeyPath, Positions
from smriflow.config.pydantic_errors import describe
from smriflow.config.spec import ARG_REF_RE, NAME_RE, RESERVED_NODE_NAMES, SOURCE_RE, ArgSpec, NodeSpec
from smriflow.engine.loading import BUILTIN_ARGS, GROUP_ARGS, LoadedSpec, load_partial
from smriflow.engine.registry import UnresolvedReference, resolve_interface, resolve_workflow
from smriflow.engine.values import (
    arg_expectation,
    check_values,
    default_args,
    must_be,
    port_expectation,
    substitute,
)

__all__ = ["PATH_FIELDS", "RESERVED_ARGS", "Ports", "check_spec", "validate_file"]

RESERVED_ARGS = frozenset({*BUILTIN_ARGS, *GROUP_ARGS, "name"})
#: The placeholders a participant workflow's output ``path`` may hold.
PATH_FIELDS = frozenset({"subject", "session"})
_HIDDEN_TRAITS = frozenset({"trait_added", "trait_modified"})


@dataclass
class Ports:
    """What a node offers: its input and output port names, and what must be connected."""

    inputs: set[str]
    outputs: set[str]
    mandatory: set[str] = field(default_factory=set)
    xor: dict[str, set[str]] = field(default_factory=dict)
    label: str = ""


def check_spec(loaded: LoadedSpec, *, _stack: tuple[Path, ...] = ()) -> list[Problem]:
    """Phase 3: check every reference of a schema-valid workflow file. Returns all problems found."""
    spec, pos = loaded.spec, loaded.positions
    problems: list[Problem] = []
    arg_names = set(loaded.all_args())

    if spec.name != f"{loaded.stem}_wf" and loaded.path.suffix in (".yml", ".yaml"):
        problems.append(pos.problem(("name",), f"must be '{loaded.stem}_wf' to match the file name"))
    for name, arg in spec.args.items():
        problems += _check_arg_decl(name, arg, pos)
    for name in spec.inputs:
        if not NAME_RE.match(name):
            problems.append(
                pos.problem(("inputs", name), f"input name '{name}' must be snake_case", at_key=True)
            )

    for path, ref in _arg_refs(loaded):
        if ref not in arg_names:
            problems.append(
                pos.problem(path, f"'${ref}' is not a declared argument", did_you_mean(ref, spec.args))
            )

    ports: dict[str, Ports] = {}
    for node_name, node in spec.nodes.items():
        where = ("nodes", node_name)
        if not NAME_RE.match(node_name) or node_name in RESERVED_NODE_NAMES:
            problems.append(
                pos.problem(
                    where, f"node name '{node_name}' must be snake_case and not reserved", at_key=True
                )
            )
            continue
        try:
            node_ports, node_problems = _node_ports(loaded, node_name, node, _stack)
        except UnresolvedReference as exc:
            key = "interface" if node.interface is not None else "workflow"
            problems.append(pos.problem((*where, key), exc.message, exc.hint))
            continue
        problems += node_problems
        if node_ports is not None:
            ports[node_name] = node_ports

    graph = nx.DiGraph()
    graph.add_nodes_from(spec.nodes)
    for node_name, node in spec.nodes.items():
        if node_name not in ports:
            continue
        problems += _check_node_inputs(loaded, node_name, node, ports, graph)
    for out_name, out in spec.outputs.items():
        problems += _check_source(loaded, ("outputs", out_name, "from"), out.from_, ports)
        if out.path is not None:
            problems += _check_output_path(loaded, out_name, out.path)
        if out.meta is not None and (out.meta not in spec.outputs or out.meta == out_name):
            others = set(spec.outputs) - {out_name}
            problems.append(
                pos.problem(
                    ("outputs", out_name, "meta"),
                    f"'{out.meta}' is not another output of this workflow",
                    did_you_mean(out.meta, others),
                )
            )

    try:
        cycle = nx.find_cycle(graph)
    except nx.NetworkXNoCycle:
        cycle = None
    if cycle:
        names = [edge[0] for edge in cycle] + [cycle[0][0]]
        problems.append(
            pos.problem(
                ("nodes", names[0]), "the connections form a cycle: " + " → ".join(names), at_key=True
            )
        )
    if not problems:  # the values this file writes for its nested workflows, where they land
        problems += check_values(loaded, default_args(loaded), {}, here=True)
    return problems


def _check_output_path(loaded: LoadedSpec, out_name: str, path: str) -> list[Problem]:
    """The ``{field}`` placeholders of an output path: ``subject``/``session``, participant level only."""
    if ARG_REF_RE.match(path):
        return []
    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(path) if name is not None}
    except ValueError as exc:
        return [loaded.positions.problem(("outputs", out_name, "path"), f"{exc} in {path!r}")]
    allowed = PATH_FIELDS if loaded.spec.level == "participant" else frozenset()
    unknown = sorted(fields - allowed)
    if not unknown:
        return []
    if not allowed:
        message = f"a group workflow's path cannot hold {{{unknown[0]}}}: it runs once for all subjects"
        return [loaded.positions.problem(("outputs", out_name, "path"), message)]
    message = f"{{{unknown[0]}}} is not a placeholder of output paths (only {{subject}} and {{session}})"
    return [
        loaded.positions.problem(("outputs", out_name, "path"), message, did_you_mean(unknown[0], allowed))
    ]


def _check_arg_decl(name: str, arg: ArgSpec, pos: Positions) -> list[Problem]:
    where = ("args", name)
    if name in RESERVED_ARGS:
        return [pos.problem(where, f"'{name}' is a built-in argument and cannot be redeclared", at_key=True)]
    if not NAME_RE.match(name):
        return [pos.problem(where, f"argument name '{name}' must be snake_case", at_key=True)]
    problems = []
    expected = None if arg.required else arg_expectation(arg, arg.default)
    if expected:
        problems.append(pos.problem((*where, "default"), must_be(f"'{name}'", expected, arg.default)))
    return problems


def _arg_refs(loaded: LoadedSpec) -> Iterator[tuple[KeyPath, str]]:
    """Every ``$name`` string in params, nested-workflow args, resources and output entities."""
    for out_name, out in loaded.spec.outputs.items():
        yield from _refs_in(out.bids or {}, ("outputs", out_name, "bids"))
        yield from _refs_in(out.path, ("outputs", out_name, "path"))
    for node_name, node in loaded.spec.nodes.items():
        base = ("nodes", node_name)
        yield from _refs_in(node.params, (*base, "params"))
        yield from _refs_in(node.args, (*base, "args"))
        yield from _refs_in(node.resources.model_dump(), (*base, "resources"))


def _refs_in(value: Any, path: KeyPath) -> Iterator[tuple[KeyPath, str]]:
    if isinstance(value, str):
        match = ARG_REF_RE.match(value)
        if match:
            yield path, match.group(1)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _refs_in(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _refs_in(item, (*path, index))


def _node_ports(
    loaded: LoadedSpec, node_name: str, node: NodeSpec, stack: tuple[Path, ...]
) -> tuple[Ports | None, list[Problem]]:
    """Resolve a node's interface or workflow and list its ports; check params or nested args."""
    if node.interface is not None:
        return _interface_ports(loaded, node_name, node)
    return _workflow_ports(loaded, node_name, node, stack)


def _interface_ports(loaded: LoadedSpec, node_name: str, node: NodeSpec) -> tuple[Ports, list[Problem]]:
    pos = loaded.positions
    where = ("nodes", node_name)
    cls = resolve_interface(node.interface)
    params = substitute(node.params, default_args(loaded))
    try:
        iface = cls()
    except TypeError:  # interfaces whose ports depend on constructor arguments (e.g. IdentityInterface)
        iface = _instantiate_with(cls, params, pos, where)
        if iface is None:
            return Ports(set(), set()), [
                pos.problem((*where, "interface"), f"cannot create '{node.interface}'")
            ]
    inputs = set(iface.inputs.trait_names()) - _HIDDEN_TRAITS
    outputs = set(iface._outputs().trait_names()) - _HIDDEN_TRAITS if iface.output_spec else set()
    mandatory = {n for n in inputs if iface.inputs.trait(n).mandatory}
    xor = {n: set(iface.inputs.trait(n).xor or ()) for n in inputs if iface.inputs.trait(n).xor}
    label = f"{node_name} ({cls.__name__})"
    problems = []
    for key, value in params.items():
        if key == "num_threads" and key in inputs:
            problems.append(
                pos.problem(
                    (*where, "params", key),
                    "set the threads of a node with 'resources.n_procs'",
                    "nipype sets 'num_threads' from n_procs, so a value here would be overwritten.",
                    at_key=True,
                )
            )
            continue
        if key not in inputs:
            problems.append(
                pos.problem(
                    (*where, "params", key),
                    f"'{key}' is not an input of {cls.__name__}",
                    did_you_mean(key, inputs),
                    at_key=True,
                )
            )
            continue
        if isinstance(value, str) and ARG_REF_RE.match(value):
            continue  # an undeclared or ill-typed $arg: reported once, where it is declared or used
        mapped = key in (node.map_over or ())
        if mapped and not isinstance(value, list):
            problems.append(
                pos.problem(
                    (*where, "params", key), f"must be a list (it is in 'map_over'); got {describe(value)}"
                )
            )
            continue
        for item in value if mapped else [value]:  # a mapped port takes a list, one item per run
            if wrong := port_expectation(iface, key, item):
                problems.append(pos.problem((*where, "params", key), must_be(f"'{key}'", *wrong)))
                break
    for port in node.map_over or ():
        if port not in inputs:
            problems.append(
                pos.problem(
                    (*where, "map_over"),
                    f"'{port}' is not an input of {cls.__name__}",
                    did_you_mean(port, inputs),
                )
            )
    if node.args:
        problems.append(
            pos.problem((*where, "args"), "'args' is for workflow nodes; use 'params'", at_key=True)
        )
    return Ports(inputs, outputs, mandatory, xor, label), problems


def _instantiate_with(cls, params, pos, where):
    try:
        return cls(**params)
    except Exception:
        return None


def _workflow_ports(
    loaded: LoadedSpec, node_name: str, node: NodeSpec, stack: tuple[Path, ...]
) -> tuple[Ports | None, list[Problem]]:
    pos = loaded.positions
    where = ("nodes", node_name)
    target = resolve_workflow(node.workflow, relative_to=loaded.path)
    problems: list[Problem] = []
    if node.params:
        problems.append(
            pos.problem((*where, "params"), "'params' is for interface nodes; use 'args'", at_key=True)
        )
    if node.map_over:
        problems.append(
            pos.problem((*where, "map_over"), "'map_over' applies to interface nodes only", at_key=True)
        )
    label = f"{node_name} (workflow {node.workflow})"
    if isinstance(target, Path):
        if target.resolve() in {p.resolve() for p in (*stack, loaded.path)}:
            return None, [pos.problem((*where, "workflow"), f"workflow '{node.workflow}' includes itself")]
        nested, nested_problems = load_partial(target)
        if nested is not None:
            nested_problems += check_spec(nested, _stack=(*stack, loaded.path))
        if nested_problems:
            return None, [*problems, *nested_problems]
        nested_args = nested.all_args()
        for key, value in substitute(node.args, default_args(loaded)).items():
            if key not in nested_args:
                problems.append(
                    pos.problem(
                        (*where, "args", key),
                        f"'{key}' is not an argument of workflow '{node.workflow}'",
                        did_you_mean(key, nested_args),
                        at_key=True,
                    )
                )
            elif expected := arg_expectation(nested_args[key], value):
                problems.append(pos.problem((*where, "args", key), must_be(f"'{key}'", expected, value)))
        return Ports(set(nested.spec.inputs), set(nested.spec.outputs), label=label), problems
    return _factory_ports(loaded, node_name, node, target, label, problems)


def _factory_ports(
    loaded: LoadedSpec, node_name: str, node: NodeSpec, factory: Callable, label: str, problems: list
) -> tuple[Ports | None, list[Problem]]:
    pos = loaded.positions
    where = ("nodes", node_name)
    kwargs = substitute(node.args, default_args(loaded))
    params = inspect.signature(factory).parameters
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    for key in kwargs:
        if key not in params and not accepts_any:
            problems.append(
                pos.problem(
                    (*where, "args", key),
                    f"'{key}' is not a parameter of {factory.__name__}",
                    did_you_mean(key, params),
                    at_key=True,
                )
            )
    if problems:
        return None, problems
    try:
        wf = factory(**kwargs)
    except Exception as exc:
        return None, [pos.problem((*where, "workflow"), f"{factory.__name__} failed: {exc}")]
    try:
        inputs = set(wf.get_node("inputnode").inputs.copyable_trait_names())
        outputs = set(wf.get_node("outputnode").outputs.copyable_trait_names())
    except AttributeError:
        return None, [pos.problem((*where, "workflow"), f"{factory.__name__} has no inputnode/outputnode")]
    return Ports(inputs, outputs, label=label), problems


def _check_node_inputs(
    loaded: LoadedSpec, node_name: str, node: NodeSpec, ports: dict[str, Ports], graph: nx.DiGraph
) -> list[Problem]:
    pos = loaded.positions
    mine = ports[node_name]
    problems = []
    for target, source in node.in_.items():
        path = ("nodes", node_name, "in", target)
        if target not in mine.inputs:
            problems.append(
                pos.problem(
                    path,
                    f"'{target}' is not an input of {mine.label}",
                    did_you_mean(target, mine.inputs),
                    at_key=True,
                )
            )
        elif target in node.params:
            problems.append(
                pos.problem(path, f"'{target}' is set twice: in 'params' and in 'in'", at_key=True)
            )
        problems += _check_source(loaded, path, source, ports)
        upstream = source.split(".", 1)[0]
        if upstream != "inputs" and upstream in ports:
            graph.add_edge(upstream, node_name)
    set_ports = set(node.params) | set(node.in_)
    for port in sorted(mine.mandatory - set_ports):
        if mine.xor.get(port, set()) & set_ports:
            continue
        problems.append(
            pos.problem(
                ("nodes", node_name),
                f"mandatory input '{port}' of {mine.label} is not connected",
                "Add it under 'in:' or 'params:'.",
                at_key=True,
            )
        )
    return problems


def _check_source(loaded: LoadedSpec, path: KeyPath, source: str, ports: dict[str, Ports]) -> list[Problem]:
    pos = loaded.positions
    spec = loaded.spec
    match = SOURCE_RE.match(source)
    if not match:
        return [pos.problem(path, f"'{source}' must be 'inputs.<name>' or '<node>.<output>'")]
    upstream, port = match.groups()
    if upstream == "inputs":
        if port not in spec.inputs:
            return [pos.problem(path, f"'{port}' is not a workflow input", did_you_mean(port, spec.inputs))]
        return []
    if upstream in loaded.broken:
        return []  # that node's own problems are reported already
    if upstream not in spec.nodes:
        return [pos.problem(path, f"unknown node '{upstream}'", did_you_mean(upstream, spec.nodes))]
    if upstream not in ports:
        return []  # that node has its own problem already
    if port not in ports[upstream].outputs:
        return [
            pos.problem(
                path,
                f"'{upstream}.{port}' is not an output of node {ports[upstream].label}",
                did_you_mean(port, ports[upstream].outputs),
            )
        ]
    return []


def validate_file(path: str | Path) -> LoadedSpec:
    """Run phases 1–3 on a workflow file; return it loaded, or raise one :class:`SpecError` listing all."""
    loaded, problems = load_partial(Path(path))
    if loaded is not None:
        problems += check_spec(loaded)
    if problems:
        raise SpecError(problems)
    return loaded
