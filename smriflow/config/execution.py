"""Execution configs: which nipype plugin runs a workflow, with which arguments, and where.

An execution config is a small YAML file, kept apart from the workflow files (``configs/*.yml``)::

    plugin: MultiProc
    plugin_args: {n_procs: 8, memory_gb: 30}
    omp_nthreads: 2
    work_dir: /scratch/me/smriflow

Each plugin has its own pydantic model of ``plugin_args`` that rejects unknown keys, because nipype silently
ignores the ones it does not know. :func:`load_exec_config` turns every mistake into a
``file:line:col: key.path: problem. Hint.`` line and raises one :class:`~smriflow.config.errors.SpecError`
listing all of them; :func:`override` applies command-line values (``--nprocs``, ``--mem-gb``,
``--work-dir``, ``--omp-nthreads``) and validates again. :func:`smriflow.engine.plugins.run_workflow` runs
a workflow with the result.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from smriflow.config.errors import Problem, SpecError, did_you_mean
from smriflow.config.execution_models import (
    CONFIG_ADAPTER,
    CONFIG_CLASSES,
    DEFAULT_CONFIG,
    PLUGINS,
    SLURM_CONFIGS,
    ExecConfig,
    LinearArgs,
    LinearConfig,
    MultiProcArgs,
    MultiProcConfig,
    NipypeOptions,
    SLURMArgs,
    SLURMArrayArgs,
    SLURMArrayConfig,
    SLURMConfig,
    SLURMGraphArgs,
    SLURMGraphConfig,
    available_cpus,
    exec_config_schema,
    node_local_root,
    total_memory_gb,
)
from smriflow.config.loader import KeyPath, format_key_path, load_yaml
from smriflow.config.pydantic_errors import Issue as _Issue
from smriflow.config.pydantic_errors import describe as _describe
from smriflow.config.pydantic_errors import issue_from_error
from smriflow.config.pydantic_errors import model_at as _model_at
from smriflow.config.resources import packaged_dir

_CLI = "command line"  # where problems with command-line values are said to be

__all__ = [
    "PLUGINS",
    "SLURM_CONFIGS",
    "ExecConfig",
    "LinearArgs",
    "LinearConfig",
    "MultiProcArgs",
    "MultiProcConfig",
    "NipypeOptions",
    "SLURMArgs",
    "SLURMArrayArgs",
    "SLURMArrayConfig",
    "SLURMConfig",
    "SLURMGraphArgs",
    "SLURMGraphConfig",
    "available_cpus",
    "exec_config_schema",
    "list_exec_configs",
    "load_exec_config",
    "node_local_root",
    "override",
    "total_memory_gb",
]


# -- validation -------------------------------------------------------------------------------------------
def _plugins_with_option(key: str) -> list[str]:
    return [
        name for name, cls in CONFIG_CLASSES.items() if key in _model_at(cls, ("plugin_args",)).model_fields
    ]


def _issue_from_error(error: dict[str, Any], plugin: str) -> _Issue:
    """Turn one pydantic error into our own words, naming the plugin an option belongs to."""
    loc: KeyPath = tuple(error["loc"])
    if loc and loc[0] in CONFIG_CLASSES:  # the union's tag
        loc = loc[1:]
    if error["type"] == "extra_forbidden" and loc[:-1] == ("plugin_args",):
        key = str(loc[-1])
        others = [p for p in _plugins_with_option(key) if p != plugin]
        hint = (
            f"It is an option of {', '.join(others)}."
            if others
            else did_you_mean(key, _model_at(CONFIG_CLASSES[plugin], ("plugin_args",)).model_fields)
        )
        return _Issue(loc, f"unknown key {key!r} for plugin {plugin}", hint, True)
    return issue_from_error(error, CONFIG_CLASSES[plugin], loc)


def _unknown_plugin(value: Any) -> _Issue:
    text = str(value)
    folded = {name.lower(): name for name in PLUGINS}
    if text.lower() in folded:
        hint = f"Did you mean '{folded[text.lower()]}'? Plugin names are case-sensitive."
    else:
        hint = did_you_mean(text, PLUGINS)
    return _Issue(("plugin",), f"unknown plugin {_describe(value)}", hint)


def _semantic_issues(config: ExecConfig) -> list[_Issue]:
    """Checks across fields, once every field is valid."""
    issues = []
    if isinstance(config, SLURM_CONFIGS) and config.work_dir and not config.single_node:
        root = node_local_root(config.work_dir)
        if root is not None:
            issues.append(
                _Issue(
                    ("work_dir",),
                    f"'{config.work_dir}' is under {root}, which is private to each machine: SLURM jobs on "
                    "other compute nodes would not find the work directory",
                    "Use a folder on a shared filesystem (e.g. /scratch/$USER/smriflow), or set "
                    "'single_node: true' if every job runs on this machine.",
                )
            )
    if isinstance(config, SLURMArrayConfig):
        issues += _inner_config_issues(config)
    if isinstance(config, MultiProcConfig) and config.omp_nthreads > config.plugin_args.n_procs:
        issues.append(
            _Issue(
                ("omp_nthreads",),
                f"{config.omp_nthreads} threads per node exceed plugin_args.n_procs "
                f"({config.plugin_args.n_procs})",
                "Lower omp_nthreads or raise plugin_args.n_procs (--nprocs).",
            )
        )
    return issues


def _inner_config_issues(config: SLURMArrayConfig) -> list[_Issue]:
    """The config run inside each array task must load, and be a local one."""
    inner = config.plugin_args.inner_config
    path = ("plugin_args", "inner_config")
    try:
        loaded = load_exec_config(inner)
    except SpecError as exc:
        first = str(exc.problems[0]) if exc.problems else str(exc)
        return [_Issue(path, f"the config {inner!r} cannot be used: {first}")]
    if not isinstance(loaded, MultiProcConfig | LinearConfig):
        return [
            _Issue(
                path,
                f"{inner!r} uses the {loaded.plugin} plugin; each array task runs one subject on its own "
                "compute node, with a local plugin",
                "Use 'local' (MultiProc) or a MultiProc/Linear config file.",
            )
        ]
    return []


def _validate(data: Any, base_dir: Path | None) -> tuple[ExecConfig | None, list[_Issue], Exception | None]:
    """Validate plain data; return the config (when valid), every issue found, and pydantic's error."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        return (
            None,
            [_Issue((), f"an execution config must be a mapping of keys to values; got {_describe(data)}")],
            None,
        )
    data = dict(data)
    for section in ("plugin_args", "nipype"):  # an emptied section (`plugin_args:`) means "all defaults"
        if section in data and data[section] is None:
            data[section] = {}
    issues: list[_Issue] = []
    plugin = data.setdefault("plugin", "MultiProc")
    if not isinstance(plugin, str) or plugin not in CONFIG_CLASSES:
        # Still check the shared keys, as if the plugin had been MultiProc without options.
        issues.append(_unknown_plugin(plugin))
        plugin, data = "MultiProc", {**data, "plugin": "MultiProc", "plugin_args": {}}
    try:
        config = CONFIG_ADAPTER.validate_python(data, context={"base_dir": base_dir})
    except ValidationError as exc:
        issues.extend(_issue_from_error(error, plugin) for error in exc.errors())
        return None, issues, exc
    if issues:
        return None, issues, None
    return config, _semantic_issues(config), None


