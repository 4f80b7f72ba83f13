"""nipype's two SLURM plugins, made robust: what smriflow's ``slurm`` and ``slurm-node`` configs run.

:class:`SLURMNodePlugin` (nipype's ``SLURM``: one job per node, submitted as nodes become ready):

- one ``squeue`` call per scheduling round for all running jobs (nipype runs one per job), with transient
  failures retried with back-off instead of aborting the run;
- ``sbatch`` retried with back-off; a job that still cannot be submitted fails its node (with a crash file
  saying why) instead of stopping the whole run;
- a job that ended without results (``scancel``, time limit, out of memory, a dead node) fails its node at
  once, with a crash file that says how the job ended, instead of waiting ``job_finished_timeout`` for a
  result file that will never come and reporting "results file does not exist";
- job names without ``$LOGNAME``; ``-o``/``-e`` recognised as options, not as text inside other options.

:class:`SLURMGraphSubmitter` (nipype's ``SLURMGraph``: the whole graph at once, chained by
``--dependency=afterok``) submits from Python instead of a generated shell script that ignores sbatch
errors: each ``sbatch`` is retried with back-off, the job ids are kept (:attr:`submitted`, and
``batch/jobs.json``) so that :func:`smriflow.engine.plugins.run_workflow` can wait for exactly these jobs and
read how each ended.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import sys
import time
from glob import glob
from pathlib import Path
from typing import Any

from nipype.pipeline.plugins import SLURMGraphPlugin, SLURMPlugin
from nipype.pipeline.plugins.slurmgraph import node_completed_status

from smriflow.engine.slurm import (
    JobState,
    SlurmError,
    describe_end,
    has_option,
    job_states,
    login_name,
    submit,
)

__all__ = ["SLURMGraphSubmitter", "SLURMNodePlugin", "SubmittedJob", "log_options"]

logger = logging.getLogger("smriflow.engine")


def log_options(args: list[str], log_file: str) -> list[str]:
    """``-o``/``-e`` options sending a job's output to ``log_file``, unless ``args`` already choose."""
    extra = []
    if not has_option(args, "o", "output"):
        extra += ["-o", log_file]
    if not has_option(args, "e", "error"):
        extra += ["-e", log_file]
    return extra


class SLURMNodePlugin(SLURMPlugin):
    """nipype's SLURM plugin with batched, retried queue checks and precise reports of killed jobs.

    Extra ``plugin_args``: ``sbatch_tries`` (attempts per submission, default ``max_tries + 1``) and
    ``squeue_errors`` (scheduling rounds in a row with a failing ``squeue`` before giving up, default 30).
    """

    def __init__(self, **kwargs: Any):
        plugin_args = dict(kwargs.get("plugin_args") or {})
        self._sbatch_tries = int(plugin_args.pop("sbatch_tries", plugin_args.get("max_tries", 2) + 1))
        self._squeue_errors_allowed = int(plugin_args.pop("squeue_errors", 30))
        kwargs["plugin_args"] = plugin_args
        super().__init__(**kwargs)
        self._states: dict[str, JobState] = {}
        self._checked = -1.0
        self._squeue_errors = 0
        self._names: dict[int, str] = {}
        self._logs: dict[int, str] = {}
        self._refused: dict[int, str] = {}
        self._next_refused = -1

    # -- the queue ---------------------------------------------------------------------------------------
    def _refresh(self) -> None:
        ids = [str(task) for task in self._pending if task > 0]
        try:
            self._states = job_states(ids)
        except SlurmError as exc:
            self._squeue_errors += 1
            if self._squeue_errors >= self._squeue_errors_allowed:
                raise
            logger.warning("%s; treating the jobs as still running", exc)
            return
        self._squeue_errors = 0
        self._checked = time.monotonic()

    def _is_pending(self, taskid: int) -> bool:
        if taskid < 0:  # a node whose job could not be submitted
            return False
        # nipype asks once per job and scheduling round: one squeue for all of them, at most once a second.
        if time.monotonic() - self._checked > 1.0 or str(taskid) not in self._states:
            self._refresh()
        state = self._states.get(str(taskid))
        if state is None:
            return self._squeue_errors > 0  # no answer: assume running; gone from the queue: ended
        return state.active

    def _get_result(self, taskid: int) -> dict[str, Any] | None:
        if taskid in self._refused:
            return _failure(self._refused[taskid])
        if self._is_pending(taskid):
            return None
        state = self._states.get(str(taskid))
        node_dir = self._pending[taskid]
        has_result = bool(glob(os.path.join(node_dir, "result_*.pklz")))
        if state is not None and state.state != "COMPLETED" and not has_result:
            log = self._logs.get(taskid, "")
            message = (
                f"SLURM job {taskid} of node {self._names.get(taskid, node_dir)} {describe_end(state)} "
                f"before the node finished (job state {state.state}"
                + (f", reason {state.reason}" if state.reason and state.reason != "None" else "")
                + ")."
                + (f" Job log: {log}." if log else "")
                + " Rerun the same command to resume."
            )
            return _failure(message)
        return super()._get_result(taskid)

    def _report_crash(self, node: Any, result: dict[str, Any] | None = None) -> str:
        crashfile = super()._report_crash(node, result)
        # nipype renamed the job's result file (crashstore.pklz) before writing the crash file, then notes
        # that it could not find it: drop the note, so that the error stays the crash file's last line.
        path = Path(crashfile)
        if path.suffix == ".txt" and path.is_file():
            text = path.read_text(encoding="utf-8", errors="replace")
            cleaned = _MISSING_RESULT_NOTE.sub("\n", text)
            if cleaned != text:
                path.write_text(cleaned, encoding="utf-8")
        return crashfile

    def _clear_task(self, taskid: int) -> None:
        super()._clear_task(taskid)
        self._states.pop(str(taskid), None)
        self._refused.pop(taskid, None)

    # -- submission --------------------------------------------------------------------------------------
    def _submit_batchtask(self, scriptfile: str, node: Any) -> int:
        args = shlex.split(self._sbatch_args or "")
        own = node.plugin_args.get("sbatch_args") if isinstance(node.plugin_args, dict) else None
        if own:
            args = shlex.split(own) if node.plugin_args.get("overwrite") else args + shlex.split(own)
        log = os.path.join(os.path.dirname(scriptfile), "slurm-%j.out")
        if has_option(args, "o", "output"):
            log = ""  # the user's own --output
        else:
            args += log_options(args, log)
        parts = [login_name(), *(node._hierarchy.split(".") if node._hierarchy else []), node._id]
        args += ["-J", ".".join(reversed(parts))]
        try:
            job = int(submit(scriptfile, args, tries=self._sbatch_tries, backoff=self._retry_timeout or 1.0))
        except SlurmError as exc:
            # Fail this node (with a crash file) rather than the whole run.
            task = self._next_refused
            self._next_refused -= 1
            self._refused[task] = f"Could not submit the SLURM job of node {node.fullname}: {exc}"
            self._pending[task] = node.output_dir()
            logger.error("%s", self._refused[task])
            return task
        self._pending[job] = node.output_dir()
        self._names[job] = node.fullname
        self._logs[job] = log.replace("%j", str(job))
        logger.debug("submitted SLURM job %d for node %s", job, node.fullname)
        return job


