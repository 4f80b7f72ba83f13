"""``smriflow run anat_preproc`` on a live SLURM cluster, in each mode, against the local run.

The cohort: sub-01 and sub-02 (two copies of the 3 mm shared T1w) and sub-03 (not an image: its first node
fails). The local run (MultiProc) is the reference; every SLURM mode must write byte-identical derivatives
(``dataset_description.json`` records the execution config, and is left out). One xdist group, so that the
tests do not fight for the cluster's CPUs; about five minutes on 2 cores.

- ``slurm`` (SLURMGraph): the failing node is reported with its crash file, its dependents are cancelled,
  not left pending, and the other subjects finish.
- ``slurm-node`` (SLURM): ``scancel`` of a running job is reported as such; rerunning the same command
  resumes (the finished nodes are not submitted again) and completes.
- ``slurm-array`` (SLURMArray): one array task per subject; the failing subject fails alone.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import _anat_data
import pytest
from _slurm_cluster import slurm_cluster  # noqa: F401 (a fixture)

pytestmark = [
    pytest.mark.slurm,
    pytest.mark.slow,
    pytest.mark.shared,
    pytest.mark.ants,
    pytest.mark.xdist_group("slurm"),
    pytest.mark.usefixtures("slurm_cluster"),
]

CONFIGS = {
    "local": "plugin: MultiProc\n",
    "slurm": "plugin: SLURMGraph\nsingle_node: true\nplugin_args: {poll_sleep_duration: 1, time: '30'}\n",
    "slurm-node": "plugin: SLURM\nsingle_node: true\nplugin_args: {poll_sleep_duration: 0.5}\n",
    "slurm-array": "plugin: SLURMArray\nsingle_node: true\nplugin_args: {poll_sleep_duration: 1}\n",
}


@pytest.fixture(scope="module")
def cohort(shared_data, tmp_path_factory) -> SimpleNamespace:
    root = tmp_path_factory.mktemp("slurm_live")
    bids = root / "bids"
    first = None
    for label in ("01", "02"):
        anat = bids / f"sub-{label}" / "anat"
        anat.mkdir(parents=True)
        target = anat / f"sub-{label}_T1w.nii.gz"
        if first is None:
            Path(_anat_data.t1w_3mm(shared_data, anat)).rename(target)
            first = target
        else:
            target.write_bytes(first.read_bytes())
    corrupt = bids / "sub-03" / "anat"
    corrupt.mkdir(parents=True)
    (corrupt / "sub-03_T1w.nii.gz").write_bytes(b"not an image")
    (bids / "dataset_description.json").write_text('{"Name": "slurm", "BIDSVersion": "1.8.0"}')
    for name, text in CONFIGS.items():
        (root / f"{name}.yml").write_text(text)
    return SimpleNamespace(root=root, bids=bids)


def command(cohort: SimpleNamespace, mode: str, *extra: str) -> list[str]:
    cmd = [sys.executable, "-c", "import sys; from smriflow.cli.main import main; sys.exit(main())"]
    cmd += ["run", "anat_preproc", "--bids-dir", str(cohort.bids)]
    cmd += ["--output-dir", str(cohort.root / f"out-{mode}"), "--work-dir", str(cohort.root / f"work-{mode}")]
    return cmd + ["--exec-config", str(cohort.root / f"{mode}.yml"), *extra]


def env() -> dict[str, str]:
    environment = {**os.environ, "PYTHONHASHSEED": "0"}
    environment.pop("LOGNAME", None)  # as on CI machines: smriflow must cope
    return environment


def smriflow_run(cohort: SimpleNamespace, mode: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        command(cohort, mode, *extra), capture_output=True, text=True, env=env(), timeout=900
    )


def derivatives(folder: Path) -> dict[str, bytes]:
    """Every file the run wrote, but its logs and dataset_description.json (which names the config)."""
    return {
        path.relative_to(folder).as_posix(): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
        and path.relative_to(folder).parts[0] != "logs"
        and path.name != "dataset_description.json"
    }


def assert_same_as_local(cohort: SimpleNamespace, mode: str, reference: dict[str, bytes]) -> None:
    mine = derivatives(cohort.root / f"out-{mode}")
    assert sorted(mine) == sorted(reference)
    assert [name for name in reference if mine[name] != reference[name]] == []


def our_active_jobs() -> list[str]:
    done = subprocess.run(["squeue", "-h", "-o", "%i %j %T"], capture_output=True, text=True, check=True)
    return done.stdout.splitlines()


@pytest.fixture(scope="module")
def local_reference(cohort) -> dict[str, bytes]:
    done = smriflow_run(cohort, "local")
    assert done.returncode == 1, done.stdout + done.stderr  # sub-03 fails
    assert re.search(r"sub-01\s+done", done.stdout) and re.search(r"sub-02\s+done", done.stdout), done.stdout
    reference = derivatives(cohort.root / "out-local")
    assert any(name.startswith("sub-01/anat/") for name in reference)
    assert any(name.startswith("sub-02/anat/") for name in reference)
    assert not any(name.startswith("sub-03") for name in reference)
    return reference


def test_slurm_graph_reports_the_failed_node_and_cancels_its_dependents(cohort, local_reference):
    done = smriflow_run(cohort, "slurm")
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert re.search(r"sub-01\s+done\s+(\d+)/\1\s", done.stdout), out
    assert re.search(r"sub-02\s+done\s+(\d+)/\1\s", done.stdout), out
    # one node done: t1w_runs passes the single run through, conform refuses it
    assert re.search(r"sub-03\s+failed\s+1/\d+\s+sub_03_wf\.anat_preproc_wf\.conform", done.stdout), out
    assert "sub-03: node sub_03_wf.anat_preproc_wf.conform failed: ValueError:" in done.stdout
    crash = Path(re.search(r"crash file: (\S+crash-\S+\.txt)", done.stdout).group(1))
    assert crash.read_text().startswith("Node: smriflow_wf.sub_03_wf.anat_preproc_wf.conform\n")
    # The dependents of the failed node were cancelled by SLURM, not left pending; nothing of ours is queued.
    jobs = json.loads((cohort.root / "work-slurm" / "smriflow_wf" / "batch" / "jobs.json").read_text())
    before = ("conform", "t1w_runs")  # the failed node, and the one it ran after
    after = [
        job["job_id"] for job in jobs if ".sub_03_wf." in job["node"] and not job["node"].endswith(before)
    ]
    assert after
    states = subprocess.run(
        ["squeue", "-h", "-t", "all", "-j", ",".join(after), "-o", "%T %r"], capture_output=True, text=True
    ).stdout.split("\n")
    assert {line for line in states if line} == {"CANCELLED DependencyNeverSatisfied"}
    assert not [line for line in our_active_jobs() if line.split()[0] in {job["job_id"] for job in jobs}]
    assert_same_as_local(cohort, "slurm", local_reference)


def wait_for_running(name_part: str, timeout: float = 300) -> str:
    """The id of the first running job whose name contains ``name_part``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in our_active_jobs():
            job_id, name, state = line.split()
            if name_part in name and state == "RUNNING":
                return job_id
        time.sleep(0.3)
    raise AssertionError(f"no running job named *{name_part}* within {timeout} s: {our_active_jobs()}")


