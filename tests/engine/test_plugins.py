"""run_workflow: local plugins, failure reports, the thread policy, and SLURM through a fake sbatch."""

from __future__ import annotations

import importlib.util
import json
import multiprocessing
import os
import sys
import textwrap
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import nipype.pipeline.engine as pe
import pytest
from nipype import config as nipype_config
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    CommandLine,
    File,
    SimpleInterface,
    TraitedSpec,
    traits,
)
from nipype.interfaces.utility import Select

from smriflow.config.execution import load_exec_config, override
from smriflow.engine import plugins
from smriflow.engine.plugins import (
    job_template,
    node_sbatch_args,
    read_crash_file,
    run_workflow,
)
from smriflow.utils.threads import THREAD_VARIABLES


# -- test interfaces (module level, so MultiProc workers can unpickle them) ----------------------------------
class _AddOneInputSpec(BaseInterfaceInputSpec):
    value = traits.Int(mandatory=True, desc="a number; negative numbers make the node fail")


class _AddOneOutputSpec(TraitedSpec):
    value = traits.Int(desc="value + 1")
    out_file = File(exists=True, desc="text file holding value + 1")


class AddOne(SimpleInterface):
    """Add one and write the result to a file; fail on negative input."""

    input_spec, output_spec = _AddOneInputSpec, _AddOneOutputSpec

    def _run_interface(self, runtime):
        if self.inputs.value < 0:
            raise ValueError(f"'value' must not be negative. {self.inputs.value} was provided.")
        out_file = Path(runtime.cwd) / "value.txt"
        out_file.write_text(str(self.inputs.value + 1))
        self._results.update(value=self.inputs.value + 1, out_file=str(out_file))
        return runtime


class _ThreadProbeOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="JSON: thread count after one ITK filter, and the thread variables")


class ThreadProbe(SimpleInterface):
    """Run one ANTsPy filter in this process and record how many threads the process then has."""

    input_spec, output_spec = BaseInterfaceInputSpec, _ThreadProbeOutputSpec

    def _run_interface(self, runtime):
        import ants
        import numpy as np

        image = ants.from_numpy(np.random.default_rng(0).random((24, 24, 24)).astype("float32"))
        ants.smooth_image(image, 1.0)
        record = {
            "threads": len(os.listdir("/proc/self/task")),
            "env": {var: os.environ.get(var) for var in THREAD_VARIABLES},
        }
        out_file = Path(runtime.cwd) / "threads.json"
        out_file.write_text(json.dumps(record))
        self._results["out_file"] = str(out_file)
        return runtime


class _FreezeProbeOutputSpec(TraitedSpec):
    frozen = traits.Int(desc="objects in gc's permanent generation while the node runs")


class FreezeProbe(SimpleInterface):
    """Record how many objects garbage collection leaves alone while this node runs."""

    input_spec, output_spec = BaseInterfaceInputSpec, _FreezeProbeOutputSpec

    def _run_interface(self, runtime):
        import gc

        self._results["frozen"] = gc.get_freeze_count()
        return runtime


def chain_workflow(name: str = "wf", *, fail: bool = False) -> pe.Workflow:
    """first (1 → 2) → second (2 → 3), plus bad (-1, fails) → after_bad when ``fail``."""
    wf = pe.Workflow(name=name)
    first = pe.Node(AddOne(value=1), name="first")
    second = pe.Node(AddOne(), name="second")
    wf.connect(first, "value", second, "value")
    if fail:
        bad = pe.Node(AddOne(value=-1), name="bad")
        after_bad = pe.Node(AddOne(), name="after_bad")
        wf.connect(bad, "value", after_bad, "value")
    return wf


def local_config(name: str, work_dir: Path, **values):
    return override(load_exec_config(name), work_dir=work_dir, **values)


def with_values(config, section: str, **values):
    """A copy of ``config`` with keys of one section (``plugin_args``, ``nipype``) replaced."""
    data = config.model_dump()
    data[section].update(values)
    return type(config).model_validate(data)


