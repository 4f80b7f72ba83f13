"""Argument values checked before anything runs, wherever they end up.

A value given with ``--set NAME=VALUE`` (or ``load_workflow(NAME=VALUE)``, or written in a workflow file)
reaches interface inputs through ``$arg`` references, possibly through nested workflows. Each value is
checked where it lands: against the nested workflow's argument (type, choices), the input's trait (range,
choices, existing file …) and, for inputs whose trait carries ``resource="atlas"``/``"template"``, against
what is installed (:func:`smriflow.interfaces.base.resource_problem`). A problem is reported where the value
was written: ``--set NAME: …`` or ``file:line:col: key.path: …``, worded as nilearn words its errors
(``'x' must be …. 'y' was provided.``).

:func:`check_values` walks a workflow with values whose origin is known; the workflow file's own checks
(:mod:`smriflow.engine.validate`) call it with the file's literal values and defaults, and
:func:`smriflow.engine.builder.resolve_args` with the caller's. :func:`default_args` gives those defaults
(the valid ones) and :func:`substitute` puts values in place of the ``$name`` references.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from smriflow.config.errors import Problem
from smriflow.config.spec import ARG_REF_RE, PYTHON_TYPES, ArgSpec
from smriflow.engine.loading import BUILTIN_ARGS, GROUP_ARGS, LoadedSpec, load_spec

__all__ = [
    "arg_expectation",
    "check_values",
    "coerce_arg",
    "default_args",
    "must_be",
    "port_expectation",
    "shown",
    "substitute",
]

#: Where a value was written: a problem without its message (``--set NAME``, or a place in a file).
Origin = Problem


def shown(value: Any) -> str:
    """A value as a message shows it: YAML's spelling of booleans and null, Python's repr otherwise.

    A string is shown whole (it is often a file the user must find); a long list or mapping is cut to 80
    characters.
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    text = repr(value)
    if isinstance(value, str | Path) or len(text) <= 80:
        return text
    return text[:76] + " …" + text[-1]


def must_be(subject: str, expected: str, value: Any) -> str:
    """``'fwhm' must be <expected>. 99.0 was provided`` (nilearn's wording)."""
    return f"{subject} must be {expected}. {shown(value)} was provided"


def arg_expectation(arg: ArgSpec, value: Any) -> str | None:
    """What ``arg`` accepts (its type, its choices) when ``value`` does not suit it; ``None`` when it does."""
    expected = PYTHON_TYPES[arg.type]
    if isinstance(value, bool) and arg.type != "bool" or not isinstance(value, expected):
        return f"of type {arg.type}"
    if arg.choices is not None and value not in arg.choices:
        return "one of {" + ", ".join(shown(choice) for choice in arg.choices) + "}"
    return None


def coerce_arg(arg: ArgSpec, value: Any) -> Any:
    """The value an argument takes from a caller: an int for a float becomes a float, a relative path is
    made absolute (relative to where the caller is, not to the node's folder in the work directory)."""
    if arg.type == "float" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if arg.type == "path" and isinstance(value, str | Path) and str(value):
        return os.path.abspath(os.path.expanduser(value))
    return value


def substitute(value: Any, args: dict[str, Any]) -> Any:
    """Replace every ``$name`` string (whole value only) by ``args[name]``, recursively."""
    if isinstance(value, str):
        match = ARG_REF_RE.match(value)
        return args[match.group(1)] if match and match.group(1) in args else value
    if isinstance(value, dict):
        return {key: substitute(item, args) for key, item in value.items()}
    if isinstance(value, list):
        return [substitute(item, args) for item in value]
    return value


def default_args(loaded: LoadedSpec) -> dict[str, Any]:
    """Default value of every argument whose default is valid (invalid ones are reported on their own).

    A ``required`` argument has none, nor have the run's folders of a group workflow: their ``$name``
    references stay unsubstituted, so the checks of the values they will fill wait for the run.
    """
    return {
        name: arg.default
        for name, arg in loaded.all_args().items()
        if not arg.required and name not in GROUP_ARGS and arg_expectation(arg, arg.default) is None
    }


def port_expectation(iface: Any, key: str, value: Any) -> tuple[str, Any] | None:
    """What input ``key`` of ``iface`` accepts when ``value`` does not suit it; ``None`` when it does.

    The value is set on the (throw-away) interface, so its trait validates it; then a ``resource`` input
    checks that the atlas or template it names (each of them, for a list) is installed.

    Returns
    -------
    (str, object) or None
        The accepted values, as the end of a "must be …" sentence, and the value that is not one of them
        (``value`` itself, or its first bad item).
    """
    from smriflow.interfaces.base import resource_problem

    try:
        setattr(iface.inputs, key, value)
    except Exception:  # traits raises TraitError; say it in our words, keep nothing raw
        handler = iface.inputs.trait(key).handler
        values = getattr(handler, "values", None)
        if type(handler).__name__ == "Enum" and values:
            return "one of {" + ", ".join(shown(v) for v in values) + "}", value
        try:  # full_info spells out ranges ("0.0 <= a floating point number <= 50.0"); info() may not
            return handler.full_info(iface.inputs, key, value), value
        except Exception:
            return handler.info(), value
    kind = iface.inputs.trait(key).resource
    for name in (value if isinstance(value, list) else [value]) if kind else ():
        if expected := resource_problem(kind, name):
            return expected, name
    return None


