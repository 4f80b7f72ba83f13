"""What ``smriflow run`` adds around a workflow to write BIDS derivatives, and the provenance it records.

Per subject (see :mod:`smriflow.engine.prepare`)::

    sub_<label>_wf
    ├── <workflow name>            the YAML workflow, inputs filled from pybids
    │                              (``<stem>_ses_<label>_wf`` per session when there are sessions)
    ├── derivatives_barrier        runs when *every* output of the subject exists
    └── ds_<output>                one DerivativesDataSink per output with ``bids:``

The workflow itself never writes anything (STYLE.md §4); the naming rules and sidecar fields are
described in ``docs/derivatives.md``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from smriflow._version import __version__
from smriflow.bids.entities import NIFTI_EXTENSIONS, OUTPUT_ENTITIES
from smriflow.config.errors import Problem, did_you_mean
from smriflow.config.execution import ExecConfig
from smriflow.config.spec import output_path_problem
from smriflow.engine.builder import build_workflow, methods_text
from smriflow.engine.loading import LoadedSpec
from smriflow.engine.naming import mapped_items, output_entities, output_path
from smriflow.engine.values import default_args, substitute
from smriflow.utils.atomic import atomic_write

__all__ = [
    "RunSetupError",
    "build_group_workflow",
    "build_subject_workflow",
    "check_entities",
    "check_output_dir",
    "check_output_entities",
    "check_runnable",
    "producer",
    "provenance_args",
    "write_dataset_description",
    "write_json",
]

#: Execution settings, not what the results depend on: left out of the per-file provenance.
NOT_PROVENANCE = ("omp_nthreads", "output_dir", "bids_dir")
#: The sub-workflow of a group run (a subject's is ``sub_<label>_wf``).
GROUP_NAME = "group_wf"
BIDS_VERSION = "1.10.0"
_LABEL_RE = re.compile(r"^[A-Za-z0-9]+$")
_EXTENSION_RE = re.compile(r"^(\.[A-Za-z0-9]+)+$")


class RunSetupError(ValueError):
    """The run cannot start (dataset, subjects or output folder); the message is one line for the user."""


# -- checks on the workflow file ----------------------------------------------------------------------------
def check_entities(entities: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Check the ``bids:`` mapping of a workflow output (with its ``$arg`` values already substituted).

    Parameters
    ----------
    entities : dict
        For example ``{"desc": "head", "suffix": "mask"}`` or ``{"suffix": "stats", "extension": ".json"}``.
        A list value (``{"atlas": ["a", "b"], ...}``) names the items of a list output in turn.

    Returns
    -------
    list of (key, problem, hint)
        Empty when the mapping names a valid derivative; ``key`` is ``""`` for the mapping itself.
    """
    problems: list[tuple[str, str, str]] = []
    if "suffix" not in entities:
        problems.append(("", "a derivative needs a 'suffix' (e.g. suffix: mask)", ""))
    for key, value in entities.items():
        if isinstance(value, str) and value.startswith("$"):
            continue  # an undeclared $arg: the workflow validation reports it
        if key in ("subject", "session"):
            problems.append((key, f"'{key}' cannot be set: it comes from the input file", ""))
        elif key == "extension":
            if not isinstance(value, str) or not _EXTENSION_RE.match(value):
                problems.append(
                    (key, f"must be a file extension such as '.nii.gz' or '.json'; got {value!r}", "")
                )
        elif key != "suffix" and key not in OUTPUT_ENTITIES:
            problems.append(
                (key, f"'{key}' is not a BIDS entity", did_you_mean(key, OUTPUT_ENTITIES | {"suffix"}))
            )
        elif key == "datatype":
            if not isinstance(value, str) or not re.match(r"^[a-z]+$", value):
                problems.append((key, f"must be a BIDS datatype such as 'anat'; got {value!r}", ""))
        elif not all(_is_label(item) for item in (value if isinstance(value, list) and value else [value])):
            problems.append(
                (
                    key,
                    f"must be letters and digits only (a BIDS label), or a list of them; got {value!r}",
                    "Hyphens and underscores separate entities.",
                )
            )
    return problems