# -- local plugins -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["local", "linear"])
def test_run_chain_and_report(tmp_path, name):
    wf = chain_workflow()
    wf.config["execution"]["poll_sleep_duration"] = "7"  # the run's value must win, then this comes back
    events = []
    global_before = nipype_config.get("execution", "crashdump_dir")

    report = run_workflow(
        wf, local_config(name, tmp_path), status_callback=lambda n, s: events.append((n.name, s))
    )

    assert (tmp_path / "wf" / "second" / "value.txt").read_text() == "3"
    assert report.ok and report.error is None
    assert (report.nodes_done, report.failed, report.not_run) == (2, [], [])
    assert report.plugin == ("MultiProc" if name == "local" else "Linear")
    assert report.work_dir == tmp_path and report.crashdump_dir == tmp_path / "crash"
    assert report.wall_time > 0
    assert ("first", "start") in events and ("second", "end") in events
    # Nothing leaks: the workflow's own settings and nipype's global config are as before.
    assert wf.config["execution"]["poll_sleep_duration"] == "7"
    assert wf.base_dir is None
    assert nipype_config.get("execution", "crashdump_dir") == global_before
    assert "2 node(s) done, 0 failed" in report.summary()


@pytest.mark.parametrize("name", ["local", "linear"])
def test_failed_node_is_reported_with_its_crash_file(tmp_path, name):
    events = []
    config = with_values(local_config(name, tmp_path), "nipype", stop_on_first_crash=False)
    report = run_workflow(
        chain_workflow(fail=True), config, status_callback=lambda n, s: events.append((n.name, s))
    )
    assert not report.ok
    assert [node.name for node in report.failed] == ["wf.bad"]
    failed = report.failed[0]
    assert failed.crash_file.is_file() and failed.crash_file.parent == tmp_path / "crash"
    assert failed.output_dir == tmp_path / "wf" / "bad"
    text = failed.crash_file.read_text()
    assert text.startswith("Node: wf.bad\n") and "'value' must not be negative" in text
    assert ("bad", "exception") in events
    assert report.error is not None  # nipype's exception, kept for --debug
    # The independent branch ran; the dependent of the failed node did not.
    assert report.nodes_done == 2
    assert (tmp_path / "wf" / "second" / "value.txt").read_text() == "3"
    assert not (tmp_path / "wf" / "after_bad").exists()
    assert report.not_run == ([] if name == "local" else ["wf.after_bad"])  # MultiProc does not tell
    assert "failed: wf.bad (crash file: " in report.summary()


def test_crash_files_of_other_runs_are_not_reported(tmp_path):
    (tmp_path / "crash").mkdir()
    foreign = tmp_path / "crash" / "crash-other.txt"

    def other_run_crashes(node, status):  # another workflow sharing the crash folder, during this run
        if status == "start" and not foreign.exists():
            foreign.write_text(f"Node: other_wf.x\nWorking directory: {tmp_path / 'other_wf' / 'x'}\n")

    report = run_workflow(
        chain_workflow(fail=True), local_config("local", tmp_path), status_callback=other_run_crashes
    )
    assert foreign.exists()
    assert [node.name for node in report.failed] == ["wf.bad"]


def test_stop_on_first_crash_still_reports(tmp_path):
    config = with_values(local_config("local", tmp_path, n_procs=1), "nipype", stop_on_first_crash=True)
    wf = chain_workflow(fail=True)
    report = run_workflow(wf, config)
    assert [node.name for node in report.failed] == ["wf.bad"]
    assert report.failed[0].crash_file.is_file()
    assert isinstance(report.error, RuntimeError)


def test_pklz_crash_files_are_read(tmp_path):
    config = with_values(local_config("local", tmp_path), "nipype", crashfile_format="pklz")
    report = run_workflow(chain_workflow(fail=True), config)
    (failed,) = report.failed
    assert failed.crash_file.suffix == ".pklz"
    assert read_crash_file(failed.crash_file) == ("wf.bad", tmp_path / "wf" / "bad")


def test_unreadable_crash_file_is_still_listed(tmp_path):
    (tmp_path / "crash-x.pklz").write_bytes(b"not a pickle")
    (tmp_path / "crash-y.txt").write_text("something else\n")
    assert read_crash_file(tmp_path / "crash-x.pklz") == ("crash-x.pklz", None)
    assert read_crash_file(tmp_path / "crash-y.txt") == ("crash-y.txt", None)


