"""Run a nipype workflow with an execution config: the only place in smriflow that calls ``Workflow.run``.

:func:`run_workflow` applies, for one run and without touching nipype's global config:

- the nipype execution options (``wf.config["execution"]``: poll interval, crash folder and format, ...);
- the thread policy: ``ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS``, ``OMP_NUM_THREADS``, ... are set while the
  plugin starts its workers, so forked MultiProc workers and SLURM jobs inherit them (ITK reads its variable
  once per process); SLURM job scripts also ``export`` them, in case the site does not pass the environment;
- node resources to SLURM: each node's ``n_procs``/``mem_gb`` become ``--cpus-per-task``/``--mem`` through
  ``node.plugin_args`` (nipype's SLURM plugins ignore them otherwise);

and reports what happened as a :class:`RunReport` (nodes done, failed nodes with their crash files) instead
of nipype's bare ``RuntimeError``. The SLURM plugins are smriflow's robust subclasses of nipype's
(:mod:`smriflow.engine.slurm_plugins`). With SLURMGraph, whose jobs report nothing to the submitting
process, it waits for exactly the jobs it submitted (:func:`smriflow.engine.slurm.wait_until_done`), then
reads results, crash files and how each job ended: a job killed by ``scancel`` or by its time limit gets a
crash file saying so, and the nodes after a failure are listed as not run.
"""

from __future__ import annotations

import gc
import logging
import math
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from copy import deepcopy
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from smriflow.config.execution import (
    ExecConfig,
    MultiProcArgs,
    MultiProcConfig,
    SLURMArrayConfig,
    SLURMConfig,
    SLURMGraphConfig,
    node_local_root,
)
from smriflow.engine.slurm import JobState, describe_end, ensure_login_name, wait_until_done
from smriflow.utils.threads import THREAD_VARIABLES, thread_env

if TYPE_CHECKING:
    from nipype.pipeline.engine import Node, Workflow

__all__ = [
    "FailedNode",
    "RunReport",
    "job_template",
    "node_sbatch_args",
    "read_crash_file",
    "run_workflow",
    "write_job_crash",
]

logger = logging.getLogger("smriflow.engine")

StatusCallback = Callable[["Node", str], None]


@dataclass(frozen=True)
class FailedNode:
    """A node that raised an error."""

    name: str
    """Full hierarchical name, e.g. ``anat_preproc_wf.tissue_seg_wf.atropos``."""
    crash_file: Path | None
    """nipype's crash file (traceback and inputs), when one was written."""
    output_dir: Path | None = None
    """The node's working directory."""

    def __str__(self) -> str:
        crash = f"crash file: {self.crash_file}" if self.crash_file else "no crash file"
        return f"{self.name} ({crash})"


@dataclass
class RunReport:
    """What a run did.

    ``nodes_done`` counts nodes that finished (cached ones included; a MapNode counts once per element and
    once for collecting them). ``not_run`` lists nodes that never ran because a node they need failed: it is
    known for Linear and SLURMGraph only, as MultiProc and SLURM do not report the nodes they skip.
    """

    workflow: str
    plugin: str
    work_dir: Path
    crashdump_dir: Path
    omp_nthreads: int
    nodes_done: int = 0
    failed: list[FailedNode] = field(default_factory=list)
    not_run: list[str] = field(default_factory=list)
    wall_time: float = 0.0
    waited: bool = True
    """``False`` when SLURMGraph returned right after submission (``wait: false``): nothing is known yet."""
    error: BaseException | None = None
    """nipype's exception after node failures (for ``--debug``); the failures themselves are in ``failed``."""

    @property
    def ok(self) -> bool:
        """Whether every node ran and none failed (``False`` while SLURMGraph jobs are not waited for)."""
        return self.waited and not self.failed and not self.not_run

    def summary(self) -> str:
        """A few lines for the terminal and the log."""
        if not self.waited:
            head = f"{self.workflow}: submitted to SLURM (not waited for)"
        else:
            head = f"{self.workflow}: {self.nodes_done} node(s) done, {len(self.failed)} failed"
            if self.not_run:
                head += f", {len(self.not_run)} not run"
        lines = [f"{head} [{self.plugin}, {self.wall_time:.1f} s, work dir {self.work_dir}]"]
        lines += [f"  failed: {node}" for node in self.failed]
        lines += [f"  not run: {name}" for name in self.not_run]
        return "\n".join(lines)


