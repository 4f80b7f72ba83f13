"""The models of an execution config: one strict pydantic model per nipype plugin.

Loading, validation messages and command-line overrides live in :mod:`smriflow.config.execution`, which is
the public module; these classes are re-exported there.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    TypeAdapter,
    ValidationInfo,
    field_validator,
)

from smriflow.config.loader import Positions

PLUGINS = ("MultiProc", "Linear", "SLURM", "SLURMGraph", "SLURMArray")
DEFAULT_CONFIG = "local"
# Folders that are private to one machine: SLURM jobs on other nodes cannot see them.
_NODE_LOCAL_ROOTS = (Path("/tmp"), Path("/var/tmp"), Path("/dev/shm"))


# -- hardware defaults ------------------------------------------------------------------------------------
def available_cpus() -> int:
    """Number of CPUs this process may run on (its affinity mask, e.g. a SLURM or container allocation)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def total_memory_gb() -> float:
    """Physical memory in GB, or the cgroup (container, SLURM job) limit when that is lower."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(limit_file).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, int(text))
    return total / 1024**3


def _default_memory_gb() -> float:
    return max(0.5, round(0.9 * total_memory_gb(), 1))


def _default_mp_context() -> str:
    return "fork" if sys.platform.startswith("linux") else "spawn"


def node_local_root(path: Path) -> Path | None:
    """The machine-private folder (``/tmp``, ``/var/tmp``, ``/dev/shm``) that holds ``path``, if any."""
    resolved = Path(os.path.abspath(path))
    for root in _NODE_LOCAL_ROOTS:
        if resolved == root or resolved.is_relative_to(root):
            return root
    return None


def _expand_path(value: Any, info: ValidationInfo) -> Any:
    """Expand ``~`` and ``$VARS``; resolve a relative path against the config file's folder."""
    if isinstance(value, Path):
        value = str(value)
    if not isinstance(value, str):
        return value  # the type check that follows reports it
    expanded = os.path.expanduser(os.path.expandvars(value))
    unset = sorted(set(re.findall(r"\$\{?(\w+)", expanded)))
    if unset:
        raise ValueError(f"environment variable {', '.join(unset)} is not set (in {value!r})")
    path = Path(expanded)
    if not path.is_absolute():
        base = (info.context or {}).get("base_dir") or Path.cwd()
        path = Path(base) / path
    return Path(os.path.normpath(path))


# -- models -----------------------------------------------------------------------------------------------
class _Model(BaseModel):
    # strict: YAML 1.2 'on'/'yes' and quoted numbers are strings, and stay mistakes.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class NipypeOptions(_Model):
    """The nipype execution options that smriflow lets a config set (``nipype:``)."""

    crashfile_format: Literal["txt", "pklz"] = Field(
        "txt",
        description="Crash file format: 'txt' is readable as it is; 'pklz' keeps the node for nipypecli.",
    )
    crashdump_dir: Annotated[Path | None, Field(strict=False)] = Field(
        None,
        description="Folder for crash files (relative paths: from this file's folder). "
        "Default: 'crash' inside the work directory.",
    )
    stop_on_first_crash: bool = Field(
        False, description="Stop the whole run at the first failing node (default: run everything that can)."
    )
    stop_on_first_rerun: bool = Field(
        False, description="Fail instead of re-running a node whose cached result is out of date (debugging)."
    )
    remove_unnecessary_outputs: bool = Field(
        True, description="Delete node outputs that no other node uses, to save disk space."
    )
    remove_node_directories: bool = Field(
        False, description="Delete each node's folder once every node that needs it has finished."
    )
    keep_inputs: bool = Field(False, description="Keep input files even when they are not connected outputs.")
    hash_method: Literal["timestamp", "content"] = Field(
        "timestamp",
        description="How a cached result is checked: file size and time ('timestamp', fast) or contents.",
    )
    local_hash_check: bool = Field(
        True, description="Skip up-to-date cached nodes without submitting them to a worker or a SLURM job."
    )
    job_finished_timeout: float = Field(
        5.0,
        ge=0,
        description="Seconds to wait for a finished job's result file to appear (slow shared filesystems).",
    )
    create_report: bool = Field(True, description="Write nipype's per-node report files.")
    write_provenance: bool = Field(False, description="Write nipype's W3C PROV provenance files.")

    @field_validator("crashdump_dir", mode="before")
    @classmethod
    def _expand_crashdump_dir(cls, value: Any, info: ValidationInfo) -> Any:
        return _expand_path(value, info)

    def execution_options(self) -> dict[str, str]:
        """The ``config["execution"]`` entries for nipype (all but ``crashdump_dir``), as nipype's strings."""
        options = self.model_dump(exclude={"crashdump_dir"})
        return {
            key: str(value).lower() if isinstance(value, bool) else str(value)
            for key, value in options.items()
        }