def test_errors_that_are_not_node_failures_are_raised(tmp_path, monkeypatch):
    from nipype.pipeline.plugins import MultiProcPlugin

    def broken_run(self, graph, config, updatehash=False):
        raise RuntimeError("plugin bug")

    monkeypatch.setattr(MultiProcPlugin, "run", broken_run)
    wf = chain_workflow()
    with pytest.raises(RuntimeError, match="plugin bug"):
        run_workflow(wf, local_config("local", tmp_path))
    assert wf.base_dir is None  # restored on the way out too


def test_nodes_too_big_for_multiproc_are_named(tmp_path):
    wf = chain_workflow()
    wf.get_node("second").n_procs = 64
    with pytest.raises(ValueError, match=r"wf\.second \(n_procs=64, mem_gb=0\.2\)\. Raise n_procs/memory_gb"):
        run_workflow(wf, local_config("local", tmp_path, n_procs=2))


def test_omp_nthreads_is_checked_against_n_procs(tmp_path):
    with pytest.raises(ValueError, match=r"'omp_nthreads' \(3\) must not exceed MultiProc's n_procs \(2\)"):
        run_workflow(chain_workflow(), local_config("local", tmp_path, n_procs=2), omp_nthreads=3)
    with pytest.raises(ValueError, match="'omp_nthreads' must be at least 1. 0 was provided."):
        run_workflow(chain_workflow(), local_config("local", tmp_path), omp_nthreads=0)


# -- thread policy -------------------------------------------------------------------------------------------
def _worker_threads(tmp_path: Path, omp_nthreads: int) -> dict:
    wf = pe.Workflow(name=f"threads{omp_nthreads}")
    wf.add_nodes([pe.Node(ThreadProbe(), name="probe")])
    report = run_workflow(wf, local_config("local", tmp_path, n_procs=4), omp_nthreads=omp_nthreads)
    assert report.ok, report.summary()
    return json.loads((tmp_path / wf.name / "probe" / "threads.json").read_text())


@pytest.mark.slow  # ~10 s: two runs, each importing antspyx in a fresh worker
@pytest.mark.ants
@pytest.mark.skipif(importlib.util.find_spec("ants") is None, reason="antspyx is not installed")
def test_the_heap_is_frozen_while_a_workflow_runs_and_thawed_after(tmp_path):
    """MultiProc's gc.collect() on every scheduling round must not scan the workflow's own objects."""
    import gc

    assert gc.get_freeze_count() == 0
    wf = pe.Workflow(name="wf")
    wf.add_nodes([pe.Node(FreezeProbe(), name="probe")])
    report = run_workflow(wf, local_config("linear", tmp_path))  # Linear: the node runs in this process
    assert report.ok
    from nipype.utils.filemanip import loadpkl

    result = loadpkl(tmp_path / "wf" / "probe" / "result_probe.pklz")
    assert result.outputs.frozen > 10_000  # the imports, the workflow and its graph
    assert gc.get_freeze_count() == 0


def test_thread_policy_reaches_multiproc_workers(tmp_path):
    # ants must be imported only in the workers: ITK would keep the thread pool of the first import otherwise.
    # This pytest process may have imported it for an earlier test: each run starts in a fresh interpreter.
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=spawn, max_tasks_per_child=1) as pool:
        one = pool.submit(_worker_threads, tmp_path, 1).result()
    with ProcessPoolExecutor(max_workers=1, mp_context=spawn, max_tasks_per_child=1) as pool:
        three = pool.submit(_worker_threads, tmp_path, 3).result()
    assert set(one["env"].values()) == {"1"} and set(three["env"].values()) == {"3"}
    # Measured in a forked MultiProc worker: 1 + n threads after one ITK filter (2 for n=1, 4 for n=3). BLAS
    # was loaded by the parent before the fork, so only ITK's pool follows the variables: exactly 2 more.
    assert three["threads"] - one["threads"] == 2


def test_job_template_exports_after_sbatch_lines():
    header = "#!/bin/bash\n#SBATCH --qos=low\n\nmodule load apptainer\napptainer exec img.sif \\\n"
    lines = job_template(header, 4).splitlines()
    assert lines[:3] == ["#!/bin/bash", "#SBATCH --qos=low", ""]
    assert lines[4:9] == [f"export {var}=4" for var in THREAD_VARIABLES]
    assert lines[9:] == ["module load apptainer", "apptainer exec img.sif \\"]
    assert job_template("", 1).startswith("#!/bin/bash\n# smriflow thread policy")


