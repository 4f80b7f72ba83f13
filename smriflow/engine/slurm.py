"""SLURM's commands, robustly: submit, look at the queue, cancel, and say how a job ended.

Every call goes through :func:`slurm_command`, which retries the errors a busy controller gives now and
then (``Socket timed out``, ``Unable to contact slurm controller``, ...) with exponential back-off and
raises :class:`SlurmError` with one readable line for the others. The plugins
(:mod:`smriflow.engine.slurm_plugins`), the wait of SLURMGraph runs and job arrays
(:mod:`smriflow.engine.slurm_array`) all use these functions.

Job states come from ``squeue -t all`` (which lists finished jobs for ``MinJobAge``, 300 s by default) and,
for jobs already gone from the controller, from ``sacct`` when the cluster has accounting.
"""

from __future__ import annotations

import getpass
import logging
import os
import re
import shlex
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "ACTIVE_STATES",
    "JobState",
    "SlurmError",
    "cancel",
    "describe_end",
    "ensure_login_name",
    "exit_codes",
    "has_option",
    "job_states",
    "login_name",
    "slurm_command",
    "submit",
    "wait_until_done",
]

logger = logging.getLogger("smriflow.engine")

# Errors that say "try again later", as the controller prints them under load or while it restarts.
TRANSIENT_ERRORS = (
    "socket timed out",
    "unable to contact slurm controller",
    "not available at the moment",
    "temporarily unavailable",
    "slurm temporarily unable",
    "connection refused",
    "connection timed out",
    "zero bytes were transmitted",
    "transport endpoint is not connected",
    "communication connection failure",
    "resource temporarily unavailable",
    "slurmctld not responding",
)
# States in which a job may still run (squeue's long names).
ACTIVE_STATES = frozenset(
    {
        "PENDING",
        "CONFIGURING",
        "RUNNING",
        "COMPLETING",
        "SUSPENDED",
        "REQUEUED",
        "REQUEUE_HOLD",
        "REQUEUE_FED",
        "RESIZING",
        "SIGNALING",
        "STAGE_OUT",
        "STOPPED",
        "RESV_DEL_HOLD",
    }
)
_ENDINGS = {
    "CANCELLED": "was cancelled (scancel, or by an administrator)",
    "TIMEOUT": "was killed at its time limit (--time)",
    "DEADLINE": "was killed at its deadline (--deadline)",
    "OUT_OF_MEMORY": "was killed for using more memory than it requested (--mem)",
    "NODE_FAIL": "was killed by the failure of its compute node",
    "PREEMPTED": "was preempted by a job of higher priority",
    "BOOT_FAIL": "could not start: its compute node failed to boot",
}

Runner = Callable[..., subprocess.CompletedProcess]


class SlurmError(RuntimeError):
    """A SLURM command failed for good (after retrying transient errors), or is not installed."""


@dataclass(frozen=True)
class JobState:
    """One job (or array task) as SLURM sees it: ``job_id`` is e.g. ``"12"`` or ``"12_3"``."""

    job_id: str
    state: str
    reason: str = ""
    exit_code: int | None = None

    @property
    def active(self) -> bool:
        """Whether the job may still run."""
        return self.state in ACTIVE_STATES


def login_name() -> str:
    """The user's login name (``$LOGNAME``, else from the password database, else ``uid<N>``)."""
    name = os.environ.get("LOGNAME")
    if name:
        return name
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid{os.getuid()}"


def ensure_login_name() -> None:
    """Set ``LOGNAME`` and ``USER`` when unset (CI, containers): nipype and ``squeue -u`` read them."""
    name = login_name()
    os.environ.setdefault("LOGNAME", name)
    os.environ.setdefault("USER", name)


def _is_transient(text: str) -> bool:
    lowered = text.lower()
    return any(error in lowered for error in TRANSIENT_ERRORS)