# -- loading ----------------------------------------------------------------------------------------------
def list_exec_configs() -> list[str]:
    """Names of the packaged execution configs (``configs/<name>.yml``), for ``load_exec_config(name)``."""
    folder = packaged_dir("configs")
    return sorted(path.stem for path in folder.glob("*.yml")) if folder.is_dir() else []


def _locate(path_or_name: str | Path | None) -> Path:
    if path_or_name is None:
        path_or_name = DEFAULT_CONFIG
    if isinstance(path_or_name, Path) or Path(path_or_name).is_file():
        return Path(path_or_name)
    text = str(path_or_name)
    if "/" in text or os.sep in text or text.endswith((".yml", ".yaml")):
        return Path(text)  # a path: load_yaml reports when it is missing
    packaged = packaged_dir("configs") / f"{text}.yml"
    if not packaged.is_file():
        message = f"no execution config named {text!r} (and no file of that name here)"
        raise SpecError([Problem(text, None, None, "", message, did_you_mean(text, list_exec_configs()))])
    return packaged


def load_exec_config(path_or_name: str | Path | None = None) -> ExecConfig:
    """Read and validate an execution config.

    Parameters
    ----------
    path_or_name : str, Path or None
        ``None`` for the packaged default (``local``: MultiProc); a bare name such as ``"slurm"`` for a
        packaged config (``configs/slurm.yml``, see :func:`list_exec_configs`); otherwise a file path.

    Returns
    -------
    ExecConfig
        A :class:`MultiProcConfig`, :class:`LinearConfig`, :class:`SLURMConfig` or
        :class:`SLURMGraphConfig`, with every default filled in (``model_dump()`` gives the resolved
        settings, for provenance).

    Raises
    ------
    SpecError
        Listing every mistake as ``file:line:col: key.path: problem. Hint.``; pydantic's own error, if
        any, is kept as ``__cause__``.
    """
    path = _locate(path_or_name)
    data, positions = load_yaml(path)
    config, issues, cause = _validate(data, Path(os.path.abspath(path)).parent)
    if issues:
        raise SpecError(
            [positions.problem(i.path, i.message, i.hint, at_key=i.at_key) for i in issues]
        ) from cause
    config._source, config._positions = positions.file, positions
    return config


