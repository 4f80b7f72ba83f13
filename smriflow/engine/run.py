"""Run a prepared workflow on a BIDS dataset and write BIDS derivatives: the logic behind ``smriflow run``.

:func:`execute_run` runs the graph that :func:`smriflow.engine.prepare.prepare_run` built: it takes the
subjects' locks, writes ``dataset_description.json``, sends nipype's logging to ``OUTPUT/logs/``
(:func:`smriflow.engine.logfile.log_to_file`) and runs the graph with
:func:`smriflow.engine.plugins.run_workflow`, then sums up per subject (:class:`RunSummary`). A failing
subject stops nothing but itself (when the config keeps ``stop_on_first_crash: false``), and leaves no
derivative behind. :func:`run_bids` does both steps; the CLI calls the two to show progress.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from smriflow._version import __version__
from smriflow.bids.publish import OutsideOutputError, check_inside
from smriflow.engine.derivatives import RunSetupError, config_record, write_dataset_description, write_json
from smriflow.engine.logfile import log_to_file
from smriflow.engine.plugins import RunReport, run_workflow
from smriflow.engine.prepare import PreparedRun, SubjectPlan, combined_inputs, prepare_run, taken_inputs
from smriflow.engine.summary import TOP_NAME, RunSummary, SubjectResult, last_error_line, subject_of

__all__ = ["execute_run", "run_bids"]

logger = logging.getLogger("smriflow.engine")

StatusCallback = Callable[[Any, str], None]


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
