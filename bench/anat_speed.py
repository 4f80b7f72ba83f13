"""Bench the speed and memory of the whole ``smriflow run anat_preproc`` process, per stage and per node.

Each run is the real command in a child process, into a fresh output and work folder (nothing cached but
smriflow's once-per-machine template and atlas cache). Printed per run:

* the whole process' wall time, and its CPU time (user + system of the process and every child it waited
  for: robust to other load on the machine, which inflates wall times on a 2-core machine);
* peak memory: the largest single process' peak RSS (``os.wait4`` rusage, as ``/usr/bin/time -v`` reports
  it) and the peak of the *summed* RSS and PSS of the process tree, sampled every second from ``/proc`` (the
  RSS sum counts pages shared by MultiProc's forked workers once per worker: an upper bound; PSS splits
  them); the sampling costs the bench ~2 % of one core, which it prints;
* wall time per stage (the span from its first node's start to its last node's end; stages overlap when
  MultiProc runs them side by side) and per node, from the ``runtime`` of each node's ``result_*.pklz`` in
  the work folder; the time before the first node (start-up: imports, pybids, graph) and after the last.

Usage::

    python bench/anat_speed.py [--profile fast|precise] [--omp-nthreads 1 2] [--repeat N] [--keep DIR]
                               [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

BENCH = Path(__file__).resolve().parent
SHARED = BENCH.parent.parent / "shared" / "data"
sys.path.insert(0, str(BENCH))

from anat_accuracy import run_command  # noqa: E402

#: The issue's targets for the ``fast`` profile (issue 3).
TARGET_WALL_S = 75.0
TARGET_RSS_GB = 3.0
#: Stages of ``anat_preproc``: a node belongs to the first one whose prefix its name starts with.
STAGES = (
    ("conform", "conform"),
    ("n4", "n4"),
    ("brain_extraction", "brain_extraction_wf."),
    ("tissue_segmentation", "tissue_segmentation_wf."),
    ("spatial_normalization", "spatial_normalization_wf."),
    ("parcellation", "parcellation_wf."),
    ("cortical_thickness", "cortical_thickness_wf."),
    ("qc", "qc_wf."),
    ("report", "report_figures"),
    ("report", "report_late_figures"),
    ("report", "report"),
    ("derivatives (sinks)", "ds_"),
    ("derivatives (sinks)", "derivatives_barrier"),
    ("other nodes (runs, lesion, denoise)", ""),  # and the T2w/FLAIR ones
)


class TreeMemorySampler(threading.Thread):
    """Sample the summed RSS and PSS (bytes) of a process and its descendants from ``/proc``."""

    def __init__(self, root_pid: int, interval: float = 1.0):
        super().__init__(daemon=True)
        self.root_pid, self.interval = root_pid, interval
        self.peak_rss = self.peak_pss = 0
        self.peak_processes = 0
        self._halt = threading.Event()

    def _tree(self) -> list[int]:
        """The root and its descendants, from ``/proc/<pid>/task/<tid>/children`` (no scan of /proc)."""
        todo, seen = [self.root_pid], []
        while todo:
            pid = todo.pop()
            seen.append(pid)
            try:
                tasks = os.listdir(f"/proc/{pid}/task")
            except OSError:
                continue
            for tid in tasks:
                try:
                    with open(f"/proc/{pid}/task/{tid}/children") as children:
                        todo.extend(int(child) for child in children.read().split())
                except OSError:
                    continue
        return seen

    @staticmethod
    def _memory(pid: int) -> tuple[int, int]:
        rss = pss = 0
        try:
            with open(f"/proc/{pid}/smaps_rollup") as rollup:
                for line in rollup:
                    if line.startswith("Rss:"):
                        rss = int(line.split()[1]) * 1024
                    elif line.startswith("Pss:"):
                        pss = int(line.split()[1]) * 1024
        except OSError:
            pass
        return rss, pss

    def run(self) -> None:
        while not self._halt.is_set():
            tree = self._tree()
            totals = [self._memory(pid) for pid in tree]
            self.peak_rss = max(self.peak_rss, sum(r for r, _ in totals))
            self.peak_pss = max(self.peak_pss, sum(p for _, p in totals))
            self.peak_processes = max(self.peak_processes, len(tree))
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join()


def _epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


def node_times(work_dir: Path) -> list[dict]:
    """Name, start, end and duration of every node that ran, from the ``result_*.pklz`` files.

    A MapNode's own result holds a list of runtimes; its items (``mapflow/_<name><i>``) are read instead.
    Names are relative to the subject's workflow (``anat_preproc_wf.`` removed; sinks keep ``ds_…``);
    ``subject`` is the label of the ``sub_<label>_wf`` folder the node ran in ("" outside one).
    """
    from nipype.utils.filemanip import loadpkl

    rows = []
    for path in sorted(work_dir.rglob("result_*.pklz")):
        result = loadpkl(path)
        runtime = getattr(result, "runtime", None)
        if runtime is None or isinstance(runtime, list) or not getattr(runtime, "startTime", None):
            continue
        parts = list(path.parent.relative_to(work_dir).parts)
        if "mapflow" in parts:  # .../warp_atlas/mapflow/_warp_atlas0 -> warp_atlas[0]
            i = parts.index("mapflow")
            parent, item = parts[i - 1], parts[i + 1]
            parts = parts[: i - 1] + [f"{parent}[{item.removeprefix('_' + parent)}]"]
        subject = next((p[4:-3] for p in parts if p.startswith("sub_") and p.endswith("_wf")), "")
        parts = [p for p in parts if p != "smriflow_wf" and not (p.startswith("sub_") and p.endswith("_wf"))]
        name = ".".join(parts).removeprefix("anat_preproc_wf.")
        start, end = _epoch(runtime.startTime), _epoch(runtime.endTime)
        duration = float(runtime.duration)
        rows.append({"node": name, "subject": subject, "start": start, "end": end, "duration": duration})
    return sorted(rows, key=lambda row: row["start"])


def stage_of(node: str) -> str:
    for stage, prefix in STAGES:
        if node == prefix or (prefix.endswith((".", "_")) and node.startswith(prefix)):
            return stage
    return STAGES[-1][0]


def run_once(args: argparse.Namespace, omp: int, folder: Path) -> dict:
    """One ``smriflow run`` in ``folder``; its times and memory."""
    cmd = run_command(
        args.bids_dir,
        folder / "out",
        folder / "work",
        profile=args.profile,
        omp_nthreads=omp,
        participant=args.participant_label,
    )
    log = folder / "smriflow.out"
    load_before = os.getloadavg()[0]
    own = resource.getrusage(resource.RUSAGE_SELF)
    with open(log, "w") as stdout:
        start = time.time()
        proc = subprocess.Popen(cmd, stdout=stdout, stderr=subprocess.STDOUT)
        sampler = TreeMemorySampler(proc.pid)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        end = time.time()
        sampler.stop()
    mine = resource.getrusage(resource.RUSAGE_SELF)
    bench_cpu = (mine.ru_utime + mine.ru_stime) - (own.ru_utime + own.ru_stime)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.stderr.write(log.read_text())
        raise RuntimeError(f"smriflow run failed (exit code {proc.returncode}); see {log}")
    nodes = node_times(folder / "work")
    stages = {}
    for stage in dict.fromkeys(stage for stage, _ in STAGES):
        mine = [row for row in nodes if stage_of(row["node"]) == stage]
        if mine:
            stages[stage] = {
                "span": max(r["end"] for r in mine) - min(r["start"] for r in mine),
                "node_sum": sum(r["duration"] for r in mine),
                "nodes": len(mine),
            }
    return {
        "omp_nthreads": omp,
        "wall": end - start,
        "cpu": usage.ru_utime + usage.ru_stime,
        "peak_rss_gb": usage.ru_maxrss / 1024**2,  # KiB on Linux
        "tree_rss_gb": sampler.peak_rss / 1024**3,
        "tree_pss_gb": sampler.peak_pss / 1024**3,
        "processes": sampler.peak_processes,
        "bench_cpu": bench_cpu,
        "startup": (nodes[0]["start"] - start) if nodes else float("nan"),
        "teardown": (end - max(r["end"] for r in nodes)) if nodes else float("nan"),
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
        "stages": stages,
        "nodes": [{**row, "start": row["start"] - start, "end": row["end"] - start} for row in nodes],
    }


def print_run(run: dict, verbose: bool) -> None:
    print(
        f"  whole process {run['wall']:6.1f} s wall, {run['cpu']:6.1f} s CPU; "
        f"peak RSS {run['peak_rss_gb']:.2f} GB (largest process)\n"
        f"  process tree: peak summed RSS {run['tree_rss_gb']:.2f} GB, PSS {run['tree_pss_gb']:.2f} GB "
        f"({run['processes']} processes); load average {run['load_before']:.1f} -> {run['load_after']:.1f}; "
        f"sampling cost {run['bench_cpu']:.1f} s CPU"
    )
    print(f"    {'start-up (imports, pybids, graph)':<36} {run['startup']:6.1f} s")
    for stage, figures in run["stages"].items():
        print(
            f"    {stage:<36} {figures['span']:6.1f} s span  ({figures['nodes']} node(s), "
            f"{figures['node_sum']:.1f} s summed)"
        )
    print(f"    {'after the last node (summary, exit)':<36} {run['teardown']:6.1f} s")
    if verbose:
        for row in run["nodes"]:
            span = f"{row['start']:6.1f} -> {row['end']:6.1f} s"
            print(f"      {span}  {row['duration']:6.1f} s  {row['node']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bids-dir", type=Path, default=SHARED / "bids")
    parser.add_argument("--participant-label", default="0002")
    parser.add_argument("--profile", choices=("fast", "precise"), default="fast")
    parser.add_argument(
        "--omp-nthreads", type=int, nargs="+", default=[1, 2], help="thread counts to measure (each in turn)"
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs per thread count")
    parser.add_argument("--nodes", action="store_true", help="also print every node's start, end and time")
    parser.add_argument("--keep", type=Path, default=None, help="keep the runs' folders under this folder")
    parser.add_argument("--json", type=Path, default=None, help="also write every figure to this JSON file")
    args = parser.parse_args(argv)

    print(
        f"smriflow run anat_preproc on {args.bids_dir} (sub-{args.participant_label}), "
        f"profile {args.profile}, {os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d %H:%M')}"
    )
    root = args.keep or Path(tempfile.mkdtemp(prefix="anat_speed_"))
    runs: list[dict] = []
    for omp in args.omp_nthreads:
        for index in range(args.repeat):
            folder = root / f"omp{omp}_run{index + 1}"
            folder.mkdir(parents=True, exist_ok=False)
            print(f"\n--omp-nthreads {omp}, run {index + 1}/{args.repeat}  ({folder})", flush=True)
            run = run_once(args, omp, folder)
            print_run(run, args.nodes)
            runs.append(run)
            if args.keep is None:
                shutil.rmtree(folder, ignore_errors=True)

    fast = args.profile == "fast"
    print("\nsummary (median wall / CPU, max peak memory over the repeats)")
    if fast:
        print(
            f"  targets (fast profile): wall <= {TARGET_WALL_S:.0f} s, peak memory <= {TARGET_RSS_GB:.0f} GB"
        )
    ok = True
    for omp in args.omp_nthreads:
        mine = [run for run in runs if run["omp_nthreads"] == omp]
        wall = statistics.median(run["wall"] for run in mine)
        cpu = statistics.median(run["cpu"] for run in mine)
        rss = max(run["peak_rss_gb"] for run in mine)
        tree = max(run["tree_pss_gb"] for run in mine)
        walls = ", ".join(f"{run['wall']:.1f}" for run in mine)
        meets = wall <= TARGET_WALL_S and tree <= TARGET_RSS_GB and rss <= TARGET_RSS_GB
        ok &= meets or not fast
        verdict = ("ok" if meets else "MISSED") if fast else ""
        print(
            f"  omp {omp}: wall {wall:5.1f} s, CPU {cpu:5.1f} s, peak RSS {rss:.2f} GB, "
            f"tree PSS {tree:.2f} GB  {verdict}  [runs: {walls} s]"
        )
    if args.json:
        args.json.write_text(json.dumps({"profile": args.profile, "runs": runs}, indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
