"""``smriflow demo``: synthesize a small BIDS dataset with known ground truth, process it, score the result.

The steps, each the real command a user would run:

1. :func:`smriflow.data.synth.write_dataset` writes ``DIR/bids`` (T1w images made from the template with a
   head, a random pose and deformation, a bias field, Rician noise and an age-related thinning of one region)
   and the ground truth in ``DIR/truth``;
2. ``smriflow run anat_preproc --bids-dir DIR/bids --output-dir DIR/derivatives/smriflow`` (default execution
   config);
3. ``smriflow run qc_group --output-dir DIR/derivatives/smriflow`` (group QC), when that workflow exists;
4. ``smriflow stats roi`` on the GM volumes of the Desikan-Killiany regions against age, and on their cortical
   thickness (the ``_thickness.tsv`` tables of ``anat_preproc``), when that command is installed;
5. a table of what was measured against the ground truth (brain-mask and tissue Dice, GM volumes, the age
   effect), also written to ``DIR/demo_results.json``.

Rerunning the same command reuses the dataset and every finished node. The figures of step 5 are measured
in :mod:`smriflow.cli.demo.scoring` and printed by :mod:`smriflow.cli.demo.summary`.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from smriflow.cli.demo.scoring import ATLAS, roi_table, score_demo
from smriflow.cli.demo.summary import print_results

__all__ = ["add_demo_parser", "demo_command"]

DEFAULT_DIR = Path("smriflow-demo")


def add_demo_parser(subparsers: Any, common: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``demo`` command."""
    parser = subparsers.add_parser(
        "demo",
        parents=[common],
        help="synthesize a small dataset with known ground truth, process it and score the result",
        description=(
            "Write a synthetic BIDS dataset made from the MNI152 template (head, random pose and "
            "deformation, bias field, Rician noise, and GM loss with age in one region), run anat_preproc on "
            "it, then the "
            "group QC and an ROI GLM, and print what was measured against the ground truth. Offline."
        ),
    )
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=DEFAULT_DIR,
        metavar="DIR",
        help=f"folder of the demo: dataset, truth, derivatives, work (default: ./{DEFAULT_DIR})",
    )
    parser.add_argument(
        "--subjects", type=int, default=4, metavar="N", help="number of subjects (default: 4)"
    )
    parser.add_argument(
        "--voxel-size",
        type=float,
        default=1.5,
        metavar="MM",
        help="voxel size of the synthetic T1w images in mm (default: 1.5; 3 is quicker and coarser)",
    )
    parser.add_argument(
        "--seed", type=int, default=42, metavar="N", help="seed of the synthesis (default: 42)"
    )
    parser.add_argument("--nprocs", type=int, metavar="N", help="CPUs used at once (default: all)")
    parser.set_defaults(handler=demo_command)
    return parser


def demo_command(args: argparse.Namespace) -> int:
    """Handle ``smriflow demo``; return the exit code (0 when every step succeeded)."""
    from smriflow.cli.main import CLIError
    from smriflow.data.synth import SynthParams

    if args.subjects < 2:
        raise CLIError(f"--subjects {args.subjects}: the demo needs at least 2 subjects (an age effect)")
    if not 0.5 <= args.voxel_size <= 4.0:
        raise CLIError(f"--voxel-size {args.voxel_size}: choose a voxel size between 0.5 and 4 mm")
    out = Path(args.output_dir).absolute()
    params = SynthParams(voxel_size=args.voxel_size)
    start = time.monotonic()
    print(
        f"smriflow demo: {args.subjects} synthetic subjects at {args.voxel_size:g} mm (seed {args.seed}) "
        f"in {out}",
        flush=True,
    )
    truth = _dataset(out, args.subjects, args.seed, params)
    steps: dict[str, Any] = {}
    steps["anat_preproc"] = _step(
        "anat_preproc",
        [
            "run",
            "anat_preproc",
            "--bids-dir",
            str(out / "bids"),
            "--output-dir",
            str(out / "derivatives" / "smriflow"),
        ]
        + ["--work-dir", str(out / "work")]
        + (["--nprocs", str(args.nprocs)] if args.nprocs else []),
    )
    steps["qc_group"] = _qc_group(out, args.nprocs)
    steps["roi_glm"] = _roi_glm(out, len(truth))
    steps["roi_glm_thickness"] = _roi_glm_thickness(out, len(truth), steps["roi_glm"])
    results = score_demo(out, truth, params, steps)
    results["seconds"] = round(time.monotonic() - start, 1)
    (out / "demo_results.json").write_text(json.dumps(results, indent=2) + "\n")
    print_results(results, out)
    failed = [name for name, step in steps.items() if step["status"] == "failed"]
    return 1 if failed else 0


