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

Rerunning the same command reuses the dataset and every finished node.
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

__all__ = ["add_demo_parser", "age_effect", "demo_command", "roi_table", "score_subject"]

DEFAULT_DIR = Path("smriflow-demo")
ATLAS = "desikankilliany"


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
    results = _score(out, truth, params, steps)
    results["seconds"] = round(time.monotonic() - start, 1)
    (out / "demo_results.json").write_text(json.dumps(results, indent=2) + "\n")
    _print_results(results, out)
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


def _thickness_effect(subjects: list[dict[str, Any]], params: Any, out: Path, steps: dict) -> dict[str, Any]:
    """The planted thinning (%/year of the thickness at the reference age) and what the tables show."""
    import numpy as np

    effect: dict[str, Any] = {"true_percent_per_year": -100.0 * params.thinning_rate}
    effect["reference_age"] = params.reference_age
    values = [s.get("region_thickness_mm") for s in subjects]
    if all(v is not None for v in values):
        ages = np.array([s["age"] for s in subjects])
        fit = age_effect(ages, values)
        at_reference = float(np.mean(values) + fit["slope"] * (params.reference_age - ages.mean()))
        effect["measured"] = {**fit, "percent_per_year": 100.0 * fit["slope"] / at_reference}
    glm = out / "stats" / "roi_glm_thickness" / "roi_glm.tsv"
    if steps["roi_glm_thickness"]["status"] == "done" and glm.is_file():
        effect["glm"] = _glm_row(glm, params.region)
    return effect


def _score(out: Path, truth: Any, params: Any, steps: dict[str, Any]) -> dict[str, Any]:
    """Measured vs true figures per subject and for the age effect."""
    region = params.region
    deriv = out / "derivatives" / "smriflow"
    subjects = []
    for row in truth.to_dict("records"):
        label = row["participant_id"]
        scores = score_subject(deriv, out / "truth", label, region=region, atlas=ATLAS)
        subjects.append(
            {
                "participant_id": label,
                "age": row["age"],
                **scores,
                "true_gm_mm3": row["gm_mm3"],
                "true_region_gm_mm3": row["region_gm_mm3"],
            }
        )
    measured = [s.get("region_gm_mm3") for s in subjects]
    effect: dict[str, Any] = {"region": region, "atlas": ATLAS}
    ages = [s["age"] for s in subjects]
    effect["true"] = age_effect(ages, [s["true_region_gm_mm3"] for s in subjects])
    if all(m is not None for m in measured):
        effect["measured"] = age_effect(ages, measured)
    glm = out / "stats" / "roi_glm" / "roi_glm.tsv"
    if steps["roi_glm"]["status"] == "done" and glm.is_file():
        effect["glm"] = _glm_row(glm, region)
    reports = sorted(str(p) for p in deriv.rglob("*.html")) if deriv.is_dir() else []
    figures = sorted(str(p) for p in (out / "stats" / "roi_glm").glob("**/*.png"))
    return {
        "subjects": subjects,
        "age_effect": effect,
        "thickness_effect": _thickness_effect(subjects, params, out, steps),
        "steps": steps,
        "qc": _qc_flags(deriv / "group_desc-iqms_T1w.tsv"),
        "reports": reports,
        "figures": figures,
    }


def _qc_flags(table: Path) -> dict[str, Any]:
    """The group QC table's flags: which subjects were flagged and why."""
    import pandas as pd

    if not table.is_file():
        return {}
    rows = pd.read_csv(table, sep="\t", dtype={"subject": str})
    if "qc_flag" not in rows:
        return {"table": str(table)}
    flagged = rows[rows["qc_flag"].astype(str).str.lower() == "true"]
    reasons = flagged.get("qc_reasons", pd.Series("", index=flagged.index)).fillna("")
    return {
        "table": str(table),
        "n": len(rows),
        "flagged": {
            f"sub-{subject}": str(why) for subject, why in zip(flagged["subject"], reasons, strict=True)
        },
    }


def _glm_row(path: Path, region: str) -> dict[str, Any]:
    """The ROI GLM's row of ``region`` and its rank by |t| among all regions."""
    import pandas as pd

    table = pd.read_csv(path, sep="\t")
    rows = table[table["term"] == "age"] if "term" in table else table
    rows = rows.assign(_abs_t=rows["t"].abs()).sort_values("_abs_t", ascending=False).reset_index(drop=True)
    hemi = rows["hemi"].fillna("").astype(str) if "hemi" in rows else pd.Series("", index=rows.index)
    roi = rows["roi"].astype(str)
    # the stats tables split 'ctx-lh-superiorfrontal' into roi 'superiorfrontal' and hemi 'lh'
    names = roi.where(hemi == "", "ctx-" + hemi + "-" + roi)
    hit = rows.index[(names == region) | (roi == region)]
    if len(hit) == 0:
        return {"found": False}
    row = rows.loc[hit[0]]
    keep = ("coef", "se", "t", "p", "p_corrected", "ci_low", "ci_high", "r2", "n")
    return {
        "found": True,
        "rank": int(hit[0]) + 1,
        "of": len(rows),
        **{k: float(row[k]) for k in keep if k in row},
    }