def _is_label(value: Any) -> bool:
    return isinstance(value, str | int) and not isinstance(value, bool) and bool(_LABEL_RE.match(str(value)))


def check_output_entities(loaded: LoadedSpec, args: Mapping[str, Any] | None = None) -> list[Problem]:
    """Check the ``bids:`` entities of every output (``smriflow validate`` and every run do).

    ``$arg`` values are replaced by ``args`` (default: the arguments' defaults) before the check.
    """
    values = default_args(loaded) if args is None else dict(args)
    problems = []
    for name, out in loaded.spec.outputs.items():
        if out.bids is None:
            continue
        entities = substitute(out.bids, values)
        unresolved = any(str(entities[key]).startswith("$") for key in out.map_over or ())
        try:  # an output with map_over: each item's entities (a null value leaves its entity out)
            items = None if unresolved else mapped_items(out, entities)
        except ValueError as exc:
            problems.append(loaded.positions.problem(("outputs", name, "map_over"), str(exc)))
            continue
        if not items:  # not mapped, or mapped over nothing: the entities it always has
            items = [{key: value for key, value in entities.items() if key not in (out.map_over or ())}]
        found = dict.fromkeys(problem for item in items for problem in check_entities(item))
        for key, message, hint in found:
            path = ("outputs", name, "bids", key) if key else ("outputs", name, "bids")
            problems.append(loaded.positions.problem(path, message, hint, at_key=bool(key)))
    return problems


def check_runnable(loaded: LoadedSpec, args: Mapping[str, Any]) -> list[Problem]:
    """What a workflow needs for ``smriflow run``: inputs it can fill, an output to write.

    A participant workflow needs a BIDS query per required input; a group workflow takes its files
    through ``args``, so it can have no required input. Either needs an output with ``bids`` or ``path``.
    """
    spec, pos = loaded.spec, loaded.positions
    problems = check_output_entities(loaded, args)
    for name, out in spec.outputs.items():
        path = substitute(out.path, dict(args))
        if path is not None and (not isinstance(path, str) or output_path_problem(path)):
            problem = output_path_problem(path) if isinstance(path, str) else f"must be a str; got {path!r}"
            problems.append(pos.problem(("outputs", name, "path"), problem or ""))
    if spec.level == "group":
        for name, item in spec.inputs.items():
            if item.required:
                problems.append(
                    pos.problem(
                        ("inputs", name),
                        f"input '{name}' of a group workflow cannot be filled by `smriflow run`",
                        "Take it as an argument (args:) and pass it to the node as $name, "
                        "or set required: false.",
                        at_key=True,
                    )
                )
    for name, item in spec.inputs.items() if spec.level == "participant" else ():
        if item.bids is None and item.required:
            problems.append(
                pos.problem(
                    ("inputs", name),
                    f"required input '{name}' has no 'bids' query, so `smriflow run` cannot fill it",
                    "Add e.g. bids: {datatype: anat, suffix: T1w}.",
                    at_key=True,
                )
            )
    if not any(out.bids or out.path for out in spec.outputs.values()):
        what, example = (
            ("'path'", "path: group/table.tsv")
            if spec.level == "group"
            else ("'bids' entities", "bids: {desc: preproc, suffix: T1w}")
        )
        problems.append(
            pos.problem(
                ("outputs",),
                f"no output of '{spec.name}' has {what}, so `smriflow run` would write nothing",
                f"Add e.g. {example} to the outputs to keep.",
                at_key=True,
            )
        )
    return problems