def _dataset(out: Path, n_subjects: int, seed: int, params) -> Any:
    """Write the synthetic dataset, or reuse the one a previous demo left with the same settings."""
    from dataclasses import asdict

    import pandas as pd

    from smriflow.cli.main import CLIError
    from smriflow.data.synth import write_dataset

    record = out / "truth" / "params.json"
    wanted = {"seed": seed, "subjects": n_subjects, **asdict(params)}
    if record.is_file():
        found = json.loads(record.read_text())
        if found == wanted:
            print(f"[1/5] synthetic dataset: reusing {out / 'bids'}", flush=True)
            return pd.read_csv(out / "truth" / "truth.tsv", sep="\t")
        changed = ", ".join(
            f"{k}={found.get(k)!r} (now {v!r})" for k, v in wanted.items() if found.get(k) != v
        )
        raise CLIError(
            f"--output-dir {out} holds a demo made with other settings: {changed}; choose another "
            "--output-dir, or remove that one"
        )
    if out.exists() and any(out.iterdir()):
        raise CLIError(
            f"--output-dir {out} exists and is not a smriflow demo folder (or a demo stopped while writing "
            "its dataset); choose another one, or remove it"
        )
    tic = time.monotonic()
    print(f"[1/5] synthetic dataset: writing {n_subjects} subjects ...", flush=True)
    write_dataset(out, n_subjects=n_subjects, seed=seed, params=params)
    record.write_text(json.dumps(wanted, indent=2) + "\n")
    truth = pd.read_csv(out / "truth" / "truth.tsv", sep="\t")  # as a rerun reads it: the same figures
    print(f"      done in {time.monotonic() - tic:.0f} s: {out / 'bids'} (ground truth in {out / 'truth'})")
    return truth


def _step(name: str, argv: list[str]) -> dict[str, Any]:
    """Run one ``smriflow`` command in this process; return its status, exit code and time."""
    from pandas.errors import PerformanceWarning

    from smriflow.cli.main import main

    number = {"anat_preproc": 2, "qc_group": 3, "roi_glm": 4, "roi_glm_thickness": 4}[name]
    print(f"[{number}/5] $ smriflow {shlex.join(argv)}", flush=True)
    tic = time.monotonic()
    with warnings.catch_warnings():  # pandas' performance hints are not for the user
        warnings.simplefilter("ignore", PerformanceWarning)
        code = main(argv)
    sys.stdout.flush()
    status = "done" if code == 0 else "failed"
    seconds = round(time.monotonic() - tic, 1)
    print(f"      {name}: {status} in {seconds:.0f} s (exit code {code})", flush=True)
    return {
        "status": status,
        "exit_code": code,
        "seconds": seconds,
        "command": "smriflow " + shlex.join(argv),
    }


def _skipped(number: int, name: str, why: str) -> dict[str, Any]:
    print(f"[{number}/5] {name}: skipped ({why})", flush=True)
    return {"status": "skipped", "reason": why}


def _qc_group(out: Path, nprocs: int | None) -> dict[str, Any]:
    from smriflow.engine.registry import packaged_workflows

    if "qc_group" not in packaged_workflows():
        return _skipped(3, "group QC", "the qc_group workflow is not part of this smriflow version")
    argv = ["run", "qc_group", "--output-dir", str(out / "derivatives" / "smriflow")]
    argv += ["--work-dir", str(out / "work")] + (["--nprocs", str(nprocs)] if nprocs else [])
    return _step("qc_group", argv)


def _has_command(name: str) -> bool:
    from smriflow.cli.main import get_parser

    parser = get_parser()
    actions = [a for a in parser._subparsers._group_actions if isinstance(a, argparse._SubParsersAction)]
    return any(name in action.choices for action in actions)


def _roi_glm(out: Path, n_subjects: int) -> dict[str, Any]:
    if not _has_command("stats"):
        return _skipped(4, "ROI GLM", "`smriflow stats` is not part of this smriflow version")
    if n_subjects < 3:
        return _skipped(4, "ROI GLM", "a slope and its error need at least 3 subjects")
    table = out / "stats" / f"atlas-{ATLAS}_gmvolume.tsv"
    table.parent.mkdir(parents=True, exist_ok=True)
    roi_table(out / "derivatives" / "smriflow", ATLAS, "gm_volume_mm3").to_csv(table, sep="\t", index=False)
    argv = ["stats", "roi", "--table", str(table), "--participants", str(out / "bids" / "participants.tsv")]
    argv += ["--formula", "{roi} ~ age", "--predictor", "age", "--missing", "drop", "--correction", "fdr_bh"]
    argv += ["--output-dir", str(out / "stats" / "roi_glm")]
    return _step("roi_glm", argv)


def _roi_glm_thickness(out: Path, n_subjects: int, volume_step: dict[str, Any]) -> dict[str, Any]:
    """``smriflow stats roi`` on the subjects' Desikan-Killiany thickness tables (both hemispheres)."""
    if volume_step["status"] == "skipped":
        return {"status": "skipped", "reason": volume_step["reason"]}
    tables = sorted(
        (out / "derivatives" / "smriflow").glob(f"sub-*/**/sub-*_hemi-*_atlas-{ATLAS}_thickness.tsv")
    )
    if len(tables) < 2 * n_subjects:
        return _skipped(4, "ROI GLM on thickness", "not every subject has its thickness tables")
    argv = ["stats", "roi", "--table", *map(str, tables)]
    argv += ["--participants", str(out / "bids" / "participants.tsv"), "--formula", "{roi} ~ age"]
    argv += ["--predictor", "age", "--missing", "drop", "--correction", "fdr_bh"]
    return _step("roi_glm_thickness", argv + ["--output-dir", str(out / "stats" / "roi_glm_thickness")])