def override(
    config: ExecConfig,
    *,
    n_procs: int | None = None,
    memory_gb: float | None = None,
    work_dir: str | Path | None = None,
    omp_nthreads: int | None = None,
) -> ExecConfig:
    """Return a copy of ``config`` with command-line values in place of the file's (``None``: keep).

    Parameters
    ----------
    config : ExecConfig
        A loaded config.
    n_procs, memory_gb : int, float, optional
        ``--nprocs`` and ``--mem-gb``: MultiProc's ``plugin_args.n_procs`` and ``plugin_args.memory_gb``.
    work_dir : str or Path, optional
        ``--work-dir``; a relative path is taken from the current directory.
    omp_nthreads : int, optional
        ``--omp-nthreads``: threads per node.

    Raises
    ------
    SpecError
        When a value is invalid, or does not apply to the config's plugin; problems with values given on
        the command line are reported as ``command line: --flag: problem.``
    """
    data = config.model_dump()
    flags: dict[KeyPath, str] = {}
    issues: list[_Issue] = []
    for flag, path, value in (
        ("--nprocs", ("plugin_args", "n_procs"), n_procs),
        ("--mem-gb", ("plugin_args", "memory_gb"), memory_gb),
        ("--work-dir", ("work_dir",), work_dir),
        ("--omp-nthreads", ("omp_nthreads",), omp_nthreads),
    ):
        if value is None:
            continue
        flags[path] = flag
        if path[0] == "plugin_args" and not isinstance(config, MultiProcConfig):
            issues.append(
                _Issue(path, f"applies to the MultiProc plugin only; this config uses {config.plugin}")
            )
            continue
        if path == ("work_dir",):
            value = Path(os.path.abspath(os.path.expanduser(str(value))))
        target = data
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    if not issues:
        new, issues, cause = _validate(data, Path.cwd())
    else:
        new, cause = None, None
    if issues:
        raise SpecError([_place(config, issue, flags) for issue in issues]) from cause
    new._source, new._positions = config._source, config._positions
    return new


def _place(config: ExecConfig, issue: _Issue, flags: dict[KeyPath, str]) -> Problem:
    """Locate an issue on the command line when it is about an overridden value, else in the file."""
    for path, flag in flags.items():
        if issue.path[: len(path)] == path:
            return Problem(_CLI, None, None, flag, issue.message, issue.hint)
    if config._positions is not None:
        return config._positions.problem(issue.path, issue.message, issue.hint, at_key=issue.at_key)
    where = config._source or "<execution config>"
    return Problem(where, None, None, format_key_path(issue.path), issue.message, issue.hint)