def check_output_dir(
    output_dir: Path, loaded: LoadedSpec, args: Mapping[str, Any], *, longitudinal: bool = False
) -> None:
    """Refuse to mix, in one folder, derivatives of another workflow, of other arguments, or per session
    with ``--longitudinal`` ones.

    Raises
    ------
    RunSetupError
        Naming the previous workflow or the arguments that differ.
    """
    description = output_dir / "dataset_description.json"
    if not description.is_file():
        return
    try:
        generated = json.loads(description.read_text(encoding="utf-8"))["GeneratedBy"][0]
        previous_name = generated["Workflow"]["Name"]
        previous_args = generated["Workflow"]["Args"]
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        raise RunSetupError(
            f"{output_dir} holds a dataset_description.json that smriflow did not write; "
            "choose another --output-dir"
        ) from None
    if previous_name != loaded.spec.name:
        raise RunSetupError(
            f"{output_dir} holds derivatives of workflow '{previous_name}', not '{loaded.spec.name}'; "
            "choose another --output-dir"
        )
    changed = [
        f"{key}={previous_args.get(key)!r} (now {value!r})"
        for key, value in provenance_args(args).items()
        if previous_args.get(key) != value
    ]
    if changed:
        raise RunSetupError(
            f"{output_dir} holds derivatives of '{loaded.spec.name}' made with other arguments: "
            f"{', '.join(changed)}; choose another --output-dir, or remove that one"
        )
    if generated["Workflow"].get("Longitudinal", False) != longitudinal:
        made, now = ("with", "without") if not longitudinal else ("without", "with")
        raise RunSetupError(
            f"{output_dir} holds derivatives of '{loaded.spec.name}' made {made} --longitudinal; run {now} "
            "it into another --output-dir"
        )


