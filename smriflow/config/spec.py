"""The workflow YAML schema, version 1 (``smriflow: 1``).

These pydantic models check the *shape* of a workflow file: required keys, types, and that no unknown key
is present (``extra="forbid"``). Whether the interfaces, ports and ``$arg`` references exist is checked
afterwards by :mod:`smriflow.engine.validate`, which knows the interfaces. The reference in
``docs/yaml-reference.md`` is generated from these models (``python -m tools.docgen``).

Short forms are normalised before validation (see :func:`normalise_short_forms`):

* ``inputs: [t1w, t2w]`` → ``inputs: {t1w: {}, t2w: {}}``
* ``outputs: {t1w_mask: brain.out_mask}`` → ``outputs: {t1w_mask: {from: brain.out_mask}}``
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

SPEC_VERSION = 1
NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
ARG_REF_RE = re.compile(r"^\$([A-Za-z_][A-Za-z0-9_]*)$")
SOURCE_RE = re.compile(r"^([a-z][a-z0-9_]*)\.([A-Za-z_][A-Za-z0-9_.]*)$")
RESERVED_NODE_NAMES = frozenset({"inputs", "inputnode", "outputnode"})

ArgType = Literal["int", "float", "str", "bool", "list", "dict", "path"]
PYTHON_TYPES: dict[str, tuple[type, ...]] = {
    "int": (int,),
    "float": (float, int),
    "str": (str,),
    "bool": (bool,),
    "list": (list,),
    "dict": (dict,),
    "path": (str,),
}


class _Strict(BaseModel):
    # strict: no silent coercion ("yes" is not a boolean, "4" is not a number); extra: unknown keys rejected.
    model_config = ConfigDict(extra="forbid", populate_by_name=True, strict=True)


class ArgSpec(_Strict):
    """A workflow argument: a keyword-only parameter of the factory, settable with ``--set NAME=VALUE``."""

    type: ArgType = Field(description="Value type: int, float, str, bool, list, dict or path.")
    default: Any = Field(
        None, description="Value used when the caller does not set the argument (needed unless `required`)."
    )
    required: bool = Field(
        False,
        description=(
            "No default: the caller must set it (`--set NAME=VALUE`, or the factory's keyword), e.g. the "
            "table a group workflow analyses."
        ),
    )
    doc: str = Field("", description="One line shown in `smriflow list` and the docs.")
    choices: list[Any] | None = Field(None, description="If given, the only values accepted.")

    @model_validator(mode="after")
    def _default_or_required(self) -> ArgSpec:
        if self.required and "default" in self.model_fields_set:
            raise ValueError("give 'default' or 'required: true', not both")
        if not self.required and "default" not in self.model_fields_set:
            raise ValueError("needs a 'default' (or 'required: true' when the caller must set it)")
        return self


class InputSpec(_Strict):
    """A field of the workflow's ``inputnode``."""

    doc: str = Field("", description="What the input is.")
    bids: dict[str, Any] | None = Field(
        None,
        description=(
            "pybids query that fills this input per subject when the workflow runs on a BIDS dataset "
            "(e.g. `{datatype: anat, suffix: T1w, extension: [.nii, .nii.gz]}`). Top-level workflows only."
        ),
    )
    required: bool = Field(True, description="With `bids`: a subject without a match is an error.")
    many: bool = Field(
        False,
        description=(
            "With `bids`: every matching file of the subject's session, as a sorted list, instead of exactly "
            "one (e.g. several T1w runs, or every session's T1w with `smriflow run --longitudinal`)."
        ),
    )

    @model_validator(mode="after")
    def _many_needs_bids(self) -> InputSpec:
        if self.many and self.bids is None:
            raise ValueError("'many' needs a 'bids' query (it says how many of its files the input takes)")
        return self


