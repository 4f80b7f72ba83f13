"""Execution configs: packaged files, error messages with positions, command-line overrides."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from smriflow.config import resources
from smriflow.config.errors import SpecError
from smriflow.config.execution import (
    PLUGINS,
    LinearConfig,
    MultiProcConfig,
    SLURMArrayConfig,
    SLURMConfig,
    SLURMGraphConfig,
    available_cpus,
    exec_config_schema,
    list_exec_configs,
    load_exec_config,
    override,
)


def write(tmp_path: Path, text: str, name: str = "exec.yml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def messages(exc: pytest.ExceptionInfo[SpecError]) -> list[str]:
    return [str(problem) for problem in exc.value.problems]


# -- packaged configs ---------------------------------------------------------------------------------------
def test_packaged_dir_prefers_installed_data(tmp_path, monkeypatch):
    package = tmp_path / "site" / "smriflow"
    (package / "data" / "configs").mkdir(parents=True)
    monkeypatch.setattr(resources, "_PACKAGE_DIR", package)
    assert resources.packaged_dir("configs") == package / "data" / "configs"
    # No installed copy of the workflows: fall back to the checkout's top-level folder.
    assert resources.packaged_dir("workflows") == tmp_path / "site" / "workflows"
    with pytest.raises(ValueError, match="'kind' must be one of"):
        resources.packaged_dir("presets")


def test_packaged_dir_in_checkout_is_top_level_configs():
    folder = resources.packaged_dir("configs")
    assert folder.name == "configs"
    assert (folder / "local.yml").is_file()


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("local", MultiProcConfig),
        ("linear", LinearConfig),
        ("slurm", SLURMGraphConfig),
        ("slurm-node", SLURMConfig),
        ("slurm-array", SLURMArrayConfig),
    ],
)
def test_every_packaged_config_loads(name, cls):
    config = load_exec_config(name)
    assert type(config) is cls
    assert config.plugin == cls.model_fields["plugin"].default
    assert Path(config.source).name == f"{name}.yml"
    assert config.nipype.crashfile_format == "txt"


def test_packaged_configs_are_all_listed():
    assert set(list_exec_configs()) >= {"local", "linear", "slurm", "slurm-node", "slurm-array"}
    for name in list_exec_configs():
        load_exec_config(name)  # none of them may be broken


def test_default_is_multiproc_with_machine_defaults():
    config = load_exec_config(None)
    assert isinstance(config, MultiProcConfig)
    assert config.plugin_args.n_procs == available_cpus()
    assert 0 < config.plugin_args.memory_gb
    assert config.plugin_args.poll_sleep_duration == pytest.approx(0.1)
    assert config.omp_nthreads == 1
    # What nipype receives: only keys its plugin reads.
    assert set(config.plugin_args.nipype_args()) == {
        "n_procs",
        "memory_gb",
        "raise_insufficient",
        "scheduler",
        "mp_context",
    }


def test_slurm_graph_always_passes_nonempty_plugin_args():
    # nipype's SLURMGraph raises AttributeError with an empty plugin_args dict.
    config = load_exec_config("slurm")
    assert config.plugin_args.nipype_args() == {"sbatch_args": "", "dont_resubmit_completed_jobs": True}


def test_unknown_packaged_name_suggests_close_one():
    with pytest.raises(SpecError) as exc:
        load_exec_config("slurmm")
    assert messages(exc) == [
        "slurmm: no execution config named 'slurmm' (and no file of that name here). Did you mean 'slurm'? "
        "Available: linear, local, slurm, slurm-array, slurm-node"
    ]


def test_missing_file(tmp_path):
    with pytest.raises(SpecError, match=r"nope\.yml: file not found"):
        load_exec_config(tmp_path / "nope.yml")


def test_schema_documents_every_field():
    schema = exec_config_schema()
    assert set(schema["discriminator"]["mapping"]) == set(PLUGINS)
    for name, model in schema["$defs"].items():
        for field, spec in model.get("properties", {}).items():
            assert spec.get("description"), f"{name}.{field} has no description"


def test_user_guide_covers_every_key():
    guide = (Path(__file__).parents[2] / "docs" / "execution.md").read_text(encoding="utf-8")
    for name, model in exec_config_schema()["$defs"].items():
        for key in model.get("properties", {}):
            assert f"`{key}`" in guide, f"docs/execution.md does not describe {name}.{key}"


# -- bad configs --------------------------------------------------------------------------------------------
def test_unknown_plugin_arg_gives_position_and_suggestion(tmp_path):
    path = write(tmp_path, "plugin: MultiProc\nplugin_args:\n  n_proc: 4\n")
    with pytest.raises(SpecError) as exc:
        load_exec_config(path)
    assert messages(exc) == [
        f"{path}:3:3: plugin_args.n_proc: unknown key 'n_proc' for plugin MultiProc. Did you mean 'n_procs'? "
        "Available: memory_gb, mp_context, n_procs, poll_sleep_duration, raise_insufficient, scheduler"
    ]
    # The raw pydantic error is kept for --debug, never shown.
    assert "pydantic" in type(exc.value.__cause__).__module__
    assert "Extra inputs" not in str(exc.value)


def test_option_of_another_plugin_names_that_plugin(tmp_path):
    path = write(tmp_path, "plugin_args:\n  n_procs: 2\n  sbatch_args: --partition=short\n")
    with pytest.raises(SpecError) as exc:
        load_exec_config(path)
    assert messages(exc) == [
        f"{path}:3:3: plugin_args.sbatch_args: unknown key 'sbatch_args' for plugin MultiProc. "
        "It is an option of SLURM, SLURMGraph, SLURMArray."
    ]


def test_wrong_types_are_all_reported_in_file_order(tmp_path):
    text = (
        "plugin: SLURM\n"
        "plugin_args:\n"
        "  max_jobs: many\n"
        "  poll_sleep_duration: 0\n"
        "omp_nthreads: '2'\n"
        "nipype:\n"
        "  stop_on_first_crash: yes\n"
        "  crashfile_format: text\n"
        "work_dri: /scratch\n"
    )
    path = write(tmp_path, text)
    with pytest.raises(SpecError) as exc:
        load_exec_config(path)
    assert messages(exc) == [
        f"{path}:3:13: plugin_args.max_jobs: must be a whole number; got 'many'.",
        f"{path}:4:24: plugin_args.poll_sleep_duration: must be greater than 0; got 0.",
        f"{path}:5:15: omp_nthreads: must be a whole number; got '2'.",
        f"{path}:7:24: nipype.stop_on_first_crash: must be true or false; got 'yes'. "
        "YAML 1.2 booleans are only true and false; other words are text.",
        f"{path}:8:21: nipype.crashfile_format: must be one of txt, pklz; got 'text'. Did you mean 'txt'?",
        f"{path}:9:1: work_dri: unknown key 'work_dri'. Did you mean 'work_dir'? Available: nipype, "
        "omp_nthreads, plugin, plugin_args, resources_to_sbatch, single_node, work_dir",
    ]


def test_unknown_plugin_still_checks_shared_keys(tmp_path):
    path = write(tmp_path, "plugin: slurm\nomp_nthreads: 0\n")
    with pytest.raises(SpecError) as exc:
        load_exec_config(path)
    assert messages(exc) == [
        f"{path}:1:9: plugin: unknown plugin 'slurm'. Did you mean 'SLURM'? Plugin names are case-sensitive.",
        f"{path}:2:15: omp_nthreads: must be at least 1; got 0.",
    ]


def test_unknown_plugin_lists_plugins(tmp_path):
    path = write(tmp_path, "plugin: PBS\n")
    with pytest.raises(SpecError) as exc:
        load_exec_config(path)
    assert messages(exc) == [
        f"{path}:1:9: plugin: unknown plugin 'PBS'. Available: Linear, MultiProc, SLURM, SLURMArray, "
        "SLURMGraph"
    ]


def test_config_must_be_a_mapping(tmp_path):
    path = write(tmp_path, "- plugin: MultiProc\n")
    with pytest.raises(
        SpecError, match=r"exec\.yml:1:1: an execution config must be a mapping .*; got a list"
    ):
        load_exec_config(path)


def test_empty_sections_mean_defaults(tmp_path):
    config = load_exec_config(write(tmp_path, "plugin: Linear\nplugin_args:\nnipype:\n"))
    assert isinstance(config, LinearConfig)
    assert config.plugin_args.nipype_args() == {}


def test_omp_nthreads_cannot_exceed_n_procs(tmp_path):
    path = write(tmp_path, "plugin_args: {n_procs: 2}\nomp_nthreads: 4\n")
    with pytest.raises(SpecError) as exc:
        load_exec_config(path)
    assert messages(exc) == [
        f"{path}:2:15: omp_nthreads: 4 threads per node exceed plugin_args.n_procs (2). "
        "Lower omp_nthreads or raise plugin_args.n_procs (--nprocs)."
    ]


# -- SLURM work directory and template ----------------------------------------------------------------------
@pytest.mark.parametrize("plugin", ["SLURM", "SLURMGraph"])
def test_slurm_refuses_work_dir_under_tmp(tmp_path, plugin):
    path = write(tmp_path, f"plugin: {plugin}\nwork_dir: /tmp/smriflow-work\n")
    with pytest.raises(SpecError) as exc:
        load_exec_config(path)
    (message,) = messages(exc)
    assert message.startswith(f"{path}:2:11: work_dir: '/tmp/smriflow-work' is under /tmp, which is private")
    assert "compute nodes would not find the work directory" in message
    assert "set 'single_node: true'" in message


def test_single_node_allows_tmp(tmp_path):
    config = load_exec_config(write(tmp_path, "plugin: SLURM\nsingle_node: true\nwork_dir: /tmp/w\n"))
    assert config.work_dir == Path("/tmp/w")


def test_multiproc_allows_tmp(tmp_path):
    config = load_exec_config(write(tmp_path, "work_dir: /tmp/w\n"))
    assert config.work_dir == Path("/tmp/w")


def test_paths_are_expanded_and_relative_to_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("SMRIFLOW_TEST_SCRATCH", "/scratch/lab")
    (tmp_path / "header.sh").write_text("#!/bin/bash\nmodule load apptainer\n")
    text = (
        "plugin: SLURMGraph\n"
        "work_dir: ${SMRIFLOW_TEST_SCRATCH}/smriflow\n"
        "plugin_args: {template: header.sh}\n"
        "nipype: {crashdump_dir: crashes}\n"
    )
    config = load_exec_config(write(tmp_path, text))
    assert config.work_dir == Path("/scratch/lab/smriflow")
    assert config.plugin_args.template == str(tmp_path / "header.sh")
    assert config.plugin_args.template_text().endswith("module load apptainer\n")
    assert config.nipype.crashdump_dir == tmp_path / "crashes"


def test_unset_variable_and_missing_template_are_reported(tmp_path, monkeypatch):
    monkeypatch.delenv("SMRIFLOW_UNSET_VAR", raising=False)
    text = "plugin: SLURM\nwork_dir: $SMRIFLOW_UNSET_VAR/x\nplugin_args: {template: header.sh}\n"
    path = write(tmp_path, text)
    with pytest.raises(SpecError) as exc:
        load_exec_config(path)
    assert messages(exc) == [
        f"{path}:2:11: work_dir: environment variable SMRIFLOW_UNSET_VAR is not set "
        "(in '$SMRIFLOW_UNSET_VAR/x').",
        f"{path}:3:25: plugin_args.template: template file '{tmp_path / 'header.sh'}' not found (a relative "
        "path is read from the config file's folder; literal text must start with '#!').",
    ]


def test_literal_template_is_kept(tmp_path):
    config = load_exec_config(write(tmp_path, "plugin: SLURM\nplugin_args:\n  template: |\n    #!/bin/sh\n"))
    assert config.plugin_args.template_text() == "#!/bin/sh\n"


# -- command-line overrides ---------------------------------------------------------------------------------
def test_override_replaces_file_values(tmp_path, monkeypatch):
    config = load_exec_config(write(tmp_path, "plugin_args: {n_procs: 2, memory_gb: 4}\nwork_dir: a\n"))
    monkeypatch.chdir(tmp_path)
    new = override(config, n_procs=6, memory_gb=12.5, work_dir="b", omp_nthreads=3)
    assert (new.plugin_args.n_procs, new.plugin_args.memory_gb, new.omp_nthreads) == (6, 12.5, 3)
    assert new.work_dir == tmp_path / "b"  # from the current directory, not the file's
    assert new.source == config.source
    # The original is untouched (configs are frozen).
    assert (config.plugin_args.n_procs, config.work_dir) == (2, tmp_path / "a")
    assert override(config) == config


def test_override_errors_name_the_flag(tmp_path):
    config = load_exec_config(write(tmp_path, "plugin_args: {n_procs: 2}\n"))
    with pytest.raises(SpecError) as exc:
        override(config, n_procs=0, omp_nthreads=0)
    assert messages(exc) == [
        "command line: --nprocs: must be at least 1; got 0.",
        "command line: --omp-nthreads: must be at least 1; got 0.",
    ]
    with pytest.raises(SpecError) as exc:
        override(config, omp_nthreads=3)
    assert messages(exc) == [
        "command line: --omp-nthreads: 3 threads per node exceed plugin_args.n_procs (2). "
        "Lower omp_nthreads or raise plugin_args.n_procs (--nprocs)."
    ]


def test_override_nprocs_is_multiproc_only():
    config = load_exec_config("slurm")
    with pytest.raises(SpecError) as exc:
        override(config, n_procs=4, memory_gb=8)
    assert messages(exc) == [
        "command line: --mem-gb: applies to the MultiProc plugin only; this config uses SLURMGraph.",
        "command line: --nprocs: applies to the MultiProc plugin only; this config uses SLURMGraph.",
    ]


def test_override_work_dir_under_tmp_refused_for_slurm(tmp_path):
    config = load_exec_config("slurm-node")
    with pytest.raises(SpecError) as exc:
        override(config, work_dir="/tmp/run1")
    (message,) = messages(exc)
    assert re.match(r"command line: --work-dir: '/tmp/run1' is under /tmp, which is private", message)


def test_problem_with_file_value_found_through_override_points_at_file(tmp_path):
    path = write(tmp_path, "plugin_args: {n_procs: 4}\nomp_nthreads: 3\n")
    config = load_exec_config(path)
    with pytest.raises(SpecError) as exc:
        override(config, n_procs=2)
    # The conflict is reported at the file's omp_nthreads, which the user must lower (or raise --nprocs).
    assert messages(exc) == [
        f"{path}:2:15: omp_nthreads: 3 threads per node exceed plugin_args.n_procs (2). "
        "Lower omp_nthreads or raise plugin_args.n_procs (--nprocs)."
    ]
