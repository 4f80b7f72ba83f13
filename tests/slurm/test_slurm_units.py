"""SLURM support without a cluster: retries and back-off, job states, killed-job reports, config keys, and
the array job's script and sbatch command (``smriflow run --dry-run``)."""

from __future__ import annotations

import shlex
import subprocess
import textwrap
from pathlib import Path

import pytest
from conftest import write_synthetic_t1w

from smriflow.cli.main import main
from smriflow.config.errors import SpecError
from smriflow.config.execution import load_exec_config
from smriflow.engine import slurm
from smriflow.engine.slurm import JobState, SlurmError
from smriflow.engine.slurm_plugins import SLURMNodePlugin, log_options


class FakeRunner:
    """Stands in for subprocess.run: answers from a list of (returncode, stdout, stderr), records calls."""

    def __init__(self, *answers: tuple[int, str, str]):
        self.answers = list(answers)
        self.calls: list[list[str]] = []

    def __call__(self, args, **kwargs):
        self.calls.append(list(args))
        code, out, err = self.answers.pop(0)
        return subprocess.CompletedProcess(args, code, out, err)


@pytest.fixture
def sleeps(monkeypatch):
    waited: list[float] = []
    monkeypatch.setattr(slurm.time, "sleep", waited.append)
    return waited


# -- commands ----------------------------------------------------------------------------------------------
def test_transient_errors_are_retried_with_back_off(sleeps):
    runner = FakeRunner(
        (1, "", "sbatch: error: Batch job submission failed: Socket timed out on send/recv operation"),
        (1, "", "sbatch: error: Slurm temporarily unable to accept job, sleeping and retrying"),
        (1, "", "squeue: error: Unable to contact slurm controller (connect failure)"),
        (0, "42\n", ""),
    )
    assert slurm.submit("job.sh", ["--partition=debug"], runner=runner) == "42"
    assert sleeps == [1.0, 2.0, 4.0]
    assert runner.calls[0] == ["sbatch", "--parsable", "--partition=debug", "job.sh"]


def test_permanent_error_is_one_line_at_once(sleeps):
    runner = FakeRunner(
        (1, "", "sbatch: error: Batch job submission failed: Invalid partition name specified\n")
    )
    with pytest.raises(SlurmError) as exc:
        slurm.submit("job.sh", ["--partition=nope"], runner=runner)
    assert (
        str(exc.value)
        == "sbatch failed: sbatch: error: Batch job submission failed: Invalid partition name specified"
    )
    assert sleeps == [] and len(runner.calls) == 1


def test_errors_that_keep_coming_back_give_up(sleeps):
    runner = FakeRunner(*[(1, "", "slurm_load_jobs error: Socket timed out on send/recv operation")] * 3)
    with pytest.raises(SlurmError, match=r"^squeue failed 3 times in a row; last error: .*Socket timed out"):
        slurm.slurm_command(["squeue"], tries=3, backoff=5, max_backoff=8, runner=runner)
    assert sleeps == [5, 8]


def test_missing_command_is_named():
    def missing(args, **kwargs):
        raise FileNotFoundError(args[0])

    with pytest.raises(
        SlurmError, match=r"^squeue: command not found \(is this a SLURM cluster's login node\?\)"
    ):
        slurm.slurm_command(["squeue"], runner=missing)


@pytest.mark.parametrize(
    ("args", "short", "long", "expected"),
    [
        ("--open-mode=append --oversubscribe", "o", "output", False),  # nipype's substring test says yes
        ("--export=ALL --exclusive", "e", "error", False),
        ("-o /logs/x.out", "o", "output", True),
        ("-o/logs/x.out", "o", "output", True),
        ("--output=/logs/%j.out", "o", "output", True),
        ("--error /logs/x.err", "e", "error", True),
    ],
)
def test_log_options_are_recognised_as_options(args, short, long, expected):
    assert slurm.has_option(args, short, long) is expected