class OutputSpec(_Strict):
    """A field of the workflow's ``outputnode``, fed by one node output."""

    from_: str = Field(alias="from", description="Source, `<node>.<output>`.")
    doc: str = Field("", description="What the output is.")
    bids: dict[str, Any] | None = Field(
        None,
        description=(
            "BIDS-derivatives entities of the written file (e.g. `{desc: preproc, suffix: T1w}`); values "
            "may be `$arg`. When the output is a list, a list-valued entity names each item in turn "
            "(e.g. `{atlas: $atlases, suffix: dseg}`). Only the top-level run writes derivatives."
        ),
    )

    path: str | None = Field(
        None,
        description=(
            "Instead of `bids`: where the run writes this output, relative to the output folder (e.g. "
            "`roi_glm/roi_glm.tsv`, or `sub-{subject}.html` in a participant workflow, whose `{subject}` and "
            "`{session}` are filled per subject). Ending in `/`, it names a folder that receives the file, "
            "the list of files or the contents of the directory the output holds (e.g. `roi_glm/figures/`). "
            "May be `$arg`. No sidecar is written."
        ),
    )
    map_over: list[str] | None = Field(
        None,
        description=(
            "Keys of `bids` whose list values name the items of a list output together, item *i* by the "
            "*i*-th value of each (a `null` value leaves that entity out of item *i*'s name); an item may "
            "itself be a list of files, named by the other entities. The sink becomes a MapNode. An empty "
            "list writes nothing. E.g. `[space, resolution]` for one item per further template space."
        ),
    )
    required: bool = Field(
        True,
        description=(
            "False: the output may be missing, because it comes from an optional input the subject lacks "
            "(e.g. a T2w); then nothing is written for it. A missing required output fails the subject."
        ),
    )
    meta: str | None = Field(
        None,
        description=(
            "Another output of this workflow whose value (a dict) is merged into this output's JSON sidecar "
            "(e.g. `meta: conform_info` records what input validation did)."
        ),
    )

    @field_validator("from_")
    @classmethod
    def _source_form(cls, value: str) -> str:
        if not SOURCE_RE.match(value):
            raise ValueError(f"must be '<node>.<output>'; got {value!r}")
        return value

    @field_validator("path")
    @classmethod
    def _relative_path(cls, value: str | None) -> str | None:
        if value is None or ARG_REF_RE.match(value):
            return value
        problem = output_path_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _one_destination(self) -> OutputSpec:
        if self.bids is not None and self.path is not None:
            raise ValueError("give 'bids' or 'path', not both")
        unknown = [key for key in self.map_over or () if key not in (self.bids or {})]
        if unknown:
            raise ValueError(f"'map_over' names {unknown}, which are not keys of 'bids'")
        return self


def output_path_problem(value: str) -> str | None:
    """Why ``value`` cannot be an output's ``path`` (``None`` when it can): relative, inside the folder."""
    parts = value.replace("\\", "/").split("/")
    if not value.strip() or value.startswith(("/", "~")) or ":" in parts[0]:
        return f"must be a path relative to the output folder; got {value!r}"
    if ".." in parts:
        return f"must stay inside the output folder ('..' is not allowed); got {value!r}"
    return None


class ResourcesSpec(_Strict):
    """What one node needs; MultiProc budgets with it and SLURM jobs request it."""

    n_procs: int | str = Field(1, description="CPU cores (threads) the node uses; an int or `$arg`.")
    mem_gb: float | str = Field(0.5, description="Peak memory in GB; a number or `$arg`.")
    seconds: float | str = Field(
        1.0,
        description="Typical run time in s (a 1 mm T1w, one thread); a number or `$arg`. Only orders the "
        "ready nodes (MultiProc's `critical_path` scheduler starts the longest chain of work first), "
        "never a limit.",
    )

    @field_validator("n_procs", "mem_gb", "seconds")
    @classmethod
    def _positive_or_ref(cls, value: Any) -> Any:
        if isinstance(value, str):
            if not ARG_REF_RE.match(value):
                raise ValueError(f"must be a number or an '$arg' reference; got {value!r}")
        elif isinstance(value, bool) or value <= 0:
            raise ValueError(f"must be a positive number; got {value!r}")
        return value