_MISSING_RESULT_NOTE = re.compile(
    r"\s*When creating this crashfile, the results file corresponding\s+to the node could not be found\.\s*$"
)


def _failure(message: str) -> dict[str, Any]:
    # A list of lines: nipype's report_crash may append lines to it.
    return {"result": None, "traceback": [message + "\n"], "hostname": "unknown"}


class SubmittedJob(dict):
    """One submitted node: ``job_id``, ``name`` (sbatch -J), ``node`` (full name), ``output_dir``."""


class SLURMGraphSubmitter(SLURMGraphPlugin):
    """nipype's SLURMGraph, submitting each job from Python (retried, ids kept) instead of a shell script.

    After ``wf.run``: :attr:`submitted` lists the jobs (in submission order) and :attr:`refused` maps the
    output folders of nodes that could not be submitted to the reason; their dependents are not submitted
    either. The same list is written to ``<batch dir>/jobs.json``.
    """

    def __init__(self, **kwargs: Any):
        plugin_args = dict(kwargs.get("plugin_args") or {})
        self._sbatch_tries = int(plugin_args.pop("sbatch_tries", 6))
        plugin_args.setdefault("dont_resubmit_completed_jobs", False)  # nipype needs a non-empty dict
        kwargs["plugin_args"] = plugin_args
        super().__init__(**kwargs)
        self.submitted: list[SubmittedJob] = []
        self.refused: dict[str, str] = {}
        self.batch_dir: Path | None = None

    def _submit_graph(self, pyfiles: list[str], dependencies: dict[int, list[int]], nodes: list[Any]) -> None:
        done = self._completed(nodes, dependencies) if self._dont_resubmit_completed_jobs else set()
        batch_dir = Path(pyfiles[0]).parent
        self.batch_dir = batch_dir
        job_ids: dict[int, str] = {}
        blocked: set[int] = set()
        for idx, pyscript in enumerate(pyfiles):  # nodes are in topological order
            if idx in done:
                continue
            node = nodes[idx]
            needs = [dep for dep in dependencies.get(idx, []) if dep not in done]
            if any(dep in blocked for dep in needs):
                blocked.add(idx)  # a node it needs could not be submitted
                continue
            template, sbatch_args = self._get_args(node, ["template", "sbatch_args"])
            script = batch_dir / f"batchscript_{Path(pyscript).stem}.sh"
            script.write_text(
                template.rstrip("\n") + "\n" + shlex.join([sys.executable, pyscript]) + "\n", encoding="utf-8"
            )
            args = shlex.split(sbatch_args)
            args += log_options(args, f"{script}.o")
            if needs:
                args.append("--dependency=afterok:" + ":".join(job_ids[dep] for dep in needs))
            name = f"j{idx}_{node._id}".replace("-", "_").replace(".", "_").replace(":", "_")
            args += ["-J", name]
            try:
                job_ids[idx] = submit(script, args, tries=self._sbatch_tries)
            except SlurmError as exc:
                blocked.add(idx)
                self.refused[node.output_dir()] = (
                    f"Could not submit the SLURM job of node {node.fullname}: {exc}"
                )
                logger.error("%s", self.refused[node.output_dir()])
                continue
            self.submitted.append(
                SubmittedJob(job_id=job_ids[idx], name=name, node=node.fullname, output_dir=node.output_dir())
            )
        (batch_dir / "jobs.json").write_text(json.dumps(self.submitted, indent=1) + "\n", encoding="utf-8")
        logger.info("submitted %d SLURM job(s); %d node(s) already done", len(self.submitted), len(done))

    @staticmethod
    def _completed(nodes: list[Any], dependencies: dict[int, list[int]]) -> set[int]:
        """Nodes whose cached results are complete, and whose inputs' nodes are too (as nipype decides)."""
        done: set[int] = set()
        for idx, node in enumerate(nodes):
            if node_completed_status(node) and all(dep in done for dep in dependencies.get(idx, [])):
                done.add(idx)
        return done