def test_log_options_added_only_when_missing():
    assert log_options(["--open-mode=append"], "/b/x.o") == ["-o", "/b/x.o", "-e", "/b/x.o"]
    assert log_options(["--output=/l/%j"], "/b/x.o") == ["-e", "/b/x.o"]


def test_job_states_expand_arrays_and_fall_back_to_accounting(monkeypatch):
    monkeypatch.setattr(slurm, "_ACCOUNTING_OFF", [])
    runner = FakeRunner(
        (0, "12_0|COMPLETED|None\n12_1|RUNNING|None\n", ""),
        (0, "13|CANCELLED by 0|0:15|None\n", ""),
    )
    states = slurm.job_states(["12", "13"], runner=runner)
    assert states == {
        "12_0": JobState("12_0", "COMPLETED", "None"),
        "12_1": JobState("12_1", "RUNNING", "None"),
        "13": JobState("13", "CANCELLED", "None", 0),
    }
    assert runner.calls[1][:2] == ["sacct", "-n"] and "13" in runner.calls[1]


def test_job_states_without_accounting_leave_unknown_jobs_out(monkeypatch):
    monkeypatch.setattr(slurm, "_ACCOUNTING_OFF", [])
    runner = FakeRunner(
        (1, "", "slurm_load_jobs error: Invalid job id specified"),
        (1, "", "sacct: error: Slurm accounting storage is disabled"),
        (1, "", "slurm_load_jobs error: Invalid job id specified"),
    )
    assert slurm.job_states(["7"], runner=runner) == {}
    assert slurm.job_states(["8"], runner=runner) == {}
    assert [call[0] for call in runner.calls] == ["squeue", "sacct", "squeue"]  # sacct asked once only


@pytest.mark.parametrize(
    ("state", "text"),
    [
        (JobState("1", "CANCELLED"), "was cancelled (scancel, or by an administrator)"),
        (JobState("1", "TIMEOUT"), "was killed at its time limit (--time)"),
        (JobState("1", "OUT_OF_MEMORY"), "was killed for using more memory than it requested (--mem)"),
        (JobState("1", "FAILED", "NonZeroExitCode", 2), "failed (exit code 2)"),
        (JobState("1", "FAILED", "JobLaunchFailure", 0), "failed (JobLaunchFailure)"),
        (None, "ended in a state SLURM no longer remembers"),
    ],
)
def test_how_a_job_ended_in_words(state, text):
    assert slurm.describe_end(state) == text


def test_wait_cancels_jobs_that_can_never_run(sleeps):
    runner = FakeRunner(
        (0, "11|RUNNING|None\n12|PENDING|Dependency\n", ""),
        (0, "11|FAILED|NonZeroExitCode\n12|PENDING|DependencyNeverSatisfied\n", ""),
        (0, "", ""),  # scancel 12
        (0, "11|FAILED|NonZeroExitCode\n12|CANCELLED|DependencyNeverSatisfied\n", ""),
    )
    seen = []
    states = slurm.wait_until_done(["11", "12"], poll_seconds=0, runner=runner, on_change=seen.append)
    assert states["12"] == JobState("12", "CANCELLED", "DependencyNeverSatisfied")
    assert ["scancel", "12"] in runner.calls
    assert len(seen) == 3 and len(sleeps) == 2  # no sleep after the last look


def test_wait_tolerates_then_reports_squeue_failures(sleeps):
    runner = FakeRunner(*[(1, "", "squeue: error: Invalid user: nobody")] * 3)
    with pytest.raises(
        SlurmError, match=r"squeue failed 3 times in a row; last error: squeue failed: .*Invalid user"
    ):
        slurm.wait_until_done(["1"], poll_seconds=0, runner=runner, max_errors=3)


def test_wait_timeout(sleeps):
    runner = FakeRunner((0, "1|RUNNING|None\n", ""))
    with pytest.raises(TimeoutError, match=r"still queued after 0 s: 1"):
        slurm.wait_until_done(["1"], poll_seconds=0, timeout=0, runner=runner)


