"""The same cohort run locally (MultiProc) and in each SLURM mode: wall time, jobs, scheduler overhead.

Needs a running SLURM cluster (``bash tests/slurm/cluster.sh start`` makes a one-node one here) and the
shared data (``../shared/data``). The cohort is N copies of the shared T1w at 3 mm (as in the tests),
run with ``smriflow run anat_preproc`` (fast profile), once per mode, each from an empty work directory::

    python bench/slurm_bench.py --subjects 4             # all four modes
    python bench/slurm_bench.py --modes local slurm-array

Columns: wall time of the whole command; jobs submitted; the mean and total time jobs waited in the queue
(submit → start, from the cluster's job-completion log, 1 s resolution); the jobs' summed run time; and
the overhead, wall time minus the local run's. Every run's derivatives are compared with the local run's
(byte for byte; ``dataset_description.json`` records the work directory and is left out).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

MODES = {
    "local": "plugin: MultiProc\nplugin_args: {poll_sleep_duration: 0.1}\n",
    "slurm-array": "plugin: SLURMArray\nsingle_node: true\nplugin_args: {poll_sleep_duration: 1}\n",
    "slurm": "plugin: SLURMGraph\nsingle_node: true\nplugin_args: {poll_sleep_duration: 1}\n",
    "slurm-node": "plugin: SLURM\nsingle_node: true\nplugin_args: {poll_sleep_duration: 1}\n",
}


def make_cohort(root: Path, subjects: int, shared: Path) -> Path:
    import json

    import _anat_data

    bids = root / "bids"
    if bids.is_dir():
        shutil.rmtree(bids)
    first = None
    for index in range(1, subjects + 1):
        anat = bids / f"sub-{index:02d}" / "anat"
        anat.mkdir(parents=True)
        target = anat / f"sub-{index:02d}_T1w.nii.gz"
        if first is None:
            Path(_anat_data.t1w_3mm(shared, anat)).rename(target)
            first = target
        else:
            shutil.copyfile(first, target)
    (bids / "dataset_description.json").write_text(json.dumps({"Name": "bench", "BIDSVersion": "1.8.0"}))
    return bids


def jobcomp_lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.is_file() else []


def _time(fields: dict[str, str], key: str) -> dt.datetime:
    return dt.datetime.fromisoformat(fields[key])


def job_figures(lines: list[str]) -> tuple[int, float, float, float]:
    """Jobs, mean and total queue wait (s), summed run time (s), from jobcomp/filetxt lines."""
    waits, runs = [], []
    for line in lines:
        fields = dict(re.findall(r"(\w+)=(\S*)", line))
        if "SubmitTime" in fields and "StartTime" in fields:
            waits.append((_time(fields, "StartTime") - _time(fields, "SubmitTime")).total_seconds())
            runs.append((_time(fields, "EndTime") - _time(fields, "StartTime")).total_seconds())
    if not waits:
        return 0, 0.0, 0.0, 0.0
    return len(waits), sum(waits) / len(waits), sum(waits), sum(runs)


def derivatives(folder: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and "logs" not in path.parts and path.name != "dataset_description.json"
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=4)
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    parser.add_argument("--root", type=Path, default=Path("/tmp/smriflow-slurm-bench"))
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument(
        "--jobcomp",
        type=Path,
        default=Path(os.environ.get("SMRIFLOW_SLURM_STATE", "/tmp/smriflow-slurm")) / "log" / "jobcomp.txt",
        help="the cluster's job-completion log (tests/slurm/cluster.sh writes it there)",
    )
    options = parser.parse_args()
    options.root.mkdir(parents=True, exist_ok=True)
    bids = make_cohort(options.root, options.subjects, options.shared)
    smriflow = Path(sys.executable).parent / "smriflow"
    rows = []
    reference = None
    load = os.getloadavg()[0]
    for mode in options.modes:
        out, work = options.root / f"out-{mode}", options.root / f"work-{mode}"
        for folder in (out, work):
            shutil.rmtree(folder, ignore_errors=True)
        config = options.root / f"{mode}.yml"
        config.write_text(MODES[mode])
        before = len(jobcomp_lines(options.jobcomp))
        cmd = [str(smriflow), "run", "anat_preproc", "--bids-dir", str(bids), "--output-dir", str(out)]
        cmd += ["--work-dir", str(work), "--exec-config", str(config)]
        start = time.monotonic()
        done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONHASHSEED": "0"})
        wall = time.monotonic() - start
        time.sleep(1.5)  # the job-completion log is written as jobs end
        jobs, mean_wait, total_wait, run_sum = job_figures(jobcomp_lines(options.jobcomp)[before:])
        files = derivatives(out)
        if mode == "local":
            reference = files
        same = "n/a" if reference is None or mode == "local" else ("yes" if files == reference else "NO")
        if same == "NO":
            differ = sorted(
                name for name in set(files) | set(reference) if files.get(name) != reference.get(name)
            )
            print(f"{mode}: derivatives that differ from the local run's: {differ}", file=sys.stderr)
        status = "ok" if done.returncode == 0 else f"exit {done.returncode}"
        if done.returncode:
            print(done.stdout[-2000:], done.stderr[-2000:], sep="\n", file=sys.stderr)
        rows.append((mode, status, wall, jobs, mean_wait, total_wait, run_sum, same))
        print(f"{mode}: {status}, {wall:.1f} s", file=sys.stderr, flush=True)
    local_wall = next((row[2] for row in rows if row[0] == "local"), None)
    print(
        f"anat_preproc (fast profile), {options.subjects} subjects of the 3 mm shared T1w, "
        f"{os.cpu_count()} CPUs, one-node SLURM cluster; load average {load:.1f} at the start"
    )
    columns = ["mode", "status", "wall s", "jobs", "mean queue wait s", "total queue wait s"]
    columns += ["job run time s", "overhead vs local s", "same derivatives"]
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for mode, status, wall, jobs, mean_wait, total_wait, run_sum, same in rows:
        overhead = f"{wall - local_wall:+.1f}" if local_wall is not None and mode != "local" else "-"
        print(
            f"| {mode} | {status} | {wall:.1f} | {jobs} | {mean_wait:.2f} | {total_wait:.0f} | {run_sum:.0f} "
            f"| {overhead} | {same} |"
        )
    return 0 if all(row[1] == "ok" for row in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