def test_slurm_node_scancel_is_reported_then_rerun_resumes(cohort, local_reference):
    labels = ["--participant-label", "01", "02"]
    process = subprocess.Popen(
        command(cohort, "slurm-node", *labels),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env(),
    )
    try:
        # Jobs are named <node>.<workflows, innermost first>.<user>: cancel sub-01's warping of its tissue
        # maps while it runs (a late, short node: the rerun has little to redo).
        job = wait_for_running("warp_tpms.spatial_normalization_wf.anat_preproc_wf.sub_01_wf")
        subprocess.run(["scancel", job], check=True)
        stdout, stderr = process.communicate(timeout=900)
    finally:
        process.kill()
    assert process.returncode == 1, stdout + stderr
    assert re.search(r"sub-02\s+done\s+(\d+)/\1\s", stdout), stdout  # the other subject went on
    assert re.search(r"sub-01\s+failed\s", stdout), stdout
    warp = "sub_01_wf.anat_preproc_wf.spatial_normalization_wf.warp_tpms"
    assert (
        f"sub-01: node {warp} failed: SLURM job {job} of node smriflow_wf.{warp} was cancelled "
        "(scancel, or by an administrator) before the node finished (job state CANCELLED)"
    ) in stdout

    batch = cohort.root / "work-slurm-node" / "smriflow_wf" / "batch"
    before = set(batch.glob("batchscript_*.sh"))
    rerun = smriflow_run(cohort, "slurm-node", *labels)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    # Only the cancelled node and what needs it ran again (the derivative sinks always run).
    resubmitted = {path.name for path in set(batch.glob("batchscript_*.sh")) - before}
    computed = [name for name in resubmitted if ".anat_preproc_wf" in name]
    assert any(name.endswith("spatial_normalization_wf_warp_tpms.sh") for name in computed), resubmitted
    assert not [name for name in computed if "sub_02_wf" in name], resubmitted
    for upstream in ("_conform.sh", "_n4.sh", "_register.sh", "brain_extraction_wf_brain.sh"):
        assert not [name for name in computed if name.endswith(upstream)], resubmitted
    reference = {name: data for name, data in local_reference.items() if not name.startswith("sub-03")}
    assert_same_as_local(cohort, "slurm-node", reference)


def test_slurm_array_one_task_per_subject(cohort, local_reference):
    done = smriflow_run(cohort, "slurm-array")
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    job = re.search(r"submitted array job (\d+): 3 task\(s\), one per subject", done.stdout).group(1)
    assert re.search(r"sub-01\s+done\s", done.stdout) and re.search(r"sub-02\s+done\s", done.stdout), out
    assert re.search(r"sub-03\s+failed\s+\S+\s+sub_03_wf\.anat_preproc_wf\.conform", done.stdout), out
    assert "sub-03: node sub_03_wf.anat_preproc_wf.conform failed: ValueError:" in done.stdout
    # each task logged its own smriflow run, for its own subject
    for index, label in enumerate(("01", "02", "03")):
        log = (cohort.root / "out-slurm-array" / "logs" / f"slurm-{job}_{index}.out").read_text()
        assert f"smriflow: sub-{label}, array task {job}_{index}" in log
        assert "on 1 subject(s) [MultiProc]" in log
    assert_same_as_local(cohort, "slurm-array", local_reference)