def slurm_command(
    args: Sequence[str],
    *,
    tries: int = 6,
    backoff: float = 1.0,
    max_backoff: float = 30.0,
    timeout: float = 120.0,
    ok_errors: Sequence[str] = (),
    runner: Runner = subprocess.run,
) -> str:
    """Run a SLURM command and return its standard output, retrying transient failures.

    Parameters
    ----------
    args : sequence of str
        The command, e.g. ``["squeue", "-h", "-j", "12"]``.
    tries : int
        Attempts in all; the waits between them are ``backoff``, ``2 * backoff``, ... up to
        ``max_backoff`` seconds. Only transient errors (and time-outs) are retried.
    timeout : float
        Seconds one attempt may take.
    ok_errors : sequence of str
        Error texts that are an answer, not a failure (e.g. ``"Invalid job id"``): the output is ``""``.
    runner : callable
        ``subprocess.run`` (tests pass a fake).

    Raises
    ------
    SlurmError
        When the command is missing, fails with a non-transient error, or keeps failing.
    """
    delay = backoff
    last = ""
    for attempt in range(1, max(1, tries) + 1):
        try:
            done = runner(list(args), capture_output=True, text=True, timeout=timeout, check=False)
        except FileNotFoundError:
            raise SlurmError(
                f"{args[0]}: command not found (is this a SLURM cluster's login node?)"
            ) from None
        except subprocess.TimeoutExpired:
            last = f"no answer within {timeout:g} s"
        else:
            if done.returncode == 0:
                return done.stdout
            last = (done.stderr or done.stdout or f"exit code {done.returncode}").strip().splitlines()[-1]
            if any(text.lower() in last.lower() for text in ok_errors):
                return ""
            if not _is_transient(last):
                raise SlurmError(f"{shlex.join(args[:1])} failed: {last}")
        if attempt < tries:
            logger.warning(
                "%s failed (%s); retrying in %g s (attempt %d of %d)", args[0], last, delay, attempt, tries
            )
            time.sleep(delay)
            delay = min(max_backoff, delay * 2)
    raise SlurmError(f"{args[0]} failed {tries} times in a row; last error: {last}")


_SHORT_WITH_VALUE = re.compile(r"^-([A-Za-z])(.*)$")


def has_option(sbatch_args: str | Sequence[str], short: str | None, long: str) -> bool:
    """Whether sbatch options contain ``-X``/``--long`` (as options, not inside other words)."""
    tokens = shlex.split(sbatch_args) if isinstance(sbatch_args, str) else list(sbatch_args)
    for token in tokens:
        if token == f"--{long}" or token.startswith(f"--{long}="):
            return True
        match = _SHORT_WITH_VALUE.match(token)
        if short and match and not token.startswith("--") and match.group(1) == short:
            return True
    return False


def submit(
    script: str | os.PathLike,
    sbatch_args: Sequence[str] = (),
    *,
    runner: Runner = subprocess.run,
    tries: int = 6,
    backoff: float = 1.0,
) -> str:
    """``sbatch --parsable [args] script``; return the job id.

    Raises
    ------
    SlurmError
        When sbatch refuses the job (e.g. ``Invalid partition name specified``) or keeps failing.
    """
    output = slurm_command(
        ["sbatch", "--parsable", *sbatch_args, str(script)], runner=runner, tries=tries, backoff=backoff
    )
    job_id = output.strip().splitlines()[-1].split(";")[0] if output.strip() else ""
    if not job_id.isdigit():
        raise SlurmError(f"sbatch printed no job id for {script}: {output.strip()!r}")
    return job_id


def _parse_exit(text: str) -> int | None:
    code = text.split(":")[0]
    return int(code) if code.isdigit() else None


def job_states(job_ids: Iterable[str], *, runner: Runner = subprocess.run) -> dict[str, JobState]:
    """The states of these jobs; array jobs are expanded into their tasks (``12_0``, ``12_1``, ...).

    Jobs the controller no longer knows are looked up with ``sacct`` when the cluster keeps accounting;
    jobs found nowhere are left out.
    """
    ids = sorted({str(job_id) for job_id in job_ids})
    if not ids:
        return {}
    output = slurm_command(
        ["squeue", "-h", "-r", "-t", "all", "-j", ",".join(ids), "-o", "%i|%T|%r"],
        runner=runner,
        ok_errors=("Invalid job id",),
    )
    states: dict[str, JobState] = {}
    for line in output.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 3:
            states[parts[0]] = JobState(parts[0], parts[1], parts[2])
    missing = [job_id for job_id in ids if not any(key.split("_")[0] == job_id for key in states)]
    if missing:
        states.update(_accounting_states(missing, runner))
    return states


_ACCOUNTING_OFF: list[bool] = []  # remembered per process: "Slurm accounting storage is disabled"