class _PluginArgs(_Model):
    # Keys that are handed to nipype's plugin as they are; others are smriflow's own.
    _nipype_keys: ClassVar[tuple[str, ...]] = ()

    def nipype_args(self) -> dict[str, Any]:
        """The ``plugin_args`` dict for nipype's plugin (``None`` values left out)."""
        values = self.model_dump(include=set(self._nipype_keys))
        return {key: value for key, value in values.items() if value is not None}


class MultiProcArgs(_PluginArgs):
    """``plugin_args`` of MultiProc: run nodes in parallel worker processes on this machine."""

    _nipype_keys: ClassVar[tuple[str, ...]] = (
        "n_procs",
        "memory_gb",
        "raise_insufficient",
        "scheduler",
        "mp_context",
    )

    n_procs: int = Field(
        default_factory=available_cpus,
        ge=1,
        description="CPUs to use at once, summed over running nodes. Default: the CPUs this process may use.",
    )
    memory_gb: float = Field(
        default_factory=_default_memory_gb,
        gt=0,
        description="Memory (GB) to use at once, summed over running nodes' mem_gb. Default: 90% of RAM.",
    )
    poll_sleep_duration: float = Field(
        0.1,
        gt=0,
        description="Seconds between scheduling rounds (nipype's 2 s default slows chains of small nodes).",
    )
    raise_insufficient: bool = Field(
        True, description="Refuse to start when a node needs more CPUs or memory than n_procs/memory_gb."
    )
    scheduler: Literal["critical_path", "tsort", "mem_thread"] = Field(
        "critical_path",
        description="Order of ready nodes: the longest estimated chain of work after them first "
        "('critical_path', from the nodes' resources.seconds), graph order ('tsort') or smallest memory "
        "first ('mem_thread').",
    )
    mp_context: Literal["fork", "spawn"] = Field(
        default_factory=_default_mp_context,
        description="How workers start. Both pass on the thread settings; default 'fork' on Linux.",
    )


class LinearArgs(_PluginArgs):
    """``plugin_args`` of Linear (none): one node after the other in this process, for debugging."""


# SLURM's --time formats: minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS.
_TIME_RE = re.compile(r"^(\d+(:\d{1,2}){0,2}|\d+-\d{1,2}(:\d{1,2}){0,2}|UNLIMITED|INFINITE)$")
# Options smriflow sets itself in each mode; giving them in sbatch_args would break the run.
_RESERVED_OPTIONS = ("--array", "--dependency", "--parsable", "--wrap")


