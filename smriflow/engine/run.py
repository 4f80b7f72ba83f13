"""Run a YAML workflow on a BIDS dataset and write BIDS derivatives: the logic behind ``smriflow run``.

:func:`prepare_run` checks everything that can be checked before computing (the workflow file, ``args``,
the execution config, the dataset and the subjects) and builds one nipype graph::

    smriflow_wf
    └── sub_<label>_wf                 one per subject (a Python loop, not iterables)
        ├── <workflow name>            the YAML workflow, inputs filled from pybids
        │                              (``<stem>_ses_<label>_wf`` per session when there are sessions)
        ├── derivatives_barrier        runs when *every* output of the subject exists
        └── ds_<output>                one DerivativesDataSink per output with ``bids:``

:func:`execute_run` writes ``dataset_description.json``, sends nipype's logging to ``OUTPUT/logs/`` and
runs the graph with :func:`smriflow.engine.plugins.run_workflow`, then sums up per subject. A failing
subject stops nothing but itself (when the config keeps ``stop_on_first_crash: false``), and leaves no
derivative behind. :func:`run_bids` does both; the CLI calls the two steps to show progress.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from copy import deepcopy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smriflow._version import __version__
from smriflow.bids.inputs import SubjectFiles as SubjectPlan
from smriflow.bids.publish import OutsideOutputError, check_inside
from smriflow.config.errors import SpecError, did_you_mean
from smriflow.config.execution import ExecConfig, load_exec_config, override
from smriflow.engine.builder import locate_workflow, resolve_args
from smriflow.engine.derivatives import (
    GROUP_NAME,
    RunSetupError,
    build_group_workflow,
    build_subject_workflow,
    check_output_dir,
    check_runnable,
    config_record,
    write_dataset_description,
    write_json,
)
from smriflow.engine.plugins import FailedNode, RunReport, run_workflow
from smriflow.engine.validate import LoadedSpec, validate_file

__all__ = [
    "PreparedRun",
    "RunSetupError",
    "RunSummary",
    "SubjectPlan",
    "SubjectResult",
    "execute_run",
    "prepare_run",
    "run_bids",
]

TOP_NAME = "smriflow_wf"
#: The label a group run reports its one unit under (a subject's is its BIDS label).
GROUP_LABEL = "group"
_SUBJECT_RE = re.compile(rf"(?:^|\.)(?:sub_([A-Za-z0-9]+)_wf|({GROUP_NAME}))(?:\.|$)")
logger = logging.getLogger("smriflow.engine")

StatusCallback = Callable[[Any, str], None]


@dataclass
class PreparedRun:
    """Everything :func:`execute_run` needs; ``nodes`` maps each node's full name to its subject."""

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


@dataclass
class SubjectResult:
    """How one subject ended: ``done``, ``failed``, ``incomplete`` (nodes not run) or ``interrupted``."""

    label: str
    status: str
    nodes_done: int = 0
    nodes_total: int = 0
    failed: list[FailedNode] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)  # failed node name -> last line of its error
    reason: str = ""
    inputs: dict[str, list[str]] = field(default_factory=dict)  # [ses-<label> ]input -> the files taken

    @property
    def display(self) -> str:
        """How the summary names the unit: ``sub-<label>``, or ``group`` for a group run."""
        return GROUP_LABEL if self.label == GROUP_LABEL else f"sub-{self.label}"

    def node_path(self, node: FailedNode) -> str:
        """The failed node's hierarchy below the top workflow, e.g. ``sub_01_wf.example_wf.smooth``."""
        return node.name.removeprefix(f"{TOP_NAME}.")


@dataclass
class RunSummary:
    """The outcome of a run, per subject."""

    workflow: str
    output_dir: Path
    work_dir: Path
    log_file: Path | None
    subjects: list[SubjectResult]
    report: RunReport | None = None
    interrupted: int | None = None
    """The signal that ended the run early (SIGINT, SIGTERM), if one did."""
    combined: dict[str, str] = field(default_factory=dict)
    """Inputs with ``many: true`` → how the workflow combines their files (``t1w_runs=average``)."""

    @property
    def ok(self) -> bool:
        return self.interrupted is None and all(subject.status == "done" for subject in self.subjects)

    @property
    def exit_code(self) -> int:
        """0 when every subject is done, 1 otherwise; ``128 + signal`` when interrupted (130, 143)."""
        if self.interrupted is not None:
            return 128 + self.interrupted
        return 0 if self.ok else 1