class NodeSpec(_Strict):
    """One step of the workflow: an interface or a nested workflow."""

    interface: str | None = Field(
        None, description="Registered interface name (see `smriflow list`) or a dotted path module.Class."
    )
    workflow: str | None = Field(
        None,
        description="A packaged or relative YAML workflow, or a dotted path to a Python `init_*_wf` factory.",
    )
    doc: str = Field("", description="Optional note on what this node does.")
    params: dict[str, Any] = Field(
        default_factory=dict, description="Interface input values (`interface:` nodes); `$arg` allowed."
    )
    args: dict[str, Any] = Field(
        default_factory=dict,
        description="Arguments of the nested workflow (`workflow:` nodes); `$arg` allowed.",
    )
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec, description="CPU and memory needs.")
    in_: dict[str, str] = Field(
        default_factory=dict,
        alias="in",
        description="Connections, target port → source (`inputs.<name>` or `<node>.<output>`).",
    )
    map_over: list[str] | None = Field(
        None, description="Ports to iterate over (the node becomes a MapNode); `interface:` nodes only."
    )
    run_without_submitting: bool = Field(
        False, description="Run in the scheduler's process (for trivial nodes); never for heavy work."
    )

    @model_validator(mode="after")
    def _one_kind(self) -> NodeSpec:
        if (self.interface is None) == (self.workflow is None):
            raise ValueError("exactly one of 'interface' or 'workflow' is required")
        return self


class WorkflowSpec(_Strict):
    """A workflow file (``workflows/<name>.yml``)."""

    smriflow: Literal[1] = Field(description="Spec version; 1.")
    name: str = Field(description="Workflow name, `<file stem>_wf`.")
    doc: str = Field(description="What the workflow does; becomes the methods text (`__desc__`).")
    args: dict[str, ArgSpec] = Field(
        default_factory=dict, description="Arguments, each typed with a default."
    )
    level: Literal["participant", "group"] = Field(
        "participant",
        description=(
            "`participant` (default): `smriflow run` runs the workflow once per subject of a BIDS dataset. "
            "`group`: once for the whole study; it takes its files through `args` (two more built-in args, "
            "`output_dir` and `bids_dir`, hold the run's folders) and writes its `path:` outputs."
        ),
    )
    inputs: dict[str, InputSpec] = Field(
        default_factory=dict, description="Fields of `inputnode` (a group workflow may have none)."
    )
    outputs: dict[str, OutputSpec] = Field(description="Fields of `outputnode`, each fed by a node output.")
    nodes: dict[str, NodeSpec] = Field(description="Steps, keyed by node name (snake_case).")

    @field_validator("name")
    @classmethod
    def _name_form(cls, value: str) -> str:
        if not (NAME_RE.match(value) and value.endswith("_wf")):
            raise ValueError(f"must be snake_case ending in '_wf'; got {value!r}")
        return value

    @field_validator("nodes", "outputs")
    @classmethod
    def _not_empty(cls, value: dict, info) -> dict:
        # nipype's IdentityInterface (outputnode) cannot have zero fields
        if not value:
            raise ValueError(f"a workflow needs at least one entry under '{info.field_name}'")
        return value

    @model_validator(mode="after")
    def _inputs_needed(self) -> WorkflowSpec:
        # a participant workflow is filled per subject through its inputs; a group one may take only args
        if self.level == "participant" and not self.inputs:
            raise ValueError("a participant-level workflow needs at least one entry under 'inputs'")
        return self


def normalise_short_forms(data: Any) -> Any:
    """Expand the short forms of ``inputs`` and ``outputs`` in raw YAML data (returns a new dict)."""
    if not isinstance(data, dict):
        return data
    data = dict(data)
    inputs = data.get("inputs")
    if isinstance(inputs, list) and all(isinstance(i, str) for i in inputs):
        data["inputs"] = {name: {} for name in inputs}
    elif isinstance(inputs, dict):
        data["inputs"] = {k: ({} if v is None else v) for k, v in inputs.items()}
    outputs = data.get("outputs")
    if isinstance(outputs, dict):
        data["outputs"] = {k: ({"from": v} if isinstance(v, str) else v) for k, v in outputs.items()}
    return data
