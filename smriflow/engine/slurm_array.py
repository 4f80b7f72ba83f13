"""One SLURM job per subject: an array job whose tasks each run ``smriflow run … --participant-label``.

This is what the ``slurm-array`` execution config (``plugin: SLURMArray``) does, and what experienced
users of fMRIPrep or MRIQC write by hand: each subject runs with a local executor (MultiProc on the job's
CPUs) inside one job, so the scheduler's delay and Python's start-up are paid once per subject instead of
once per node. ``smriflow run`` calls :func:`run_array`, which

1. writes the job script (:func:`plan_array`) into ``<work_dir>/slurm_array/``;
2. submits it with ``sbatch --array=0-<N-1>[%max_parallel]`` (retried when the controller is busy), or only
   prints the command with ``--dry-run``;
3. waits for the tasks (:func:`smriflow.engine.slurm.wait_until_done`) and reports each subject: done,
   failed with its failed nodes and crash files, or killed (``scancel``, time limit, memory) as such.

Every task shares the work directory, so rerunning the same command resumes each subject from its cached
nodes; a failing or cancelled task never touches the others.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smriflow.config.execution import LinearConfig, MultiProcConfig, SLURMArrayConfig, load_exec_config
from smriflow.engine.derivatives import RunSetupError
from smriflow.engine.plugins import FailedNode, node_sbatch_args, read_crash_file
from smriflow.engine.prepare import PreparedRun
from smriflow.engine.slurm import (
    JobState,
    SlurmError,
    describe_end,
    ensure_login_name,
    exit_codes,
    has_option,
    submit,
    wait_until_done,
)
from smriflow.engine.summary import TOP_NAME, RunSummary, SubjectResult, last_error_line, last_line
from smriflow.utils.threads import THREAD_VARIABLES

__all__ = ["ArrayPlan", "ArraySetupError", "plan_array", "run_array", "summarize_array"]

Printer = Callable[[str], None]
MAIN_PROCESS_GB = 1.0  # smriflow's own process in each job (pybids, the graph, nipype), beside the nodes


class ArraySetupError(RunSetupError, ValueError):
    """An array run that cannot be submitted (the CLI prints it as a usage error, exit code 2)."""


@dataclass
class ArrayPlan:
    """What will be submitted: the script, the sbatch command, and the subject of each task."""

    script: Path
    command: list[str]
    labels: list[str]
    cpus_per_task: int
    mem_gb: float
    log_pattern: str
    job_id: str | None = None
    submitted_at: float = field(default_factory=time.time)

    def log_of(self, index: int) -> str:
        """The log file of task ``index`` (known once submitted)."""
        return self.log_pattern.replace("%A", self.job_id or "<job>").replace("%a", str(index))


def _smriflow_command(config: SLURMArrayConfig) -> list[str]:
    if config.plugin_args.smriflow_command:
        return shlex.split(config.plugin_args.smriflow_command)
    script = Path(sys.executable).parent / "smriflow"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-c", "import sys; from smriflow.cli.main import main; sys.exit(main())"]


def _resources(prepared: PreparedRun, config: SLURMArrayConfig) -> tuple[int, float]:
    """CPUs and memory (GB) of each task: the config's, else from the largest node."""
    nodes = prepared.workflow._get_all_nodes() if prepared.workflow is not None else []
    biggest_cpus = max([node.n_procs for node in nodes] + [prepared.args.get("omp_nthreads", 1)])
    biggest_mem = max([node.mem_gb for node in nodes] + [0.0])
    args = config.plugin_args
    cpus = args.cpus_per_task or int(biggest_cpus)
    mem = args.mem_gb or max(args.min_mem_gb, math.ceil(biggest_mem + MAIN_PROCESS_GB))
    too_big = sorted(
        f"{node.fullname.split('.', 2)[-1]} (n_procs={node.n_procs}, mem_gb={node.mem_gb:g})"
        for node in nodes
        if node.n_procs > cpus or node.mem_gb > mem
    )
    if too_big:
        raise ArraySetupError(
            f"{config.source or 'execution config'}: plugin_args cpus_per_task={cpus}, mem_gb={mem:g} are "
            f"less than these nodes need: {', '.join(too_big[:5])}. Raise cpus_per_task/mem_gb."
        )
    return cpus, mem