# -- preparing ----------------------------------------------------------------------------------------------
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


# -- running ------------------------------------------------------------------------------------------------
def execute_run(
    prepared: PreparedRun, *, status_callback: StatusCallback | None = None, debug: bool = False
) -> RunSummary:
    """Run a prepared graph; write ``dataset_description.json`` and the logs; sum up per subject.

    Parameters
    ----------
    prepared : PreparedRun
        From :func:`prepare_run`.
    status_callback : callable, optional
        ``status_callback(node, status)`` as nipype calls it (``start``, ``end``, ``exception``).
    debug : bool
        Also show nipype's log on the terminal (stderr).

    Raises
    ------
    RunSetupError
        When the plugin refuses the settings before any node ran (e.g. a node needs more than n_procs).
    """
    from smriflow.engine.locks import LOCK_FOLDER, RunLocks

    group = prepared.loaded.spec.level == "group"
    names = [f"group-{prepared.loaded.spec.name}"] if group else []
    names += [f"sub-{s.label}" for s in prepared.subjects if s.problem is None and not group]
    locks = RunLocks(prepared.output_dir, names, what=prepared.loaded.spec.name)
    try:
        logs = prepared.output_dir / "logs"
        for folder in (logs, prepared.output_dir / LOCK_FOLDER):  # a symlink out of the folder: refused
            check_inside(prepared.output_dir, folder / "x")
        locks.acquire()  # before anything is written: two runs never process one subject at once
        logs.mkdir(parents=True, exist_ok=True)
        base = time.strftime("%Y%m%d-%H%M%S")
        stamp, attempt = base, 1
        while True:  # two runs within one second: run-<time>-2, ...; "x": two processes never share one
            log_file = logs / f"run-{stamp}.log"
            try:
                log_file.open("x").close()
                break
            except FileExistsError:
                attempt += 1
                stamp = f"{base}-{attempt}"
        if not group and prepared.workflow is not None:  # nothing to describe when no subject can run
            write_dataset_description(
                prepared.loaded,
                prepared.args,
                prepared.config,
                bids_dir=prepared.bids_dir,
                output_dir=prepared.output_dir,
                longitudinal=prepared.longitudinal,
            )
        write_json(logs / f"run-{stamp}.json", _run_record(prepared))
    except OutsideOutputError as exc:
        locks.release()
        raise RunSetupError(str(exc)) from None
    except OSError as exc:
        locks.release()
        where = exc.filename or prepared.output_dir
        raise RunSetupError(
            f"--output-dir {prepared.output_dir}: cannot write {where} ({exc.strerror or exc})"
        ) from exc
    except BaseException:
        locks.release()
        raise
    try:
        return _execute(prepared, log_file, status_callback=status_callback, debug=debug)
    finally:
        locks.release()


def _execute(
    prepared: PreparedRun, log_file: Path, *, status_callback: StatusCallback | None, debug: bool
) -> RunSummary:
    from smriflow.engine.interrupt import (
        signal_name,
        signal_number,
        stop_workers,
        termination_as_interrupt,
    )

    tracker = _NodeTracker(status_callback)
    report, interrupted = None, None
    with log_to_file(log_file, echo=debug), termination_as_interrupt():
        logger.info(
            "smriflow %s: %s on %s -> %s",
            __version__,
            prepared.loaded.spec.name,
            prepared.bids_dir,
            prepared.output_dir,
        )
        if prepared.workflow is not None:
            try:
                report = run_workflow(
                    prepared.workflow,
                    prepared.config,
                    omp_nthreads=prepared.args["omp_nthreads"],
                    status_callback=tracker,
                )
            except ValueError as exc:
                if tracker.started:
                    raise
                raise RunSetupError(str(exc)) from exc
            except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (termination_as_interrupt)
                interrupted = signal_number(exc)
                stop_workers()  # run_workflow did already for MultiProc; a custom plugin may not have
                logger.warning(
                    "interrupted by %s; finished nodes stay in the work directory %s",
                    signal_name(interrupted),
                    prepared.work_dir,
                )
    if interrupted is not None:
        results = [
            _interrupted_result(prepared, subject, tracker, interrupted) for subject in prepared.subjects
        ]
    else:
        results = [_subject_result(prepared, subject, report, tracker) for subject in prepared.subjects]
    for result, subject in zip(results, prepared.subjects, strict=True):
        result.inputs = taken_inputs(subject)
    return RunSummary(
        prepared.loaded.spec.name,
        prepared.output_dir,
        prepared.work_dir,
        log_file,
        results,
        report,
        interrupted=interrupted,
        combined=combined_inputs(prepared),
    )


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