# -- the run ----------------------------------------------------------------------------------------------
def run_workflow(
    wf: Workflow,
    config: ExecConfig,
    *,
    omp_nthreads: int | None = None,
    status_callback: StatusCallback | None = None,
    crashdump_dir: str | Path | None = None,
) -> RunReport:
    """Run ``wf`` with the plugin and settings of ``config``.

    Parameters
    ----------
    wf : nipype Workflow
        The workflow; its config, ``base_dir`` and nodes' ``plugin_args`` are restored after the run.
    config : ExecConfig
        From :func:`smriflow.config.execution.load_exec_config` (and ``override``).
    omp_nthreads : int, optional
        Threads per node for the thread policy (default: ``config.omp_nthreads``). Give the same value the
        workflow was built with.
    status_callback : callable, optional
        Called as ``status_callback(node, status)``, status ``"start"``, ``"end"`` or ``"exception"``
        (MultiProc, Linear and SLURM; SLURMGraph has no live status). Errors in it are logged, not raised.
    crashdump_dir : str or Path, optional
        Folder for crash files (default: ``config.nipype.crashdump_dir``, else ``<work_dir>/crash``).

    Returns
    -------
    RunReport
        Node failures are reported there, not raised.

    Raises
    ------
    ValueError
        When the settings cannot work: ``omp_nthreads`` < 1 or above MultiProc's ``n_procs``, a node needing
        more than MultiProc may use, or a SLURM work directory under ``/tmp`` without ``single_node``.
    """
    threads = config.omp_nthreads if omp_nthreads is None else int(omp_nthreads)
    if threads < 1:
        raise ValueError(f"'omp_nthreads' must be at least 1. {omp_nthreads!r} was provided.")
    work_dir = Path(os.path.abspath(config.work_dir or wf.base_dir or Path.cwd() / "work"))
    _check_settings(wf, config, threads, work_dir)
    crash_dir = Path(os.path.abspath(crashdump_dir or config.nipype.crashdump_dir or work_dir / "crash"))
    crash_dir.mkdir(parents=True, exist_ok=True)
    before = set(crash_dir.iterdir())
    # nipype reads $LOGNAME: KeyError when unset (CI machines, containers).
    ensure_login_name()

    report = RunReport(wf.name, config.plugin, work_dir, crash_dir, threads)
    tracker = _StatusTracker(status_callback, linear=config.plugin == "Linear")
    saved_config, saved_base_dir = deepcopy(wf.config), wf.base_dir
    saved_plugin_args: list[tuple[Node, dict]] = []
    execgraph = None
    start = time.monotonic()
    try:
        wf.base_dir = str(work_dir)
        wf.config.setdefault("execution", {}).update(_execution_options(config, crash_dir))
        if isinstance(config, SLURMConfig | SLURMGraphConfig) and config.resources_to_sbatch:
            saved_plugin_args = _apply_sbatch_resources(wf, min_mem_gb=config.plugin_args.min_mem_gb)
        with thread_env(threads), frozen_heap():  # workers and jobs start in here and inherit both
            runner = _make_plugin(config, threads, tracker)
            try:
                execgraph = wf.run(plugin=runner)
            except Exception as exc:
                if not tracker.failed:
                    raise  # not a node failure: a bug or a broken setup, which must not pass as a report
                report.error = exc
            except BaseException:  # Ctrl-C, SIGTERM: kill the workers instead of waiting for their nodes
                from smriflow.engine.interrupt import stop_workers

                stop_workers()
                raise
            finally:
                pool = getattr(runner, "pool", None)  # MultiProc, also after stop_on_first_crash
                if pool is not None:
                    pool.shutdown(wait=True, cancel_futures=True)
        states: dict[str, JobState] = {}
        if isinstance(config, SLURMGraphConfig):
            if config.plugin_args.wait and runner.submitted:
                states = wait_until_done(
                    [job["job_id"] for job in runner.submitted],
                    poll_seconds=config.plugin_args.poll_sleep_duration,
                )
            elif not config.plugin_args.wait:
                report.waited = False
    finally:
        wf.config, wf.base_dir = saved_config, saved_base_dir
        for node, plugin_args in saved_plugin_args:
            node.plugin_args = plugin_args
    crashes = {}
    for path in sorted(set(crash_dir.iterdir()) - before):
        name, output_dir = read_crash_file(path)
        # Another run may share the crash folder: keep only crash files of nodes in this workflow's folder.
        if output_dir is None or output_dir.is_relative_to(work_dir / wf.name):
            crashes[output_dir or path] = FailedNode(name, path, output_dir)
    if isinstance(config, SLURMGraphConfig):
        if report.waited and execgraph is not None:
            _classify_graph_nodes(execgraph, crashes, report, runner, states, crash_dir)
    else:
        report.nodes_done = len(tracker.done.keys() - tracker.failed.keys())
        report.not_run = sorted(tracker.skipped.values())
        for key, name in tracker.failed.items():
            output_dir = key if isinstance(key, Path) else None
            report.failed.append(crashes.pop(key, None) or FailedNode(name, None, output_dir))
        report.failed += crashes.values()  # crash files not matched to a reported failure
    report.wall_time = time.monotonic() - start
    logger.info("%s", report.summary())
    return report