def _print_glm(console: Any, glm: dict[str, Any] | None, coef_format: str, unit: str = "") -> None:
    if glm and glm.get("found"):
        nan = float("nan")
        console.print(
            f"  ROI GLM   coef {glm.get('coef', nan):{coef_format}}{unit}, t = {glm.get('t', nan):.2f}, "
            f"p = {glm.get('p', nan):.2g} (corrected {glm.get('p_corrected', nan):.2g}); "
            f"rank {glm['rank']} of {glm['of']} regions by |t|"
        )


def _print_results(results: dict[str, Any], out: Path) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    console = Console(file=sys.stdout, highlight=False, width=max(100, Console().width))
    table = Table(title="[5/5] measured vs ground truth", box=box.SIMPLE_HEAD, title_justify="left")
    columns = ("subject", "age", "brain Dice", "GM Dice", "WM Dice", "CSF Dice", "GM ml", "true")
    for column in (*columns, "region GM ml", "true"):
        table.add_column(column, justify="right")
    for s in results["subjects"]:
        if "brain_dice" not in s:
            table.add_row(s["participant_id"], f"{s['age']:.1f}", "failed", *[""] * 7)
            continue
        table.add_row(
            s["participant_id"],
            f"{s['age']:.1f}",
            *(f"{s[key]:.3f}" for key in ("brain_dice", "gm_dice", "wm_dice", "csf_dice")),
            f"{s['gm_mm3'] / 1000:.0f}",
            f"{s['true_gm_mm3'] / 1000:.0f}",
            f"{s['region_gm_mm3'] / 1000:.2f}",
            f"{s['true_region_gm_mm3'] / 1000:.2f}",
        )

    console.print(table)
    console = Console(file=sys.stdout, highlight=False, soft_wrap=True)  # long paths stay on one line
    effect = results["age_effect"]
    true = effect["true"]
    console.print(
        f"Age effect on the GM volume of {effect['region']} ({effect['atlas']} atlas):\n"
        f"  true      {true['slope']:8.1f} mm³/year ({true['percent_per_year']:+.2f} %/year of the mean)"
    )
    if "measured" in effect:
        m = effect["measured"]
        console.print(
            f"  measured  {m['slope']:8.1f} mm³/year ({m['percent_per_year']:+.2f} %/year), "
            f"r = {m['r']:.3f} over {m['n']} subjects"
        )
    _print_glm(console, effect.get("glm"), ".1f")
    thick = results.get("thickness_effect") or {}
    if thick:
        console.print(
            f"Age effect on the cortical thickness of {effect['region']} "
            f"(% per year of the thickness at {thick['reference_age']:g} years):\n"
            f"  true      {thick['true_percent_per_year']:+.2f} %/year"
        )
        if "measured" in thick:
            m = thick["measured"]
            console.print(
                f"  measured  {m['percent_per_year']:+.2f} %/year ({m['slope']:+.4f} mm/year), "
                f"r = {m['r']:.3f} over {m['n']} subjects"
            )
        _print_glm(console, thick.get("glm"), "+.4f", " mm/year")
    qc = results.get("qc") or {}
    if "flagged" in qc:
        flagged = "; ".join(f"{k}: {v}" for k, v in qc["flagged"].items()) or "none"
        console.print(
            f"Group QC: {len(qc['flagged'])} of {qc['n']} subjects flagged ({flagged}); {qc['table']}"
        )
    status = ", ".join(f"{name} {step['status']}" for name, step in results["steps"].items())
    console.print(f"Steps: {status}")
    deriv = out / "derivatives" / "smriflow"
    console.print(f"Derivatives: {deriv}")
    for report in results["reports"]:
        console.print(f"Report: {report}")
    if results["steps"]["roi_glm"]["status"] == "done":
        console.print(f"ROI GLM: {out / 'stats' / 'roi_glm' / 'roi_glm.tsv'}")
    console.print(f"All figures: {out / 'demo_results.json'}; total {results['seconds']:.0f} s")


# -- scoring the processed demo against its ground truth -------------------------------------------------


def _on_grid(img: Any, reference: Any) -> Any:
    """``img``'s data on ``reference``'s grid (nearest neighbour; unchanged when the grids agree)."""
    import numpy as np

    from smriflow.data.synth import _resample
    from smriflow.utils.grids import same_grid

    if same_grid(img, reference):
        return np.asarray(img.dataobj)
    vox2vox = np.linalg.inv(img.affine) @ reference.affine
    return _resample(np.asarray(img.dataobj, dtype=np.float32), vox2vox, reference.shape[:3], order=0)