def test_login_name_is_set_when_missing(monkeypatch):
    monkeypatch.delenv("LOGNAME", raising=False)
    monkeypatch.delenv("USER", raising=False)
    slurm.ensure_login_name()
    import os

    assert os.environ["LOGNAME"] and os.environ["USER"] == os.environ["LOGNAME"]


# -- the per-node plugin: a job killed before its node finished ----------------------------------------------
@pytest.mark.parametrize(
    ("state", "words"),
    [("CANCELLED", "was cancelled (scancel"), ("TIMEOUT", "was killed at its time limit (--time)")],
)
def test_killed_job_fails_its_node_at_once_and_says_how(tmp_path, monkeypatch, state, words):
    plugin = SLURMNodePlugin(plugin_args={"sbatch_args": ""})
    plugin._config = {"execution": {"job_finished_timeout": "600"}}  # must not be waited for
    plugin._pending[7] = str(tmp_path)
    plugin._names[7] = "wf.register"
    plugin._logs[7] = "/b/slurm-7.out"
    monkeypatch.setattr(
        "smriflow.engine.slurm_plugins.job_states", lambda ids: {"7": JobState("7", state, "None")}
    )
    result = plugin._get_result(7)
    assert result["result"] is None
    (line,) = result["traceback"]
    assert line.startswith(f"SLURM job 7 of node wf.register {words}")
    assert f"(job state {state}). Job log: /b/slurm-7.out. Rerun the same command to resume." in line


def test_queue_check_is_one_squeue_for_all_jobs(tmp_path, monkeypatch):
    calls = []

    def states(ids):
        calls.append(sorted(ids))
        return {job: JobState(job, "RUNNING") for job in ids}

    monkeypatch.setattr("smriflow.engine.slurm_plugins.job_states", states)
    plugin = SLURMNodePlugin(plugin_args={})
    plugin._pending.update({1: str(tmp_path), 2: str(tmp_path), 3: str(tmp_path)})
    assert all(plugin._is_pending(task) for task in (1, 2, 3))
    assert calls == [["1", "2", "3"]]