# -- SLURM resources -----------------------------------------------------------------------------------------
def test_node_sbatch_args():
    assert node_sbatch_args(2, 3) == "--cpus-per-task=2 --mem=3G"
    assert node_sbatch_args(1, 0.2) == "--cpus-per-task=1 --mem=1G"  # raised to min_mem_gb
    assert node_sbatch_args(1, 0.2, min_mem_gb=0.1) == "--cpus-per-task=1 --mem=205M"
    assert node_sbatch_args(4, 2.5) == "--cpus-per-task=4 --mem=2560M"


def test_resources_merge_with_node_plugin_args_and_are_restored():
    wf = pe.Workflow(name="wf")
    first = pe.Node(AddOne(value=1), name="first")
    second = pe.Node(AddOne(), name="second", n_procs=2, mem_gb=3)
    wf.connect(first, "value", second, "value")
    first.plugin_args = {"sbatch_args": "--gres=gpu:1 --mem=16G"}
    saved = plugins._apply_sbatch_resources(wf, min_mem_gb=1.0)
    # The node's own --mem wins; SLURMGraph concatenates without a space, hence the leading one.
    assert first.plugin_args == {
        "sbatch_args": " --gres=gpu:1 --mem=16G --cpus-per-task=1",
        "overwrite": False,
    }
    assert second.plugin_args == {"sbatch_args": " --cpus-per-task=2 --mem=3G", "overwrite": False}
    for node, previous in saved:
        node.plugin_args = previous
    assert first.plugin_args == {"sbatch_args": "--gres=gpu:1 --mem=16G"} and second.plugin_args == {}


FAKE_SBATCH = """\
#!{python}
# A synchronous stand-in for sbatch: log the call, run the job script, print the job id.
import os, re, subprocess, sys
state = os.environ["FAKE_SLURM_DIR"]
args = sys.argv[1:]
with open(os.path.join(state, "sbatch.log"), "a") as log:
    log.write(" ".join(args) + "\\n")
counter = os.path.join(state, "last_id")
job = int(open(counter).read()) + 1 if os.path.exists(counter) else 1
open(counter, "w").write(str(job))
failed_file = os.path.join(state, "failed")
failed = open(failed_file).read().split() if os.path.exists(failed_file) else []
deps = re.search(r"--dependency=afterok:(\\S+)", " ".join(args))
if deps and set(deps.group(1).split(":")) & set(failed):
    failed.append(str(job))  # never runs (kill_invalid_depend)
else:
    # Like --export=NONE: the job sees only what its script exports.
    env = {{key: os.environ[key] for key in ("PATH", "HOME", "LOGNAME") if key in os.environ}}
    with open(os.path.join(state, f"job-{{job}}.log"), "w") as out:
        if subprocess.call(["bash", args[-1]], stdout=out, stderr=out, env=env):
            failed.append(str(job))
open(failed_file, "w").write(" ".join(failed))
print(job if "--parsable" in args else f"Submitted batch job {{job}}")
"""


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch):
    """sbatch/squeue on PATH that run jobs at once; returns the folder with sbatch.log."""
    state, bin_dir = tmp_path / "fake_slurm", tmp_path / "bin"
    state.mkdir()
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text(FAKE_SBATCH.format(python=sys.executable))
    (bin_dir / "squeue").write_text("#!/bin/sh\nexit 0\n")  # every job has left the queue
    for tool in ("sbatch", "squeue"):
        (bin_dir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SLURM_DIR", str(state))
    monkeypatch.delenv("LOGNAME", raising=False)  # nipype's SLURM plugin needs it: run_workflow sets it
    return state


def slurm_config(tmp_path: Path, plugin: str):
    text = f"""\
        plugin: {plugin}
        single_node: true
        work_dir: {tmp_path / "work"}
        plugin_args:
          sbatch_args: --partition=debug
          poll_sleep_duration: 0.1
        omp_nthreads: 3
        """
    path = tmp_path / "exec.yml"
    path.write_text(textwrap.dedent(text))
    return load_exec_config(path)


def slurm_workflow(*, fail: bool) -> pe.Workflow:
    """Only nipype interfaces: jobs are fresh processes that cannot import this test module."""
    wf = pe.Workflow(name="wf")
    env_probe = pe.Node(CommandLine("env", terminal_output="file"), name="env_probe", n_procs=2, mem_gb=3)
    pick = pe.Node(Select(inlist=[1, 2, 3], index=[0, 2]), name="pick")
    pick_again = pe.Node(Select(index=[1]), name="pick_again")
    wf.add_nodes([env_probe])
    wf.connect(pick, "out", pick_again, "inlist")
    if fail:
        broken = pe.Node(Select(inlist=[1], index=[5]), name="broken")  # IndexError when it runs
        after_broken = pe.Node(Select(index=[0]), name="after_broken")
        wf.connect(broken, "out", after_broken, "inlist")
    return wf


def sbatch_calls(state: Path) -> list[str]:
    return (state / "sbatch.log").read_text().splitlines()


def job_env(work_dir: Path) -> dict[str, str]:
    lines = (work_dir / "wf" / "env_probe" / "output.nipype").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line)