def _split_template(text: str) -> tuple[list[str], list[str]]:
    """The template's shebang, comment and ``#SBATCH`` lines, and the rest (which precedes the command)."""
    lines = text.rstrip("\n").splitlines() or ["#!/bin/bash"]
    if not lines[0].startswith("#!"):
        lines.insert(0, "#!/bin/bash")
    at = 0
    while at < len(lines) and (not lines[at].strip() or lines[at].lstrip().startswith("#")):
        at += 1
    return lines[:at], lines[at:]


def plan_array(
    prepared: PreparedRun,
    workflow: str,
    set_values: Mapping[str, Any] | None = None,
) -> ArrayPlan:
    """Write the job script of an array run and return the plan (nothing is submitted).

    Parameters
    ----------
    prepared : PreparedRun
        From :func:`smriflow.engine.prepare.prepare_run` with a :class:`SLURMArrayConfig`.
    workflow : str
        The workflow as given on the command line (a packaged name, or a file: made absolute).
    set_values : mapping, optional
        The ``--set`` values (and ``seed``) of the command line, passed on to each task.

    Raises
    ------
    ArraySetupError
        When the config is not SLURMArray, the workflow is a group workflow, no subject can run, or the
        tasks' CPUs or memory are less than a node needs.
    """
    config = prepared.config
    if not isinstance(config, SLURMArrayConfig):
        raise ArraySetupError(f"plan_array needs a SLURMArray config; got {config.plugin}")
    if getattr(prepared.loaded.spec, "level", "participant") == "group":
        raise ArraySetupError(
            f"{prepared.loaded.spec.name} is a group workflow: it runs once, not per subject. Use the "
            "slurm or slurm-node config (or local) for it, not slurm-array."
        )
    labels = [subject.label for subject in prepared.subjects if subject.problem is None]
    if not labels:
        raise ArraySetupError("no subject can run, so there is nothing to submit")
    inner = load_exec_config(config.plugin_args.inner_config)
    cpus, mem = _resources(prepared, config)

    command = _smriflow_command(config) + ["run"]
    is_file = "/" in workflow or os.sep in workflow or workflow.endswith((".yml", ".yaml"))
    command += [str(prepared.loaded.path.resolve()) if is_file else workflow]
    command += ["--bids-dir", str(prepared.bids_dir), "--output-dir", str(prepared.output_dir)]
    command += ["--work-dir", str(prepared.work_dir), "--exec-config", config.plugin_args.inner_config]
    command += ["--omp-nthreads", str(prepared.args.get("omp_nthreads", config.omp_nthreads))]
    if prepared.longitudinal:
        command.append("--longitudinal")
    for name, value in (set_values or {}).items():
        if name != "omp_nthreads":
            command += ["--set", f"{name}={json.dumps(value)}"]
    if isinstance(inner, MultiProcConfig):
        command += ["--nprocs", "__CPUS__", "--mem-gb", f"{mem:g}"]
    elif not isinstance(inner, LinearConfig):  # pragma: no cover - the config validation refuses it
        raise ArraySetupError(f"inner_config {config.plugin_args.inner_config!r} is not a local config")
    text = shlex.join(command).replace("__CPUS__", f'"${{SLURM_CPUS_PER_TASK:-{cpus}}}"')

    head, body = _split_template(config.plugin_args.template_text())
    threads = prepared.args.get("omp_nthreads", config.omp_nthreads)
    lines = [
        *head,
        "# smriflow array job: task i runs subject labels[i] with a local executor",
        *(f"export {var}={threads}" for var in THREAD_VARIABLES),
        f"labels=({' '.join(shlex.quote(label) for label in labels)})",
        "label=${labels[$SLURM_ARRAY_TASK_ID]}",
        'echo "smriflow: sub-$label, array task $SLURM_ARRAY_JOB_ID"_"$SLURM_ARRAY_TASK_ID on $(hostname)"',
        f"cd {shlex.quote(str(Path.cwd()))}",
        *body,
        f'{text} --participant-label "$label"',
    ]
    folder = prepared.work_dir / "slurm_array"
    folder.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    script = folder / f"{prepared.loaded.spec.name}-{stamp}-{os.getpid()}.sh"
    script.write_text("\n".join(lines) + "\n", encoding="utf-8")
    script.chmod(0o755)

    options = config.plugin_args.sbatch_options()
    array = f"--array=0-{len(labels) - 1}"
    if config.plugin_args.max_parallel:
        array += f"%{config.plugin_args.max_parallel}"
    sbatch = ["sbatch", "--parsable", array, f"--job-name=smriflow_{prepared.loaded.spec.name}"]
    if config.resources_to_sbatch:
        sbatch += node_sbatch_args(cpus, mem, min_mem_gb=config.plugin_args.min_mem_gb).split()
    (prepared.output_dir / "logs").mkdir(parents=True, exist_ok=True)  # sbatch fails the job without it
    log_pattern = str(prepared.output_dir / "logs" / "slurm-%A_%a.out")
    if not has_option(options, "o", "output"):
        sbatch.append(f"--output={log_pattern}")
    else:
        log_pattern = "(the --output of sbatch_args)"
    sbatch += [*options, str(script)]
    return ArrayPlan(script, sbatch, labels, cpus, mem, log_pattern)