@contextmanager
def frozen_heap() -> Iterator[None]:
    """Keep the objects that exist now (the workflow, its graph, the imports) out of garbage collection.

    nipype's MultiProc calls ``gc.collect()`` on every scheduling round that has a free processor, ten times
    a second while a core waits for a node's inputs. Over the whole heap of the main process each call took
    0.1 s: 62 s of CPU in a 115 s run of ``anat_preproc`` on 2 cores, taken from the nodes. Frozen objects
    (:func:`gc.freeze`) are not scanned, so the calls cost next to nothing; what the run creates is still
    collected, and the objects are unfrozen afterwards. Forked workers also share the frozen pages longer
    (a collection no longer writes to them).
    """
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _check_settings(wf: Workflow, config: ExecConfig, threads: int, work_dir: Path) -> None:
    if isinstance(config, SLURMArrayConfig):
        raise ValueError(
            "The SLURMArray config runs whole subjects as array tasks of `smriflow run`, not a workflow: "
            "use it with `smriflow run --exec-config` (or smriflow.engine.slurm_array.submit_array)."
        )
    if isinstance(config, SLURMConfig | SLURMGraphConfig) and not config.single_node:
        root = node_local_root(work_dir)
        if root is not None:
            raise ValueError(
                f"The work directory '{work_dir}' is under {root}, which is private to each machine: SLURM "
                "jobs on other compute nodes would not find it. Set work_dir (--work-dir) to a shared "
                "filesystem, or set 'single_node: true' if every job runs on this machine."
            )
    if isinstance(config, MultiProcConfig):
        args = config.plugin_args
        if threads > args.n_procs:
            raise ValueError(
                f"'omp_nthreads' ({threads}) must not exceed MultiProc's n_procs ({args.n_procs}). "
                "Lower omp_nthreads or raise n_procs (--nprocs)."
            )
        if args.raise_insufficient:
            _check_node_resources(wf, args)


def _check_node_resources(wf: Workflow, args: MultiProcArgs) -> None:
    """Name the nodes MultiProc would refuse (nipype says only 'Insufficient resources available for job')."""
    too_big = [
        f"{node.fullname} (n_procs={node.n_procs}, mem_gb={node.mem_gb:g})"
        for node in sorted(wf._get_all_nodes(), key=lambda node: node.fullname)
        if node.n_procs > args.n_procs or node.mem_gb > args.memory_gb
    ]
    if too_big:
        raise ValueError(
            f"These nodes need more than MultiProc may use (n_procs={args.n_procs}, "
            f"memory_gb={args.memory_gb:g}): {', '.join(too_big)}. Raise n_procs/memory_gb (--nprocs, "
            "--mem-gb), or set 'raise_insufficient: false' to run them with what there is."
        )


def _execution_options(config: ExecConfig, crash_dir: Path) -> dict[str, str]:
    options = config.nipype.execution_options()
    options["crashdump_dir"] = str(crash_dir)
    poll = getattr(config.plugin_args, "poll_sleep_duration", None)
    if poll is not None and not isinstance(config, SLURMGraphConfig):  # SLURMGraph's is our own wait
        options["poll_sleep_duration"] = str(poll)
    return options


