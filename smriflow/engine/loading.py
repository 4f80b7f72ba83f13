"""Phases 1 and 2 of validating a workflow file: read as YAML, then checked against the schema.

1. syntax: :func:`smriflow.config.loader.load_yaml` (duplicate keys rejected);
2. schema: the pydantic models of :mod:`smriflow.config.spec` (unknown keys rejected), each problem
   located in the file and worded without pydantic's words.

:func:`load_spec` runs both and returns the :class:`LoadedSpec` every later step takes, with the built-in
arguments every workflow has (:data:`BUILTIN_ARGS`, and :data:`GROUP_ARGS` for group workflows);
:func:`load_partial` keeps the nodes whose own schema passed, so that phase 3
(:mod:`smriflow.engine.validate`) can still check the rest of a broken file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from smriflow.config.errors import Problem, SpecError
from smriflow.config.loader import KeyPath, Positions, load_yaml
from smriflow.config.pydantic_errors import Issue, describe, issue_from_error
from smriflow.config.spec import ArgSpec, WorkflowSpec, normalise_short_forms
from smriflow.utils.seed import DEFAULT_SEED

__all__ = ["BUILTIN_ARGS", "GROUP_ARGS", "LoadedSpec", "load_partial", "load_spec", "path_has_tag"]

#: Arguments every workflow has without declaring them; they flow into nested workflows and fill the
#: ``num_threads``/``seed`` traits of every node that has them.
BUILTIN_ARGS: dict[str, ArgSpec] = {
    "omp_nthreads": ArgSpec(type="int", default=1, doc="threads each node may use (run-level)"),
    "seed": ArgSpec(type="int", default=DEFAULT_SEED, doc="random seed of every node that draws numbers"),
}
#: Built-in arguments of group-level workflows only: the run's folders (absolute paths, filled by the run).
GROUP_ARGS: dict[str, ArgSpec] = {
    "output_dir": ArgSpec(type="path", default="", doc="the run's output folder (set by --output-dir)"),
    "bids_dir": ArgSpec(type="path", default="", doc="the run's BIDS dataset (--bids-dir), or empty"),
}


@dataclass
class LoadedSpec:
    """A workflow file that passed phases 1–2: the model, the raw data and where everything sits."""

    spec: WorkflowSpec
    path: Path
    positions: Positions
    #: nodes left out because their own schema is broken (validation only; never built)
    broken: frozenset[str] = frozenset()

    @property
    def stem(self) -> str:
        return self.path.stem

    def all_args(self) -> dict[str, ArgSpec]:
        """Declared arguments plus the built-in ones (and, for a group workflow, the run's folders)."""
        group = GROUP_ARGS if self.spec.level == "group" else {}
        return {**BUILTIN_ARGS, **group, **self.spec.args}


def load_spec(path: str | Path, *, display_name: str | None = None) -> LoadedSpec:
    """Run phases 1 (syntax) and 2 (schema) on a workflow file.

    Raises
    ------
    SpecError
        Listing every syntax or schema problem.
    """
    loaded, problems = load_partial(Path(path), display_name)
    if problems:
        raise SpecError(problems)
    return loaded


def load_partial(path: Path, display_name: str | None = None) -> tuple[LoadedSpec | None, list[Problem]]:
    """Phases 1–2, tolerant of broken nodes so that phase 3 can still check the rest of the file.

    Returns the spec without the nodes whose own schema failed (``None`` if the file-level structure
    failed) and the schema problems found.
    """
    data, positions = load_yaml(path, display_name=display_name)
    if not isinstance(data, dict):
        return None, [Problem(positions.file, 1, 1, "", "a workflow file must be a YAML mapping")]
    data = normalise_short_forms(data)
    try:
        return LoadedSpec(WorkflowSpec.model_validate(data), path, positions), []
    except ValidationError as exc:
        problems = _schema_problems(exc, data, positions)
        error_paths = [_real_path(error["loc"], data) for error in exc.errors()]
    broken = {path[1] for path in error_paths if len(path) > 1 and path[0] == "nodes"}
    nodes = data.get("nodes")
    if not broken or not isinstance(nodes, dict) or len(broken) == len(nodes):
        return None, problems
    partial = {**data, "nodes": {k: v for k, v in nodes.items() if k not in broken}}
    try:
        spec = WorkflowSpec.model_validate(partial)
    except ValidationError:
        return None, problems  # the file-level structure is broken too: phase 3 would only add noise
    return LoadedSpec(spec, path, positions, frozenset(broken)), problems


def _schema_problems(exc: ValidationError, data: dict, positions: Positions) -> list[Problem]:
    """Translate pydantic errors into located problems, one per place, without pydantic's wording."""
    problems: dict[KeyPath, Problem] = {}
    for error in exc.errors():
        path = _real_path(error["loc"], data)
        if path in problems:  # a union reports once per member; one message per place is enough
            continue
        if error["type"] == "literal_error" and path == ("smriflow",):
            version = describe(error["input"])
            issue = Issue(path, f"unsupported spec version {version}", "This smriflow reads 'smriflow: 1'.")
        else:
            issue = issue_from_error(error, WorkflowSpec, path)
        hint = issue.hint
        if error["type"] == "extra_forbidden" and " " in str(path[-1]):
            # `{doc: a, b}` splits at the comma and makes 'b' a key
            hint = f"Is there an unquoted comma inside a {{…}} value? Quote that text. {hint}".strip()
        problems[path] = positions.problem(issue.path, issue.message, hint, at_key=issue.at_key)
    return list(problems.values())


def _real_path(loc: tuple, data: Any) -> KeyPath:
    """Keep the part of a pydantic location that exists in the data (drops union member tags)."""
    path: list[str | int] = []
    node = data
    for part in loc:
        part = "from" if part == "from_" else "in" if part == "in_" else part
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        elif isinstance(node, dict) and isinstance(part, str) and not path_has_tag(part):
            path.append(part)  # a key that is missing or unknown: keep it, stop descending
            break
        else:
            continue
        path.append(part)
    return tuple(path)


def path_has_tag(part: str) -> bool:
    """pydantic tags union members with names like 'int', 'str' or 'function-after[...]'."""
    return part in {"int", "str", "float", "bool", "list", "dict"} or "[" in part