def run_array(
    prepared: PreparedRun,
    workflow: str,
    set_values: Mapping[str, Any] | None = None,
    *,
    dry_run: bool = False,
    echo: Printer = print,
) -> RunSummary | None:
    """Submit one array task per subject and wait for them; ``None`` with ``dry_run`` or ``wait: false``.

    Parameters
    ----------
    prepared, workflow, set_values
        As for :func:`plan_array`.
    dry_run : bool
        Write the script and print the sbatch command, but submit nothing. With another config than
        SLURMArray, only say that everything checked out (``smriflow run --dry-run``).
    echo : callable
        Where progress lines go (the CLI passes its console's print).

    Raises
    ------
    ArraySetupError
        As :func:`plan_array`, and when sbatch refuses the array (e.g. an unknown partition).
    smriflow.engine.slurm.SlurmError
        When squeue keeps failing while waiting.
    """
    ensure_login_name()
    if dry_run and not isinstance(prepared.config, SLURMArrayConfig):
        echo(
            f"dry run: the workflow, its arguments, the dataset and the {prepared.config.plugin} config "
            "check out; nothing was run"
        )
        return None
    plan = plan_array(prepared, workflow, set_values)
    shown = shlex.join(plan.command[:1] + plan.command[2:])  # without --parsable, to be pasted
    if dry_run:
        echo(f"dry run: would submit {len(plan.labels)} task(s), one per subject, with:\n{shown}")
        echo(f"job script: {plan.script}")
        for index, label in enumerate(plan.labels):
            echo(f"  task {index}: sub-{label}")
        return None
    plan.submitted_at = time.time()
    try:
        plan.job_id = submit(plan.script, plan.command[2:-1])
    except SlurmError as exc:
        raise ArraySetupError(f"{prepared.config.source or 'execution config'}: {exc}") from exc
    echo(f"submitted array job {plan.job_id}: {len(plan.labels)} task(s), one per subject ({shown})")
    echo(f"task logs: {plan.log_of(0).replace('_0.out', '_<task>.out')}")
    if not prepared.config.plugin_args.wait:
        echo("not waiting (wait: false); follow the tasks with: squeue -r -j " + plan.job_id)
        return None

    def progress(states: dict[str, JobState]) -> None:
        counts: dict[str, int] = {}
        for state in states.values():
            counts[state.state.lower()] = counts.get(state.state.lower(), 0) + 1
        echo(f"array job {plan.job_id}: " + ", ".join(f"{n} {state}" for state, n in sorted(counts.items())))

    try:
        states = wait_until_done(
            [plan.job_id], poll_seconds=prepared.config.plugin_args.poll_sleep_duration, on_change=progress
        )
    except KeyboardInterrupt:
        echo(
            f"stopped waiting: array job {plan.job_id} keeps running (cancel it with: scancel {plan.job_id})"
        )
        raise
    return summarize_array(prepared, plan, states)