def _accounting_states(job_ids: Sequence[str], runner: Runner) -> dict[str, JobState]:
    if _ACCOUNTING_OFF:
        return {}
    try:
        output = slurm_command(
            ["sacct", "-n", "-P", "-X", "-j", ",".join(job_ids), "-o", "JobID,State,ExitCode,Reason"],
            runner=runner,
            tries=2,
        )
    except SlurmError as exc:
        if "disabled" in str(exc) or "not found" in str(exc):
            _ACCOUNTING_OFF.append(True)
        logger.debug("sacct gave no answer: %s", exc)
        return {}
    states = {}
    for line in output.splitlines():
        parts = line.strip().split("|")
        if len(parts) >= 3:
            state = parts[1].split()[0]  # "CANCELLED by 0"
            states[parts[0]] = JobState(
                parts[0], state, parts[3] if len(parts) > 3 else "", _parse_exit(parts[2])
            )
    return states


def exit_codes(job_id: str, *, runner: Runner = subprocess.run) -> dict[str, int]:
    """Exit codes of a job, or of each task of an array job, while the controller remembers it."""
    output = slurm_command(
        ["scontrol", "-o", "show", "job", job_id], runner=runner, ok_errors=("Invalid job id",)
    )
    codes = {}
    for line in output.splitlines():
        fields = dict(item.split("=", 1) for item in line.split() if "=" in item)
        if "ExitCode" not in fields:
            continue
        key = fields.get("JobId", "")
        if fields.get("ArrayTaskId", "N/A") not in ("N/A", ""):
            key = f"{fields.get('ArrayJobId')}_{fields['ArrayTaskId']}"
        code = _parse_exit(fields["ExitCode"])
        if code is not None:
            codes[key] = code
    return codes


def describe_end(state: JobState | None) -> str:
    """How a job ended, in words: ``"was killed at its time limit (--time)"``, ``"failed (exit code 1)"``."""
    if state is None:
        return "ended in a state SLURM no longer remembers"
    if state.state in _ENDINGS:
        return _ENDINGS[state.state]
    if state.state == "FAILED":
        if state.exit_code:
            return f"failed (exit code {state.exit_code})"
        if state.reason and state.reason not in ("None", "NonZeroExitCode"):
            return f"failed ({state.reason})"  # e.g. JobLaunchFailure: its log file could not be opened
        return "failed"
    return f"ended as {state.state}"


def cancel(job_ids: Iterable[str], *, runner: Runner = subprocess.run) -> None:
    """``scancel`` these jobs (errors are logged: a job may have ended meanwhile)."""
    ids = [str(job_id) for job_id in job_ids]
    if not ids:
        return
    try:
        slurm_command(["scancel", *ids], runner=runner, tries=3, ok_errors=("Invalid job id",))
    except SlurmError as exc:
        logger.warning("scancel %s: %s", " ".join(ids), exc)


def wait_until_done(
    job_ids: Iterable[str],
    *,
    poll_seconds: float = 5.0,
    timeout: float | None = None,
    cancel_never_satisfied: bool = True,
    on_change: Callable[[dict[str, JobState]], None] | None = None,
    runner: Runner = subprocess.run,
    max_errors: int = 10,
) -> dict[str, JobState]:
    """Wait until none of these jobs may still run; return the last known state of each job or task.

    Jobs waiting on a job that failed (reason ``DependencyNeverSatisfied``) can never run: they are
    cancelled (clusters without ``DependencyParameters=kill_invalid_depend`` keep them pending forever).

    Raises
    ------
    SlurmError
        When squeue fails ``max_errors`` polls in a row (each poll already retries transient errors).
    TimeoutError
        When ``timeout`` seconds pass first.
    """
    ids = {str(job_id) for job_id in job_ids}
    deadline = None if timeout is None else time.monotonic() + timeout
    last: dict[str, JobState] = {}
    errors = 0
    shown = None
    while ids:
        try:
            states = job_states(ids, runner=runner)
        except SlurmError as exc:
            errors += 1
            if errors >= max_errors:
                raise SlurmError(f"squeue failed {errors} times in a row; last error: {exc}") from exc
            logger.warning("%s; trying again", exc)
        else:
            errors = 0
            last.update(states)
            stuck = [s.job_id for s in states.values() if s.reason == "DependencyNeverSatisfied" and s.active]
            if stuck and cancel_never_satisfied:
                cancel(stuck, runner=runner)
            summary = sorted((s.job_id, s.state) for s in last.values())
            if on_change is not None and summary != shown:
                shown = summary
                on_change(dict(last))
            if not any(s.active for s in states.values()) and not stuck:
                break
        if deadline is not None and time.monotonic() > deadline:
            active = sorted(s.job_id for s in last.values() if s.active)
            raise TimeoutError(f"SLURM jobs still queued after {timeout} s: {', '.join(active)}")
        time.sleep(poll_seconds)
    return last