def provenance_args(args: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments the results depend on (all but :data:`NOT_PROVENANCE`), sorted by name."""
    return {key: value for key, value in sorted(args.items()) if key not in NOT_PROVENANCE}


# -- the graph ----------------------------------------------------------------------------------------------
def build_subject_workflow(
    loaded: LoadedSpec,
    args: Mapping[str, Any],
    label: str,
    units: Mapping[str | None, Mapping[str, str | list[str]]],
    *,
    bids_dir: Path,
    output_dir: Path,
):
    """Build ``sub_<label>_wf``: the workflow per session, the barrier and the datasinks.

    Parameters
    ----------
    loaded : LoadedSpec
        The validated workflow file; ``args`` its resolved arguments.
    label : str
        Subject label (without ``sub-``).
    units : mapping
        Session (``None``: no session) → input name → file.
    bids_dir, output_dir : Path
        Absolute paths of the dataset (for ``Sources``) and of the derivatives folder.
    """
    from nipype.pipeline import engine as pe

    from smriflow.interfaces.bids import Barrier, DerivativesDataSink

    spec = loaded.spec
    if len(units) > 1:  # one file per subject would be written once per session
        for out_name, out in spec.outputs.items():
            path = substitute(out.path, dict(args))
            # a folder path receives files named by the workflow, which tell the sessions apart
            if path is not None and "{session}" not in path and not path.endswith("/"):
                raise RunSetupError(
                    f"sub-{label} has {len(units)} sessions but output '{out_name}' is written to {path!r}, "
                    "which has no {session}: add it to the path"
                )
    sub_wf = pe.Workflow(name=f"sub_{label}_wf")
    # an output mapped over nothing (e.g. no further template space) has no item to write
    absent = {
        name for name, out in spec.outputs.items() if mapped_items(out, output_entities(out, args)) == []
    }
    fields: dict[str, tuple[Any, str, Mapping[str, str | list[str]]]] = {}
    for session, files in units.items():
        suffix = "" if session is None else f"_ses_{session}"
        name = spec.name if session is None else f"{spec.name.removesuffix('_wf')}{suffix}_wf"
        wf = build_workflow(loaded, dict(args), name=name)
        inputnode = wf.get_node("inputnode")
        for input_name, path in files.items():
            setattr(inputnode.inputs, input_name, path)
        for out_name in spec.outputs:
            if out_name not in absent:
                fields[f"{out_name}{suffix}"] = (wf, out_name, files)
    optional = [name for name, (_, out_name, _) in fields.items() if not spec.outputs[out_name].required]
    barrier = pe.Node(
        Barrier(fields=list(fields), optional=optional),
        name="derivatives_barrier",
        run_without_submitting=True,
        mem_gb=0.1,
    )
    connections = []
    for field_name, (wf, out_name, files) in fields.items():
        connections.append((wf, barrier, [(f"outputnode.{out_name}", field_name)]))
        required = spec.outputs[out_name].required
        session = field_name[len(out_name) + len("_ses_") :] if field_name != out_name else ""
        where = output_path(spec.outputs[out_name], args, subject=label, session=session)
        if where is not None:
            sink = _publish_node(f"ds_{field_name}", output_dir, where, optional=not required)
            connections.append((barrier, sink, [(field_name, "in_file")]))
            continue
        entities = output_entities(spec.outputs[out_name], args)
        if not entities:
            continue
        extension = entities.pop("extension", None)
        compress = (extension == ".nii.gz") if extension in NIFTI_EXTENSIONS else None
        provenance = _file_provenance(loaded, args, wf, out_name, files, bids_dir)
        mapped = {key: entities.pop(key) for key in spec.outputs[out_name].map_over or ()}
        interface = DerivativesDataSink(
            base_directory=str(output_dir),
            source_file=_source_file(loaded, files),
            compress=compress,
            provenance=provenance,
            optional=not required,
            **entities,
        )
        # Submitted like any node, not run in the scheduler's process: rewriting a large image (header
        # fixes, compression) takes seconds, and would stall every other subject meanwhile.
        if mapped:  # item i of the output is named by the i-th value of each mapped entity
            sink = pe.MapNode(interface, iterfield=["in_file", *mapped], name=f"ds_{field_name}", mem_gb=0.5)
            for key, values in mapped.items():
                setattr(sink.inputs, key, values)
        else:
            sink = pe.Node(interface, name=f"ds_{field_name}", mem_gb=0.5)
        connections.append((barrier, sink, [(field_name, "in_file")]))
        meta = spec.outputs[out_name].meta
        if meta is not None:  # a dict made by the workflow (e.g. what conform did) joins the sidecar
            session_suffix = field_name[len(out_name) :]
            connections.append((barrier, sink, [(f"{meta}{session_suffix}", "meta_dict")]))
    sub_wf.connect(connections)
    return sub_wf


def build_group_workflow(loaded: LoadedSpec, args: Mapping[str, Any], *, output_dir: Path):
    """Build ``group_wf``: the group workflow, the barrier and one ``PublishOutput`` per ``path:`` output.

    Like a subject's, the outputs are written only once every one of them exists, so a failed group run
    leaves none of its files behind.
    """
    from nipype.pipeline import engine as pe

    from smriflow.interfaces.bids import Barrier

    spec = loaded.spec
    group_wf = pe.Workflow(name=GROUP_NAME)
    wf = build_workflow(loaded, dict(args))
    barrier = pe.Node(
        Barrier(fields=list(spec.outputs), optional=[n for n, o in spec.outputs.items() if not o.required]),
        name="derivatives_barrier",
        run_without_submitting=True,
        mem_gb=0.1,
    )
    connections = [(wf, barrier, [(f"outputnode.{name}", name) for name in spec.outputs])]
    for name, out in spec.outputs.items():
        path = substitute(out.path, dict(args))
        if path is not None:
            sink = _publish_node(f"ds_{name}", output_dir, path, optional=not out.required)
            connections.append((barrier, sink, [(name, "in_file")]))
    group_wf.connect(connections)
    return group_wf


def _publish_node(name: str, output_dir: Path, path: str, *, optional: bool = False):
    from nipype.pipeline import engine as pe

    from smriflow.interfaces.publish import PublishOutput

    return pe.Node(
        PublishOutput(base_directory=str(output_dir), path=path, optional=optional), name=name, mem_gb=0.5
    )


def _source_file(loaded: LoadedSpec, files: Mapping[str, str | list[str]]) -> str | list[str]:
    """The file(s) whose entities name the derivatives: those of the first input (in file order) that has
    any. Several files (``many: true``) keep only the entities they share: runs averaged lose ``run-``, the
    sessions of ``--longitudinal`` lose ``ses-`` (niworkflows' rule)."""
    return next(files[name] for name in loaded.spec.inputs if name in files)


def _flat(files: Mapping[str, str | list[str]]) -> list[str]:
    return [path for value in files.values() for path in ([value] if isinstance(value, str) else value)]


def _file_provenance(
    loaded: LoadedSpec,
    args: Mapping[str, Any],
    wf: Any,
    out_name: str,
    files: Mapping[str, str | list[str]],
    bids_dir: Path,
) -> dict[str, Any]:
    out = loaded.spec.outputs[out_name]
    fields: dict[str, Any] = {}
    if out.doc:
        fields["Description"] = out.doc
    fields["Sources"] = ["bids:raw:" + Path(path).relative_to(bids_dir).as_posix() for path in _flat(files)]
    fields["GeneratedBy"] = [
        {
            "Name": "smriflow",
            "Version": __version__,
            "Workflow": loaded.spec.name,
            "Output": out_name,
            "Node": producer(wf, out_name) or out.from_,
            "Args": provenance_args(args),
            # threaded steps (ANTs) can differ in the last bits between thread counts: part of provenance
            "Threads": int(args.get("omp_nthreads", 1)),
        }
    ]
    return fields


def producer(wf: Any, out_name: str) -> str | None:
    """The ``node.port`` that feeds ``outputnode.<out_name>`` of ``wf``, followed into nested workflows.

    For the packaged example, ``t1w_mask`` gives ``example_wf.masking_wf.threshold.out_mask``.
    """
    from nipype.pipeline import engine as pe

    outputnode = wf.get_node("outputnode")
    if outputnode is None:
        return None
    for source, _, data in wf._graph.in_edges(outputnode, data=True):
        for source_port, target_port in data["connect"]:
            if target_port != out_name or not isinstance(source_port, str):
                continue
            if isinstance(source, pe.Workflow):
                inner_node, _, inner_port = source_port.partition(".")
                if inner_node == "outputnode":
                    inner = producer(source, inner_port)
                    return f"{wf.name}.{inner}" if inner else None
            return f"{wf.name}.{source.name}.{source_port}"
    return None


# -- provenance -------------------------------------------------------------------------------------------
def write_dataset_description(
    loaded: LoadedSpec,
    args: Mapping[str, Any],
    config: ExecConfig,
    *,
    bids_dir: Path,
    output_dir: Path,
    longitudinal: bool = False,
) -> Path:
    """Write ``OUTPUT/dataset_description.json``: a derivative dataset with smriflow's ``GeneratedBy``."""
    spec = loaded.spec
    description = {
        "Name": f"smriflow derivatives ({spec.name})",
        "BIDSVersion": BIDS_VERSION,
        "DatasetType": "derivative",
        "GeneratedBy": [
            {
                "Name": "smriflow",
                "Version": __version__,
                "Description": methods_text(loaded, dict(args)),
                "Workflow": {
                    "Name": spec.name,
                    "Spec": str(loaded.path.resolve()),
                    "Args": dict(sorted(args.items())),
                    # one anatomical per subject from all its sessions (`smriflow run --longitudinal`)
                    "Longitudinal": longitudinal,
                },
                "ExecutionConfig": config_record(config),
            }
        ],
        "SourceDatasets": [{"URL": bids_dir.as_uri()}],
        "DatasetLinks": {"raw": bids_dir.as_uri()},
    }
    path = output_dir / "dataset_description.json"
    write_json(path, description)
    return path


def config_record(config: ExecConfig) -> dict[str, Any]:
    """The resolved execution config (every default filled in) and the file it came from."""
    return {"Source": config.source, **config.model_dump(mode="json")}


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (:func:`smriflow.utils.atomic.atomic_write`).

    A failed write (a full disk, a signal) leaves the previous file as it was and removes the temporary
    one; the error names ``path``.
    """
    text = json.dumps(data, indent=2) + "\n"
    atomic_write(path, lambda temporary: Path(temporary).write_text(text, encoding="utf-8"))