# -- config keys -----------------------------------------------------------------------------------------
def write_config(tmp_path: Path, text: str, name: str = "exec.yml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_partition_time_account_become_sbatch_options(tmp_path):
    path = write_config(
        tmp_path,
        """\
        plugin: SLURMGraph
        single_node: true
        plugin_args: {partition: short, time: "1-02:00:00", account: lab, sbatch_args: "--qos=low --mem=8G"}
        """,
    )
    args = load_exec_config(path).plugin_args
    expected = ["--partition=short", "--time=1-02:00:00", "--account=lab", "--qos=low", "--mem=8G"]
    assert args.sbatch_options() == expected
    assert shlex.split(args.nipype_args()["sbatch_args"]) == expected


def test_bad_slurm_keys_are_reported_with_positions(tmp_path):
    path = write_config(
        tmp_path,
        """\
        plugin: SLURM
        single_node: true
        plugin_args:
          time: 2h
          sbatch_args: "--array=0-3 --qos=low"
        """,
    )
    with pytest.raises(SpecError) as exc:
        load_exec_config(path)
    assert [str(problem) for problem in exc.value.problems] == [
        f"{path}:4:9: plugin_args.time: '2h' is not a SLURM time limit; use minutes ('90'), 'HH:MM:SS' or "
        "'D-HH:MM:SS'.",
        f"{path}:5:16: plugin_args.sbatch_args: --array is set by smriflow and cannot be given in "
        "sbatch_args.",
    ]


def test_array_inner_config_must_be_local(tmp_path):
    path = write_config(
        tmp_path, "plugin: SLURMArray\nsingle_node: true\nplugin_args: {inner_config: slurm}\n"
    )
    with pytest.raises(SpecError) as exc:
        load_exec_config(path)
    (problem,) = exc.value.problems
    assert str(problem) == (
        f"{path}:3:29: plugin_args.inner_config: 'slurm' uses the SLURMGraph plugin; each array task runs "
        "one subject on its own compute node, with a local plugin. Use 'local' (MultiProc) or a "
        "MultiProc/Linear config file."
    )


def test_array_refuses_tmp_work_dir_without_single_node(tmp_path):
    path = write_config(tmp_path, f"plugin: SLURMArray\nwork_dir: {tmp_path / 'work'}\n")
    with pytest.raises(SpecError, match=r"work_dir: .* is under /tmp, which is private to each machine"):
        load_exec_config(path)


# -- the array job: dry run -------------------------------------------------------------------------------
@pytest.fixture
def two_subjects(tmp_path: Path) -> Path:
    bids = tmp_path / "bids"
    for label in ("01", "02"):
        write_synthetic_t1w(bids / f"sub-{label}" / "anat" / f"sub-{label}_T1w.nii.gz", seed=int(label))
    (bids / "dataset_description.json").write_text('{"Name": "t", "BIDSVersion": "1.8.0"}')
    return bids


def test_array_dry_run_prints_the_sbatch_command_and_writes_the_script(tmp_path, two_subjects, capsys):
    config = write_config(
        tmp_path,
        """\
        plugin: SLURMArray
        single_node: true
        plugin_args:
          partition: short
          time: "00:20:00"
          max_parallel: 5
          cpus_per_task: 2
          template: "#!/bin/bash\\n#SBATCH --qos=low\\nmodule load apptainer\\n"
        """,
    )
    out, work = tmp_path / "out", tmp_path / "work"
    argv = [
        "run",
        "example",
        "--bids-dir",
        str(two_subjects),
        "--output-dir",
        str(out),
        "--work-dir",
        str(work),
    ]
    code = main([*argv, "--exec-config", str(config), "--set", "fwhm=6", "--seed", "3", "--dry-run"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    lines = printed.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("dry run: would submit 2 task(s)"))
    command = shlex.split(lines[at + 1])
    script = Path(command[-1])
    assert command[:-1] == [
        "sbatch",
        "--array=0-1%5",
        "--job-name=smriflow_example_wf",
        "--cpus-per-task=2",
        "--mem=2G",  # the largest node's 0.2 GB + 1 GB for smriflow, rounded up, at least min_mem_gb
        f"--output={out}/logs/slurm-%A_%a.out",
        "--partition=short",
        "--time=00:20:00",
    ]
    assert "  task 0: sub-01" in lines and "  task 1: sub-02" in lines
    text = script.read_text().splitlines()
    assert text[:2] == ["#!/bin/bash", "#SBATCH --qos=low"]  # #SBATCH lines stay at the top
    assert "export ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS=1" in text and "labels=(01 02)" in text
    assert text[-2] == "module load apptainer"  # the template's body precedes the command
    task = shlex.split(text[-1].replace('"$label"', "LABEL").replace('"${SLURM_CPUS_PER_TASK:-2}"', "CPUS"))
    assert task[1:3] == ["run", "example"]
    pairs = dict(zip(task[3::2], task[4::2], strict=False))
    assert pairs["--exec-config"] == "local" and pairs["--nprocs"] == "CPUS"
    assert pairs["--work-dir"] == str(work) and pairs["--participant-label"] == "LABEL"
    assert [task[i + 1] for i, word in enumerate(task) if word == "--set"] == ["fwhm=6", "seed=3"]
    assert not list((out / "logs").glob("slurm-*"))  # nothing was submitted


def test_array_refuses_too_small_jobs(tmp_path, two_subjects, capsys):
    config = write_config(
        tmp_path, "plugin: SLURMArray\nsingle_node: true\nplugin_args: {mem_gb: 0.1, min_mem_gb: 0.1}\n"
    )
    argv = ["run", "example", "--bids-dir", str(two_subjects), "--output-dir", str(tmp_path / "out")]
    code = main([*argv, "--work-dir", str(tmp_path / "work"), "--exec-config", str(config), "--dry-run"])
    assert code == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith(
        f"{config}: plugin_args cpus_per_task=1, mem_gb=0.1 are less than these nodes need:"
    )
    assert error.endswith("Raise cpus_per_task/mem_gb.")