def _interrupted_result(
    prepared: PreparedRun, subject: SubjectPlan, tracker: _NodeTracker, signum: int
) -> SubjectResult:
    """A subject when the run was interrupted: ``done`` if all its nodes finished, else ``interrupted``."""
    from smriflow.engine.interrupt import signal_name

    if subject.problem is not None:
        return SubjectResult(subject.label, "failed", reason=subject.problem)
    mine = {name for name, label in prepared.nodes.items() if label == subject.label}
    done, failed = len(mine & tracker.done), sorted(mine & tracker.failed)
    result = SubjectResult(subject.label, "done", nodes_done=done, nodes_total=len(mine))
    if failed:
        result.status = "failed"
        result.reason = f"node {failed[0].removeprefix(TOP_NAME + '.')} failed before the interruption"
    elif done < len(mine):
        result.status = "interrupted"
        result.reason = (
            f"interrupted by {signal_name(signum)} after {done} of {len(mine)} nodes; "
            "run the same command again to resume"
        )
    return result


def run_bids(
    workflow: str | Path,
    bids_dir: str | Path,
    output_dir: str | Path,
    *,
    status_callback: StatusCallback | None = None,
    debug: bool = False,
    **options: Any,
) -> RunSummary:
    """:func:`prepare_run` then :func:`execute_run`; ``options`` are those of :func:`prepare_run`.

    Examples
    --------
    >>> summary = run_bids("example", "bids", "derivatives", participant_labels=["01"])  # doctest: +SKIP
    >>> summary.exit_code  # doctest: +SKIP
    0
    """
    prepared = prepare_run(workflow, bids_dir, output_dir, **options)
    return execute_run(prepared, status_callback=status_callback, debug=debug)


class _NodeTracker:
    """Records which nodes started, finished or failed, then passes the call on."""

    def __init__(self, callback: StatusCallback | None):
        self.callback = callback
        self.started = False
        self.done: set[str] = set()
        self.failed: set[str] = set()

    def __call__(self, node: Any, status: str) -> None:
        self.started = True
        if status == "end":
            self.done.add(node.fullname)
        elif status == "exception":
            self.failed.add(node.fullname)
        if self.callback is not None:
            self.callback(node, status)


def _subject_result(
    prepared: PreparedRun, subject: SubjectPlan, report: RunReport | None, tracker: _NodeTracker
) -> SubjectResult:
    if subject.problem is not None:
        return SubjectResult(subject.label, "failed", reason=subject.problem)
    mine = {name for name, label in prepared.nodes.items() if label == subject.label}
    result = SubjectResult(subject.label, "done", nodes_total=len(mine))
    if report is None:
        return SubjectResult(subject.label, "incomplete", nodes_total=len(mine), reason="not run")
    result.failed = [node for node in report.failed if subject_of(node.name) == subject.label]
    not_run = {name for name in report.not_run if subject_of(name) == subject.label}
    if report.plugin == "SLURMGraph":
        result.nodes_done = len(mine - not_run) - len(result.failed)
    else:
        result.nodes_done = len(mine & tracker.done)
    for node in result.failed:
        result.errors[node.name] = last_error_line(node.crash_file)
    if result.failed:
        result.status = "failed"
    elif not report.waited:
        result.status, result.reason = "incomplete", "submitted to SLURM; not waited for"
    elif not_run or result.nodes_done < result.nodes_total:
        result.status = "incomplete"
        stopped = prepared.config.nipype.stop_on_first_crash
        why = "the config sets stop_on_first_crash" if stopped else "the run stopped early"
        result.reason = f"{result.nodes_total - result.nodes_done} node(s) did not run ({why})"
    return result


