"""Prepare a run of a YAML workflow on a BIDS dataset: every check before computing, and its one graph.

:func:`prepare_run` checks everything that can be checked before computing (the workflow file, ``args``,
the execution config, the dataset and the subjects) and builds one nipype graph::

    smriflow_wf
    └── sub_<label>_wf                 one per subject (a Python loop, not iterables)
        ├── <workflow name>            the YAML workflow, inputs filled from pybids
        │                              (``<stem>_ses_<label>_wf`` per session when there are sessions)
        ├── derivatives_barrier        runs when *every* output of the subject exists
        └── ds_<output>                one DerivativesDataSink per output with ``bids:``

The :class:`PreparedRun` it returns is what :func:`smriflow.engine.run.execute_run` runs; the files each
subject takes (:func:`taken_inputs`) and how inputs with ``many: true`` are combined
(:func:`combined_inputs`) are read from it, for the summary and for ``smriflow run --dry-run``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from copy import deepcopy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smriflow.bids.inputs import SubjectFiles as SubjectPlan
from smriflow.config.errors import SpecError, did_you_mean
from smriflow.config.execution import ExecConfig, load_exec_config, override
from smriflow.engine.builder import locate_workflow, resolve_args
from smriflow.engine.derivatives import (
    RunSetupError,
    build_group_workflow,
    build_subject_workflow,
    check_output_dir,
    check_runnable,
)
from smriflow.engine.loading import LoadedSpec
from smriflow.engine.summary import GROUP_LABEL, TOP_NAME, subject_of
from smriflow.engine.validate import validate_file

__all__ = ["PreparedRun", "SubjectPlan", "combined_inputs", "prepare_run", "taken_inputs"]


@dataclass
class PreparedRun:
    """Everything :func:`smriflow.engine.run.execute_run` needs; ``nodes`` maps each node's full name to
    its subject."""

    loaded: LoadedSpec
    args: dict[str, Any]
    config: ExecConfig
    bids_dir: Path | None  # None: a group run without --bids-dir
    output_dir: Path
    work_dir: Path
    subjects: list[SubjectPlan]
    workflow: Any | None  # nipype Workflow; None when no subject can run
    nodes: dict[str, str] = field(default_factory=dict)
    longitudinal: bool = False  # one unit per subject from every session (--longitudinal)

    @property
    def total_nodes(self) -> int:
        return len(self.nodes)


def prepare_run(
    workflow: str | Path,
    bids_dir: str | Path | None,
    output_dir: str | Path,
    *,
    participant_labels: Sequence[str] | None = None,
    work_dir: str | Path | None = None,
    exec_config: ExecConfig | str | Path | None = None,
    args: Mapping[str, Any] | None = None,
    arg_source: str = "argument",
    longitudinal: bool = False,
    bids_filters: str | Path | Mapping[str, Mapping[str, Any]] | None = None,
    session_labels: Sequence[str] | None = None,
) -> PreparedRun:
    """Check the inputs of a run and build its graph, without running anything.

    Parameters
    ----------
    workflow : str or Path
        A packaged workflow name or a YAML file.
    bids_dir : str or Path or None
        The BIDS dataset; optional for a group workflow (``level: group``), which gets it as ``$bids_dir``.
    output_dir : str or Path
        The derivatives folder (created if needed); a group workflow gets it as ``$output_dir``.
    participant_labels : sequence of str, optional
        Subjects to run (with or without ``sub-``); default: every subject of the dataset. Participant
        workflows only.
    work_dir : str or Path, optional
        Intermediate results; default: the config's ``work_dir``, else ``<output_dir>/../work``.
    exec_config : ExecConfig, str or Path, optional
        A loaded config, or a packaged name / file for :func:`load_exec_config` (default ``local``).
    args : mapping, optional
        Values of the workflow's ``args`` (and ``seed``, ``omp_nthreads``).
    arg_source : str
        How ``args`` were given, for messages (the CLI passes ``--set``).
    longitudinal : bool
        Process each subject once from the files of all its sessions (inputs with ``many: true`` get every
        session's files; derivatives keep only the entities those files share, so no ``ses-``), instead of
        once per session.
    bids_filters : path or mapping, optional
        A NiPreps BIDS filter file (``--bids-filter-file``) or its content: input name → pybids entity
        filters added to the input's query (:mod:`smriflow.bids.filters`). Participant workflows only.
    session_labels : sequence of str, optional
        Sessions to take (``--session-label``, with or without ``ses-``). Participant workflows only.

    Raises
    ------
    SpecError
        Mistakes in the workflow file, the arguments or the execution config (all of them).
    RunSetupError
        A missing dataset, unknown participant labels, or an output folder holding other derivatives.
    """
    loaded = validate_file(locate_workflow(workflow))
    config = exec_config if isinstance(exec_config, ExecConfig) else load_exec_config(exec_config)
    if work_dir is not None:
        config = override(config, work_dir=work_dir)
    group = loaded.spec.level == "group"
    output_dir = Path(os.path.abspath(output_dir))
    if bids_dir is not None:
        bids_dir = Path(os.path.abspath(bids_dir))
    elif not group:
        raise RunSetupError(
            f"workflow '{loaded.spec.name}' runs per subject: give the BIDS dataset (--bids-dir)"
        )
    given = {"omp_nthreads": config.omp_nthreads, **(args or {})}
    if group:
        _refuse_run_folders(given, arg_source)
        if participant_labels:
            raise RunSetupError(
                f"'{loaded.spec.name}' is a group workflow (one run for the whole study): "
                "--participant-label does not apply"
            )
        for option, value in (("--bids-filter-file", bids_filters), ("--session-label", session_labels)):
            if value:
                raise RunSetupError(f"'{loaded.spec.name}' is a group workflow: {option} does not apply")
        given.update(output_dir=str(output_dir), bids_dir=str(bids_dir) if bids_dir else "")
    resolved = resolve_args(loaded, given, source=arg_source)
    problems = check_runnable(loaded, resolved)
    if problems:
        raise SpecError(problems)
    if resolved["omp_nthreads"] != config.omp_nthreads:  # one thread setting for the nodes and the plugin
        config = override(config, omp_nthreads=resolved["omp_nthreads"])

    run_work_dir = Path(config.work_dir) if config.work_dir else output_dir.parent / "work"
    if bids_dir is not None:
        if not bids_dir.is_dir():
            raise RunSetupError(f"BIDS dataset folder not found: {bids_dir}")
        # smriflow never writes into the input dataset (symbolic links followed), except under derivatives/
        for option, folder in (("--output-dir", output_dir), ("--work-dir", run_work_dir)):
            if _inside_dataset(folder, bids_dir):
                raise RunSetupError(
                    f"{option} {folder} is inside the BIDS dataset; use a folder outside it or under "
                    f"{bids_dir / 'derivatives'}"
                )
    if group and longitudinal:
        raise RunSetupError(f"'{loaded.spec.name}' is a group workflow: --longitudinal does not apply")
    if not group:  # a group run adds its files to the folder of the derivatives it summarises
        check_output_dir(output_dir, loaded, resolved, longitudinal=longitudinal)

    if group:
        subjects = [SubjectPlan(GROUP_LABEL)]
    else:
        subjects = _collect_subjects(
            loaded, bids_dir, participant_labels, longitudinal, bids_filters, session_labels
        )
    prepared = PreparedRun(
        loaded,
        resolved,
        config,
        bids_dir,
        output_dir,
        run_work_dir,
        subjects,
        None,
        longitudinal=longitudinal,
    )
    runnable = [subject for subject in subjects if subject.problem is None]
    if runnable:
        from nipype.pipeline import engine as pe

        top = pe.Workflow(name=TOP_NAME)
        if group:
            top.add_nodes([build_group_workflow(loaded, resolved, output_dir=output_dir)])
        for subject in runnable if not group else ():
            top.add_nodes(
                [
                    build_subject_workflow(
                        loaded,
                        resolved,
                        subject.label,
                        subject.units,
                        bids_dir=bids_dir,
                        output_dir=output_dir,
                    )
                ]
            )
        if not config.work_dir:
            top.base_dir = str(run_work_dir)
        prepared.workflow, prepared.nodes = top, _execution_nodes(top)
    return prepared


def _inside_dataset(folder: Path, bids_dir: Path) -> bool:
    """Whether ``folder`` is (or is under) ``bids_dir`` but not under its ``derivatives/``."""
    real, dataset = folder.resolve(), bids_dir.resolve()
    return real.is_relative_to(dataset) and not real.is_relative_to(dataset / "derivatives")


def _refuse_run_folders(given: Mapping[str, Any], arg_source: str) -> None:
    """A group workflow's ``output_dir``/``bids_dir`` come from the run's options, never from ``--set``."""
    for name, option in (("output_dir", "--output-dir"), ("bids_dir", "--bids-dir")):
        if name in given:
            raise RunSetupError(f"{arg_source} {name}: it is set by {option}; give that option instead")


def _collect_subjects(
    loaded: LoadedSpec,
    bids_dir: Path,
    participant_labels: Sequence[str] | None,
    longitudinal: bool,
    bids_filters: str | Path | Mapping[str, Mapping[str, Any]] | None = None,
    session_labels: Sequence[str] | None = None,
) -> list[SubjectPlan]:
    from smriflow.bids.filters import BIDSFilterError, apply_filters, load_bids_filters
    from smriflow.bids.inputs import BIDSInputError, BIDSQueryError, collect_subjects

    queries = {name: (item.bids, item.required) for name, item in loaded.spec.inputs.items() if item.bids}
    if isinstance(bids_filters, str | Path):
        try:
            bids_filters = load_bids_filters(bids_filters, queries)
        except BIDSFilterError as exc:
            raise RunSetupError(str(exc)) from None
    queries = apply_filters(queries, bids_filters, session_labels)
    many = [name for name, item in loaded.spec.inputs.items() if item.many]
    try:
        return collect_subjects(bids_dir, queries, participant_labels, many=many, merge_sessions=longitudinal)
    except BIDSInputError as exc:
        raise RunSetupError(str(exc)) from None
    except BIDSQueryError as exc:
        path = ("inputs", exc.input_name, "bids", exc.key)
        hint = did_you_mean(exc.key, exc.choices)
        raise SpecError([loaded.positions.problem(path, exc.message, hint, at_key=True)]) from None


def _execution_nodes(top: Any) -> dict[str, str]:
    """Full names of the nodes nipype will execute (identity nodes removed), with their subject."""
    from nipype.pipeline.engine.utils import generate_expanded_graph

    graph = generate_expanded_graph(deepcopy(top._create_flat_graph()))
    return dict(sorted((node.fullname, subject_of(node.fullname) or "") for node in graph.nodes()))


def taken_inputs(subject: SubjectPlan) -> dict[str, list[str]]:
    """The files a subject's run takes, per input: keys ``<input>``, or ``ses-<label> <input>`` when the
    subject's sessions are processed one by one.

    Examples
    --------
    >>> plan = SubjectPlan("01", {"1": {"t1w": ["a.nii"]}, "2": {"t1w": ["b.nii", "c.nii"]}})
    >>> taken_inputs(plan)
    {'ses-1 t1w': ['a.nii'], 'ses-2 t1w': ['b.nii', 'c.nii']}
    """
    taken: dict[str, list[str]] = {}
    for session, files in subject.units.items():
        for name, paths in files.items():
            key = name if session is None else f"ses-{session} {name}"
            taken[key] = [paths] if isinstance(paths, str) else list(paths)
    return taken


def combined_inputs(prepared: PreparedRun) -> dict[str, str]:
    """How each ``many: true`` input's files are combined: ``<input>_runs=<value>`` when the workflow has
    such an argument (anat_preproc's ``t1w_runs``), else ``combined by the workflow``."""
    notes = {}
    for name, item in prepared.loaded.spec.inputs.items():
        if item.many:
            arg = f"{name}_runs"
            notes[name] = (
                f"{arg}={prepared.args[arg]}" if arg in prepared.args else "combined by the workflow"
            )
    return notes