def _make_plugin(config: ExecConfig, threads: int, tracker: _StatusTracker) -> Any:
    from nipype.pipeline.plugins import LinearPlugin

    from smriflow.engine.scheduling import CriticalPathMultiProc
    from smriflow.engine.slurm_plugins import SLURMGraphSubmitter, SLURMNodePlugin

    plugin_args = config.plugin_args.nipype_args()
    if not isinstance(config, SLURMGraphConfig):  # graph plugins only log a warning for a callback
        plugin_args["status_callback"] = tracker
    if isinstance(config, SLURMConfig | SLURMGraphConfig):
        plugin_args["template"] = job_template(config.plugin_args.template_text(), threads)
    plugin_class = {
        "MultiProc": CriticalPathMultiProc,
        "Linear": LinearPlugin,
        "SLURM": SLURMNodePlugin,
        "SLURMGraph": SLURMGraphSubmitter,
    }[config.plugin]
    return plugin_class(plugin_args=plugin_args)


class _StatusTracker:
    """nipype's status_callback: records finished and failed nodes, then calls the user's callback.

    nipype's Linear plugin also sends "end" for the nodes it skips after a failure (its ``continue`` runs
    the ``finally``), never preceded by "start": with ``linear=True`` those are recorded as not run, and not
    passed on. (MultiProc sends "end" alone for cached nodes and nodes run without submitting.)
    """

    def __init__(self, callback: StatusCallback | None, *, linear: bool = False):
        self.callback = callback
        self.linear = linear
        self.started: set[Path | str] = set()
        self.done: dict[Path | str, str] = {}
        self.failed: dict[Path | str, str] = {}
        self.skipped: dict[Path | str, str] = {}

    def __call__(self, node: Node, status: str) -> None:
        try:
            key: Path | str = Path(node.output_dir())
        except Exception:  # the key only has to be unique; output_dir() needs base_dir
            key = node.fullname
        if status == "start":
            self.started.add(key)
        elif status == "end" and self.linear and key not in self.started:
            self.skipped[key] = node.fullname
            return
        elif status == "end":
            self.done[key] = node.fullname
        elif status == "exception":
            self.failed[key] = node.fullname
        if self.callback is not None:
            try:
                self.callback(node, status)
            except Exception:
                logger.exception("status_callback failed for node %s (%s)", node.fullname, status)

    def __getstate__(self) -> dict[str, Any]:
        # nipype copies plugin_args into MapNodes, which are pickled for workers and jobs: send an inert copy.
        return {
            "callback": None,
            "linear": self.linear,
            "started": set(),
            "done": {},
            "failed": {},
            "skipped": {},
        }


# -- SLURM ------------------------------------------------------------------------------------------------
def node_sbatch_args(n_procs: int, mem_gb: float, *, min_mem_gb: float = 1.0) -> str:
    """The sbatch options that request one node's resources, e.g. ``--cpus-per-task=2 --mem=3G``.

    Memory is rounded up to whole MB (written in GB when whole) and raised to ``min_mem_gb``.
    """
    megabytes = math.ceil(max(mem_gb, min_mem_gb) * 1024)
    memory = f"{megabytes // 1024}G" if megabytes % 1024 == 0 else f"{megabytes}M"
    return f"--cpus-per-task={int(n_procs)} --mem={memory}"


_CPU_OPTION = re.compile(r"(?:^|\s)(?:--cpus-per-task\b|-c\s*\d)")
_MEM_OPTION = re.compile(r"(?:^|\s)--mem(?:-per-cpu|-per-gpu)?\b")


def _apply_sbatch_resources(wf: Workflow, *, min_mem_gb: float) -> list[tuple[Node, dict]]:
    """Add each node's resources to its ``plugin_args``; return the previous values, to restore them.

    nipype appends a node's ``sbatch_args`` to the plugin's unless ``overwrite`` is true (SLURM with a
    space, SLURMGraph without one, hence the leading space). Options already in the node's own
    ``sbatch_args`` are kept; later options win in sbatch, so these override the plugin-wide ones.
    """
    saved = []
    for node in wf._get_all_nodes():
        previous = node.plugin_args if isinstance(node.plugin_args, dict) else {}
        own = str(previous.get("sbatch_args", "")).strip()
        cpus, memory = node_sbatch_args(node.n_procs, node.mem_gb, min_mem_gb=min_mem_gb).split()
        wanted = [
            opt for opt, pattern in ((cpus, _CPU_OPTION), (memory, _MEM_OPTION)) if not pattern.search(own)
        ]
        saved.append((node, previous))
        node.plugin_args = {
            **previous,
            "sbatch_args": " " + " ".join([own, *wanted]).strip(),
            "overwrite": bool(previous.get("overwrite", False)),
        }
    return saved