def _ref(value: Any) -> str | None:
    match = ARG_REF_RE.match(value) if isinstance(value, str) else None
    return match.group(1) if match else None


def check_values(
    loaded: Any,
    values: Mapping[str, Any],
    origins: Mapping[str, Origin],
    *,
    here: bool = False,
    _prefix: tuple[str, ...] = (),
) -> list[Problem]:
    """Check the values of a workflow's arguments where they land: nested arguments, interface inputs.

    Parameters
    ----------
    loaded : LoadedSpec
        A workflow file that passed its own checks (nested files are loaded again here).
    values : mapping
        The value of every argument (the resolved ones: defaults and the caller's).
    origins : mapping
        Where the values to check were written, per argument name; arguments without an origin are not
        followed (their defaults were checked with the file that declares them).
    here : bool
        Also follow the values this file writes into its nested workflows (literals and ``$arg`` defaults
        under a node's ``args``), reported at those places: for the file's own validation.

    Returns
    -------
    list of Problem
        One per value that does not suit where it lands (a list value: its first bad item).
    """
    problems: list[Problem] = []
    for node_name, node in loaded.spec.nodes.items():
        label = ".".join((*_prefix, node_name))
        if node.interface is not None:
            problems += _interface_values(node, label, values, origins)
        elif node.workflow is not None:
            problems += _nested_values(loaded, node_name, node, label, values, origins, here, _prefix)
    first: dict[Problem, Problem] = {}  # one line per mistake: the first place a bad value lands
    for problem in problems:
        first.setdefault(replace(problem, message=""), problem)
    return list(first.values())


def _interface_values(
    node: Any, label: str, values: Mapping[str, Any], origins: Mapping[str, Origin]
) -> list[Problem]:
    from smriflow.engine.registry import resolve_interface

    refs = {key: ref for key, raw in node.params.items() if (ref := _ref(raw)) in origins and ref in values}
    resources = {
        key: ref for key, raw in node.resources.model_dump().items() if (ref := _ref(raw)) in origins
    }
    if not refs and not resources:
        return []
    cls = resolve_interface(node.interface)
    try:
        iface = cls()
    except TypeError:  # ports that depend on constructor arguments (IdentityInterface): nothing to check
        return []
    where = f"node {label} ({cls.__name__})"
    problems = []
    for key, ref in refs.items():
        if key not in iface.inputs.trait_names():
            continue  # reported by the file's own checks
        value = values[ref]
        if key in (node.map_over or ()):
            if not isinstance(value, list):
                message = must_be(f"'{key}' of {where}", "a list (it is in 'map_over')", value)
                problems.append(replace(origins[ref], message=message))
                continue
            items = value
        else:
            items = [value]
        for item in items:
            if wrong := port_expectation(iface, key, item):
                problems.append(replace(origins[ref], message=must_be(f"'{key}' of {where}", *wrong)))
                break
    for key, ref in resources.items():
        value = values.get(ref)
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            message = must_be(f"'resources.{key}' of {where}", "a positive number", value)
            problems.append(replace(origins[ref], message=message))
    return problems


def _nested_values(
    loaded: Any,
    node_name: str,
    node: Any,
    label: str,
    values: Mapping[str, Any],
    origins: Mapping[str, Origin],
    here: bool,
    prefix: tuple[str, ...],
) -> list[Problem]:
    from smriflow.engine.registry import resolve_workflow

    target = resolve_workflow(node.workflow, relative_to=loaded.path)
    if not isinstance(target, Path):
        return []  # a Python factory: its parameters are its own business
    given: dict[str, Any] = {}
    nested_origins: dict[str, Origin] = {}
    inherited: set[str] = set()
    for key, raw in node.args.items():
        ref = _ref(raw)
        if ref is not None and ref not in values:
            continue  # an argument without a value yet (required, or the run's folders)
        given[key] = values[ref] if ref is not None else raw
        if ref is not None and ref in origins:
            nested_origins[key] = origins[ref]
            inherited.add(key)
        elif here:
            nested_origins[key] = loaded.positions.problem(("nodes", node_name, "args", key), "")
    for builtin in BUILTIN_ARGS:  # run-level settings flow down unless the node sets them
        if builtin not in node.args and builtin in values:
            given[builtin] = values[builtin]
            if builtin in origins:
                nested_origins[builtin] = origins[builtin]
                inherited.add(builtin)
    if not nested_origins:
        return []
    nested = load_spec(target)
    declared = nested.all_args()
    nested_values = default_args(nested)
    problems = []
    for key, value in given.items():
        if key not in declared:
            continue  # reported by the file's own checks
        value = coerce_arg(declared[key], value)
        if expected := arg_expectation(declared[key], value):
            if key in inherited:  # the file's own checks report its literal values
                subject = f"'{key}' of workflow {node.workflow} (node {label})"
                problems.append(replace(nested_origins[key], message=must_be(subject, expected, value)))
            nested_origins.pop(key, None)
            continue
        nested_values[key] = value
    return problems + check_values(nested, nested_values, nested_origins, _prefix=(*prefix, node_name))