def summarize_array(prepared: PreparedRun, plan: ArrayPlan, states: Mapping[str, JobState]) -> RunSummary:
    """One :class:`SubjectResult` per subject, from the tasks' final states and the crash files."""
    codes: dict[str, int] = {}
    if any(state.state not in ("COMPLETED",) for state in states.values()) and plan.job_id:
        try:
            codes = exit_codes(plan.job_id)
        except Exception:  # only refines the messages
            codes = {}
    inner = load_exec_config(prepared.config.plugin_args.inner_config)  # its crash folder is the tasks'
    crash_dir = Path(inner.nipype.crashdump_dir or prepared.work_dir / "crash")
    crashes = _new_crash_files(crash_dir, plan.submitted_at)
    results = [
        _subject_result(prepared, plan, index, label, states, codes, crashes)
        for index, label in enumerate(plan.labels)
    ]
    skipped = [
        SubjectResult(subject.label, "failed", reason=subject.problem)
        for subject in prepared.subjects
        if subject.problem is not None
    ]
    order = {subject.label: i for i, subject in enumerate(prepared.subjects)}
    subjects = sorted(results + skipped, key=lambda result: order.get(result.label, 0))
    log = Path(plan.log_of(0).replace("_0.out", "_*.out"))
    return RunSummary(prepared.loaded.spec.name, prepared.output_dir, prepared.work_dir, log, subjects)


def _new_crash_files(crash_dir: Path, since: float) -> list[FailedNode]:
    found = []
    if crash_dir.is_dir():
        for path in sorted(crash_dir.iterdir()):
            if path.name.startswith("crash-") and path.stat().st_mtime >= since - 1:
                name, output_dir = read_crash_file(path)
                found.append(FailedNode(name, path, output_dir))
    return found


def _subject_result(
    prepared: PreparedRun,
    plan: ArrayPlan,
    index: int,
    label: str,
    states: Mapping[str, JobState],
    codes: Mapping[str, int],
    crashes: list[FailedNode],
) -> SubjectResult:
    task = f"{plan.job_id}_{index}"
    mine = [name for name, subject in prepared.nodes.items() if subject == label]
    state = states.get(task)
    if state is not None and state.exit_code is None and task in codes:
        state = JobState(state.job_id, state.state, state.reason, codes[task])
    if state is not None and state.state == "COMPLETED":
        return SubjectResult(label, "done", nodes_done=len(mine), nodes_total=len(mine))
    folder = Path(prepared.work_dir) / TOP_NAME / f"sub_{label}_wf"
    failed = [
        node
        for node in crashes
        if node.output_dir is not None
        and (node.output_dir == folder or node.output_dir.is_relative_to(folder))
    ]
    result = SubjectResult(label, "failed", nodes_total=len(mine), failed=failed)
    for node in failed:
        result.errors[node.name] = last_error_line(node.crash_file)
    how = describe_end(state)
    if state is not None and state.state == "FAILED" and state.exit_code == 1 and failed:
        how = "failed: smriflow reported failed nodes"
    result.reason = f"SLURM task {task} {how}; log: {plan.log_of(index)}"
    if not failed:
        tail = last_line(plan.log_of(index), limit=200)
        if tail and state is not None and state.state == "FAILED":
            result.reason += f" (last line: {tail})"
    return result