def job_template(header: str, threads: int) -> str:
    """Insert ``export`` lines of the thread policy after the header's shebang and ``#SBATCH`` lines."""
    lines = header.rstrip("\n").splitlines() or ["#!/bin/bash"]
    at = 0
    while at < len(lines) and (not lines[at].strip() or lines[at].lstrip().startswith("#")):
        at += 1
    exports = [f"export {var}={threads}" for var in THREAD_VARIABLES]
    return "\n".join([*lines[:at], "# smriflow thread policy (omp_nthreads)", *exports, *lines[at:]]) + "\n"


def _classify_graph_nodes(
    execgraph: Any,
    crashes: dict[Path, FailedNode],
    report: RunReport,
    runner: Any,
    states: dict[str, JobState],
    crash_dir: Path,
) -> None:
    """After the SLURMGraph jobs ended: each node is done (cache), failed (crash file, or its job was killed
    or refused) or not run (a node it needs did not finish)."""
    import networkx as nx

    jobs = {Path(job["output_dir"]): job for job in runner.submitted}
    unfinished: set[Any] = set()
    for node in nx.topological_sort(execgraph):
        output_dir = Path(node.output_dir())
        if output_dir in crashes:
            report.failed.append(crashes.pop(output_dir))
            unfinished.add(node)
            continue
        try:
            cached, updated = node.is_cached()
        except Exception:  # inputs from a failed node cannot be read: this node did not run
            cached = updated = False
        if cached and updated:
            report.nodes_done += 1
            continue
        unfinished.add(node)
        if any(pred in unfinished for pred in execgraph.predecessors(node)):
            report.not_run.append(node.fullname)
            continue
        # Nothing it needs failed, yet it did not finish: its job was refused, killed or lost.
        if str(output_dir) in runner.refused:
            message = runner.refused[str(output_dir)]
        elif output_dir in jobs:
            job = jobs[output_dir]
            state = states.get(job["job_id"])
            where = f" (job state {state.state})" if state is not None else ""
            message = (
                f"SLURM job {job['job_id']} of node {node.fullname} {describe_end(state)}{where} before the "
                f"node finished. Job log: {runner.batch_dir}/batchscript_*{node._id}*.sh.o. Rerun the same "
                "command to resume."
            )
        else:
            message = f"Node {node.fullname} was not submitted and has no complete cached result."
        crash = write_job_crash(crash_dir, node.fullname, output_dir, message)
        report.failed.append(FailedNode(node.fullname, crash, output_dir))
    report.failed += crashes.values()


def write_job_crash(crash_dir: Path, name: str, output_dir: Path, message: str) -> Path:
    """Write a text crash file, as nipype's, for a node whose SLURM job ended without one."""
    crash_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = (
        crash_dir / f"crash-{stamp}-slurm-{name.rsplit('.', 1)[-1]}-{os.getpid()}-{time.monotonic_ns()}.txt"
    )
    path.write_text(f"Node: {name}\nWorking directory: {output_dir}\n\n{message}\n", encoding="utf-8")
    return path


# -- crash files ------------------------------------------------------------------------------------------
def read_crash_file(path: str | Path) -> tuple[str, Path | None]:
    """The node name and working directory recorded in a nipype crash file (``.txt`` or ``.pklz``).

    nipype's ``crash2txt`` starts text files with ``Node: <fullname>`` and ``Working directory: <dir>``;
    ``.pklz`` files hold the node itself. Unreadable files give the file name and ``None``.
    """
    path = Path(path)
    try:
        if path.suffix == ".pklz":
            from nipype.utils.filemanip import loadpkl

            node = loadpkl(path)["node"]
            return node.fullname, Path(node.output_dir())
        with path.open(encoding="utf-8", errors="replace") as stream:
            head = [stream.readline() for _ in range(2)]
    except Exception:  # a truncated or foreign file: still list it
        return path.name, None
    name = head[0].removeprefix("Node:").strip() if head[0].startswith("Node:") else path.name
    prefix = "Working directory:"
    output_dir = Path(head[1][len(prefix) :].strip()) if head[1].startswith(prefix) else None
    return name, output_dir