class _SlurmArgsBase(_PluginArgs):
    partition: str | None = Field(
        None, min_length=1, description="SLURM partition of every job (sbatch --partition)."
    )
    time: str | None = Field(
        None,
        description="Time limit of every job (sbatch --time): minutes, HH:MM:SS or D-HH:MM:SS. A job "
        "killed at its limit is reported as such; rerunning resumes.",
    )
    account: str | None = Field(None, min_length=1, description="Account charged (sbatch --account).")
    sbatch_args: str = Field(
        "",
        description="Other options for every sbatch call, e.g. '--qos=short --constraint=avx2'. They come "
        "after partition/time/account, so they win over those.",
    )
    template: str | None = Field(
        None,
        description="Job script header: a file (relative paths: from this file's folder) or the text itself "
        "(starting with '#!'). The job's Python command is appended after it.",
    )
    min_mem_gb: float = Field(
        1.0,
        gt=0,
        description="Smallest --mem requested per job when resources_to_sbatch is on: a job's Python that "
        "imports nipype needs more than nipype's default node estimate of 0.2 GB.",
    )

    @field_validator("time")
    @classmethod
    def _time_format(cls, value: str | None) -> str | None:
        if value is not None and not _TIME_RE.match(value):
            raise ValueError(
                f"{value!r} is not a SLURM time limit; use minutes ('90'), 'HH:MM:SS' or 'D-HH:MM:SS'"
            )
        return value

    @field_validator("sbatch_args")
    @classmethod
    def _sbatch_args_parse(cls, value: str) -> str:
        try:
            tokens = shlex.split(value)
        except ValueError as exc:
            raise ValueError(f"cannot split {value!r} into options ({exc})") from None
        reserved = sorted(
            {
                opt
                for token in tokens
                for opt in _RESERVED_OPTIONS
                if token == opt or token.startswith(opt + "=")
            }
        )
        if reserved:
            raise ValueError(f"{', '.join(reserved)} is set by smriflow and cannot be given in sbatch_args")
        return value

    def sbatch_options(self) -> list[str]:
        """The options of every job: partition, time and account, then ``sbatch_args``."""
        options = [
            f"--{key}={getattr(self, key)}"
            for key in ("partition", "time", "account")
            if getattr(self, key) is not None
        ]
        return options + shlex.split(self.sbatch_args)

    def nipype_args(self) -> dict[str, Any]:
        """As for every plugin, with ``sbatch_args`` holding partition, time and account too."""
        args = super().nipype_args()
        if "sbatch_args" in args:
            args["sbatch_args"] = shlex.join(self.sbatch_options())
        return args

    @field_validator("template")
    @classmethod
    def _template_exists(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None or _is_literal_template(value):
            return value
        path = _expand_path(value, info)
        if not path.is_file():
            raise ValueError(
                f"template file '{path}' not found (a relative path is read from the config file's folder; "
                "literal text must start with '#!')"
            )
        return str(path)

    def template_text(self) -> str:
        """The job script header: the template file's text, the literal text, or ``#!/bin/bash``."""
        if self.template is None:
            return "#!/bin/bash"
        if _is_literal_template(self.template):
            return self.template
        return Path(self.template).read_text(encoding="utf-8")


def _is_literal_template(value: str) -> bool:
    return "\n" in value or value.startswith("#!")


class SLURMArgs(_SlurmArgsBase):
    """``plugin_args`` of SLURM: one sbatch job per node, submitted by this process as nodes become ready."""

    _nipype_keys: ClassVar[tuple[str, ...]] = ("sbatch_args", "max_jobs", "retry_timeout", "max_tries")

    poll_sleep_duration: float = Field(
        2.0,
        gt=0,
        description="Seconds between checks of the queue (one squeue call per check for all running jobs).",
    )
    max_jobs: int | None = Field(
        None, ge=1, description="Most jobs in the queue at once (default: no limit). Some sites cap this."
    )
    retry_timeout: float = Field(2.0, ge=0, description="Seconds to wait before retrying a failed sbatch.")
    max_tries: int = Field(2, ge=0, description="Retries of a failed sbatch before the node fails.")


class SLURMGraphArgs(_SlurmArgsBase):
    """``plugin_args`` of SLURMGraph: submit every node at once, chained with --dependency=afterok."""

    _nipype_keys: ClassVar[tuple[str, ...]] = ("sbatch_args", "dont_resubmit_completed_jobs")

    dont_resubmit_completed_jobs: bool = Field(
        False, description="Do not submit nodes whose cached results are complete (resuming a run)."
    )
    wait: bool = Field(
        True,
        description="Wait until every submitted job has left the queue and report failures; with false, "
        "return right after submission.",
    )
    poll_sleep_duration: float = Field(
        5.0, gt=0, description="Seconds between squeue checks while waiting for the jobs."
    )


class SLURMArrayArgs(_SlurmArgsBase):
    """``plugin_args`` of SLURMArray: one array job, one task per subject, each running ``smriflow run``."""

    cpus_per_task: int | None = Field(
        None,
        ge=1,
        description="CPUs of each subject's job (--cpus-per-task), used by the executor inside it. Default: "
        "the largest n_procs of the workflow's nodes.",
    )
    mem_gb: float | None = Field(
        None,
        gt=0,
        description="Memory of each subject's job in GB (--mem). Default: the largest mem_gb of the "
        "workflow's nodes plus 1 GB for smriflow itself, at least min_mem_gb.",
    )
    max_parallel: int | None = Field(
        None, ge=1, description="Most subjects running at once (the array's %N throttle; default: no limit)."
    )
    inner_config: str = Field(
        "local",
        min_length=1,
        description="Execution config run inside each subject's job (MultiProc or Linear): a packaged name "
        "or a file (relative paths: from this file's folder). Its n_procs and memory_gb become the job's.",
    )
    smriflow_command: str | None = Field(
        None,
        description="How each task starts smriflow, e.g. 'apptainer exec --bind /data smriflow.sif "
        "smriflow' (default: the smriflow of this Python environment, which compute nodes must see).",
    )
    poll_sleep_duration: float = Field(
        5.0, gt=0, description="Seconds between squeue checks while waiting for the array's tasks."
    )
    wait: bool = Field(
        True,
        description="Wait for every task and report per subject; with false, return right after submission.",
    )

    @field_validator("inner_config")
    @classmethod
    def _inner_config_path(cls, value: str, info: ValidationInfo) -> str:
        if "/" in value or os.sep in value or value.endswith((".yml", ".yaml")):
            return str(_expand_path(value, info))
        return value


class ExecConfig(_Model):
    """Settings shared by every plugin: base of the per-plugin configs."""

    plugin: str = Field(
        description="Execution plugin: MultiProc (default), Linear, SLURM, SLURMGraph or SLURMArray."
    )
    plugin_args: _PluginArgs = Field(description="Options of the plugin (see its section).")
    omp_nthreads: int = Field(
        1,
        ge=1,
        description="Threads per node (ITK, OpenMP, BLAS) and the default n_procs of threaded nodes.",
    )
    work_dir: Annotated[Path | None, Field(strict=False)] = Field(
        None,
        description="Folder for intermediate results (relative paths: from this file's folder; ~ and $VARS "
        "are expanded). SLURM plugins need a folder that every compute node sees.",
    )
    resources_to_sbatch: bool = Field(
        True,
        description="SLURM plugins: request each node's n_procs and mem_gb with --cpus-per-task and --mem.",
    )
    single_node: bool = Field(
        False,
        description="SLURM plugins: every job runs on this machine, so a work_dir under /tmp is allowed.",
    )
    nipype: NipypeOptions = Field(default_factory=NipypeOptions, description="nipype execution options.")

    _source: str | None = PrivateAttr(None)
    _positions: Positions | None = PrivateAttr(None)

    @field_validator("work_dir", mode="before")
    @classmethod
    def _expand_work_dir(cls, value: Any, info: ValidationInfo) -> Any:
        return _expand_path(value, info)

    @property
    def source(self) -> str | None:
        """The file this config was read from (``None`` when built in Python)."""
        return self._source


class MultiProcConfig(ExecConfig):
    """Run on this machine with parallel worker processes (the default)."""

    plugin: Literal["MultiProc"] = Field("MultiProc", description="Parallel processes on this machine.")
    plugin_args: MultiProcArgs = Field(default_factory=MultiProcArgs, description="MultiProc options.")


class LinearConfig(ExecConfig):
    """Run one node after the other in this process (debugging only)."""

    plugin: Literal["Linear"] = Field("Linear", description="Serial, in this process (debugging).")
    plugin_args: LinearArgs = Field(default_factory=LinearArgs, description="Linear takes no options.")


class SLURMConfig(ExecConfig):
    """Run each node as its own sbatch job, submitted as nodes become ready."""

    plugin: Literal["SLURM"] = Field("SLURM", description="One sbatch job per node, submitted when ready.")
    plugin_args: SLURMArgs = Field(default_factory=SLURMArgs, description="SLURM options.")


class SLURMGraphConfig(ExecConfig):
    """Submit the whole graph to SLURM at once, as jobs chained by dependencies."""

    plugin: Literal["SLURMGraph"] = Field("SLURMGraph", description="The whole graph submitted at once.")
    plugin_args: SLURMGraphArgs = Field(default_factory=SLURMGraphArgs, description="SLURMGraph options.")


class SLURMArrayConfig(ExecConfig):
    """Submit one SLURM array job, one task per subject, each running the workflow with a local executor."""

    plugin: Literal["SLURMArray"] = Field("SLURMArray", description="One array task per subject.")
    plugin_args: SLURMArrayArgs = Field(default_factory=SLURMArrayArgs, description="SLURMArray options.")


# The configs that submit to SLURM (work_dir must be shared, resources become sbatch options).
SLURM_CONFIGS = (SLURMConfig, SLURMGraphConfig, SLURMArrayConfig)

CONFIG_CLASSES: dict[str, type[ExecConfig]] = {
    "MultiProc": MultiProcConfig,
    "Linear": LinearConfig,
    "SLURM": SLURMConfig,
    "SLURMGraph": SLURMGraphConfig,
    "SLURMArray": SLURMArrayConfig,
}
CONFIG_ADAPTER: TypeAdapter[ExecConfig] = TypeAdapter(
    Annotated[
        MultiProcConfig | LinearConfig | SLURMConfig | SLURMGraphConfig | SLURMArrayConfig,
        Field(discriminator="plugin"),
    ]
)


def exec_config_schema() -> dict[str, Any]:
    """JSON Schema of an execution config (the docs are generated from it)."""
    return CONFIG_ADAPTER.json_schema()