def test_slurm_jobs_request_node_resources(tmp_path, fake_slurm):
    config = slurm_config(tmp_path, "SLURM")
    report = run_workflow(slurm_workflow(fail=False), config)
    assert report.ok, report.summary()
    assert report.nodes_done == 3
    calls = sbatch_calls(fake_slurm)
    assert len(calls) == 3
    (probe_call,) = [call for call in calls if " -J env_probe." in call]
    assert "--partition=debug" in probe_call
    assert "--cpus-per-task=2 --mem=3G" in probe_call
    assert all("--cpus-per-task=1 --mem=1G" in call for call in calls if call is not probe_call)
    assert os.environ["LOGNAME"]  # set for nipype's job names
    # The job ran with only PATH/HOME/LOGNAME inherited: the thread policy came from the job script.
    env = job_env(tmp_path / "work")
    assert {var: env.get(var) for var in THREAD_VARIABLES} == dict.fromkeys(THREAD_VARIABLES, "3")


def test_slurm_failure_is_reported(tmp_path, fake_slurm):
    report = run_workflow(slurm_workflow(fail=True), slurm_config(tmp_path, "SLURM"))
    assert [node.name for node in report.failed] == ["wf.broken"]
    assert report.failed[0].crash_file.is_file()
    assert report.nodes_done == 3  # after_broken is never submitted
    assert not any(" -J after_broken." in call for call in sbatch_calls(fake_slurm))


def test_slurm_graph_waits_and_reports(tmp_path, fake_slurm):
    report = run_workflow(slurm_workflow(fail=True), slurm_config(tmp_path, "SLURMGraph"))
    assert report.waited and not report.ok
    assert (report.nodes_done, report.not_run) == (3, ["wf.after_broken"])
    (failed,) = report.failed
    assert failed.name == "wf.broken" and failed.crash_file.is_file()
    assert failed.crash_file.parent == tmp_path / "work" / "crash"
    calls = sbatch_calls(fake_slurm)
    assert len(calls) == 5
    (probe_call,) = [call for call in calls if "_env_probe " in call]  # -J j<index>_env_probe
    assert "--partition=debug" in probe_call and "--cpus-per-task=2 --mem=3G" in probe_call
    assert job_env(tmp_path / "work")["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] == "3"


def test_slurm_graph_without_wait_returns_after_submission(tmp_path, fake_slurm, monkeypatch):
    config = with_values(slurm_config(tmp_path, "SLURMGraph"), "plugin_args", wait=False)
    monkeypatch.setattr(plugins, "wait_until_done", lambda *a, **k: pytest.fail("must not wait"))
    report = run_workflow(slurm_workflow(fail=False), config)
    assert not report.waited and not report.ok
    assert "submitted to SLURM (not waited for)" in report.summary()


def test_slurm_refuses_tmp_work_dir_at_run_time(tmp_path):
    config = load_exec_config("slurm-node")  # no work_dir in the file: the workflow's base_dir is used
    wf = chain_workflow()
    wf.base_dir = str(tmp_path)
    with pytest.raises(ValueError, match=r"is under /tmp, which is private to each machine"):
        run_workflow(wf, config)


def test_slurm_array_config_is_refused_by_run_workflow(tmp_path):
    config = with_values(load_exec_config("slurm-array"), "plugin_args")
    config = type(config).model_validate({**config.model_dump(), "single_node": True, "work_dir": tmp_path})
    with pytest.raises(ValueError, match=r"runs whole subjects as array tasks of `smriflow run`"):
        run_workflow(chain_workflow(), config)