def last_error_line(crash_file: Path | None) -> str:
    """The last line of the traceback in a text crash file (the error itself), or ``""``."""
    if crash_file is None or crash_file.suffix != ".txt":
        return ""
    try:
        lines = [line.strip() for line in crash_file.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1][:300] if lines else ""


_NO_LOCK = threading.Lock()


class _LogFile(logging.FileHandler):
    """The run's log file; when it cannot be written (a full disk), one line on stderr instead of a
    traceback for every record."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._failed = threading.Event()
        self._owner = os.getpid()

    def handleError(self, record: logging.LogRecord | None) -> None:  # noqa: N802 (logging's name)
        error = sys.exc_info()[1]
        with self.lock or _NO_LOCK:
            if self._failed.is_set():
                return
            self._failed.set()
        if os.getpid() != self._owner:  # a forked MultiProc worker: the run's process says it once
            return
        reason = getattr(error, "strerror", None) or error
        print(
            f"smriflow: cannot write the log {self.baseFilename} ({reason}); its end is lost", file=sys.stderr
        )

    def flush(self) -> None:
        try:
            super().flush()
        except OSError:
            self.handleError(None)

    def close(self) -> None:
        try:
            super().close()
        except OSError:
            self.handleError(None)


@contextmanager
def log_to_file(path: Path, *, echo: bool = False) -> Iterator[None]:
    """Send the ``nipype``, ``smriflow``, warnings and ``concurrent.futures`` loggers to ``path``.

    With ``echo``, to stderr too. Their handlers are restored afterwards, so a run inside a Python session
    leaves logging as it was.
    """
    handler = _LogFile(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s"))
    handlers: list[logging.Handler] = [handler]
    if echo:
        terminal = logging.StreamHandler()
        terminal.setFormatter(handler.formatter)
        handlers.append(terminal)
    saved = []
    # concurrent.futures logs a traceback when a killed MultiProc worker breaks the pool (Ctrl-C, SIGTERM)
    for name in ("nipype", "smriflow", "py.warnings", "concurrent.futures"):
        named = logging.getLogger(name)
        saved.append((named, named.handlers[:], named.propagate, named.level))
        named.handlers, named.propagate = list(handlers), False
    logging.getLogger("smriflow").setLevel(logging.INFO)
    logging.captureWarnings(True)
    try:
        yield
    finally:
        logging.captureWarnings(False)
        for named, old_handlers, propagate, level in saved:
            named.handlers, named.propagate = old_handlers, propagate
            named.setLevel(level)
        handler.close()


def _execution_nodes(top: Any) -> dict[str, str]:
    """Full names of the nodes nipype will execute (identity nodes removed), with their subject."""
    from nipype.pipeline.engine.utils import generate_expanded_graph

    graph = generate_expanded_graph(deepcopy(top._create_flat_graph()))
    return dict(sorted((node.fullname, subject_of(node.fullname) or "") for node in graph.nodes()))


def subject_of(node_name: str) -> str | None:
    """The subject label in a node's full name (``smriflow_wf.sub_01_wf.…`` → ``01``; ``…group_wf…`` →
    ``group``)."""
    match = _SUBJECT_RE.search(node_name)
    if not match:
        return None
    return match.group(1) or GROUP_LABEL


def _run_record(prepared: PreparedRun) -> dict[str, Any]:
    return {
        "smriflow": __version__,
        "workflow": str(prepared.loaded.path.resolve()),
        "args": prepared.args,
        "bids_dir": str(prepared.bids_dir) if prepared.bids_dir else None,
        "output_dir": str(prepared.output_dir),
        "work_dir": str(prepared.work_dir),
        "longitudinal": prepared.longitudinal,
        "subjects": {
            s.label: s.problem or {str(k): v for k, v in s.units.items()} for s in prepared.subjects
        },
        "execution_config": config_record(prepared.config),
    }