def score_subject(
    derivatives: str | Path, truth_dir: str | Path, label: str, *, region: str, atlas: str = "desikankilliany"
) -> dict[str, float]:
    """Compare one subject's ``anat_preproc`` derivatives with the ground truth of :func:`write_dataset`.

    Parameters
    ----------
    derivatives : str or Path
        The derivatives folder (``--output-dir`` of ``smriflow run anat_preproc``).
    truth_dir : str or Path
        ``out_dir/truth`` of :func:`write_dataset`.
    label : str
        ``sub-XX``.
    region : str
        The region whose GM volume is reported (a ``name`` of the atlas volumes table).
    atlas : str
        The atlas label of the volumes table (``atlas-<atlas>_volumes.tsv``).

    Returns
    -------
    dict
        ``brain_dice``, ``gm_dice``, ``wm_dice``, ``csf_dice`` (measured vs true masks, on the true grid),
        ``gm_mm3`` (measured GM volume), ``region_gm_mm3`` (measured GM volume of ``region``) and, when its
        thickness table exists, ``region_thickness_mm`` (mean thickness of ``region``); empty when the
        subject has no derivatives (it failed).
    """
    import nibabel as nb
    import numpy as np
    import pandas as pd

    from smriflow.utils.metrics import dice

    anat = Path(derivatives) / label / "anat"
    mask_file = anat / f"{label}_desc-brain_mask.nii.gz"
    if not mask_file.is_file():
        return {}
    truth_mask = nb.load(Path(truth_dir) / f"{label}_desc-brain_mask.nii.gz")
    truth_dseg = np.asarray(nb.load(Path(truth_dir) / f"{label}_dseg.nii.gz").dataobj)
    mask = _on_grid(nb.load(mask_file), truth_mask)
    dseg = _on_grid(nb.load(anat / f"{label}_dseg.nii.gz"), truth_mask)
    scores = {"brain_dice": dice(mask > 0, np.asarray(truth_mask.dataobj) > 0)}
    for value, name in ((1, "gm"), (2, "wm"), (3, "csf")):
        scores[f"{name}_dice"] = dice(dseg == value, truth_dseg == value)
    summary = pd.read_csv(anat / f"{label}_desc-summary_volumes.tsv", sep="\t")
    scores["gm_mm3"] = float(summary["gm_volume_mm3"].iloc[0])
    volumes = pd.read_csv(anat / f"{label}_atlas-{atlas}_volumes.tsv", sep="\t")
    rows = volumes.loc[volumes["name"] == region, "gm_volume_mm3"]
    if rows.empty:
        raise ValueError(f"{anat / f'{label}_atlas-{atlas}_volumes.tsv'}: no region named {region!r}")
    scores["region_gm_mm3"] = float(rows.iloc[0])
    hemi, roi = region.split("-", 2)[1:] if region.startswith("ctx-") else ("", region)
    thickness = anat / f"{label}_hemi-{hemi[:1].upper()}_atlas-{atlas}_thickness.tsv"
    if hemi and thickness.is_file():
        table = pd.read_csv(thickness, sep="\t")
        scores["region_thickness_mm"] = float(table[f"{hemi}_{roi}_thickness"].iloc[0])
    return scores


def age_effect(ages, values) -> dict[str, float]:
    """Least-squares slope of ``values`` on ``ages`` (per year), as a % of the mean, with r and p."""
    import numpy as np
    from scipy import stats

    fit = stats.linregress(np.asarray(ages, float), np.asarray(values, float))
    mean = float(np.mean(values))
    return {
        "slope": float(fit.slope),
        "percent_per_year": float(100.0 * fit.slope / mean) if mean else float("nan"),
        "r": float(fit.rvalue),
        "p": float(fit.pvalue),
        "n": len(ages),
    }


def roi_table(derivatives: str | Path, atlas: str, column: str = "gm_volume_mm3") -> Any:
    """One row per subject, one column per region: ``column`` of every ``atlas-<atlas>_volumes.tsv``.

    The first column is ``participant_id``; regions with a zero or missing value in any subject are left out
    (they have nothing to model).
    """
    import pandas as pd

    rows = {}
    for path in sorted(Path(derivatives).glob(f"sub-*/**/sub-*_atlas-{atlas}_volumes.tsv")):
        table = pd.read_csv(path, sep="\t")
        rows[path.name.split("_")[0]] = table.set_index("name")[column]
    if not rows:
        raise ValueError(f"{derivatives}: no sub-*_atlas-{atlas}_volumes.tsv found")
    wide = pd.DataFrame(rows).T
    wide = wide.loc[:, (wide.fillna(0) > 0).all(axis=0)]
    wide.index.name = "participant_id"
    return wide.reset_index()
