"""ComBat on ABIDE cortical thickness: site variance before/after, covariate effects, neuroHarmonize.

Takes one pipeline of ``../shared/data/abide/ABIDE_CT_pipelines_DKT_software_QC.csv`` (default FS5.3:
FreeSurfer 5.3, 62 DKT regions, 779 subjects, 18 sites), writes it as a smriflow-readable wide table and a
participants.tsv (site, age, sex, dx) into a temporary folder and runs ``smriflow stats harmonize``'s
function (:func:`smriflow.stats.harmonize.run_harmonize`) preserving ``AGE_AT_SCAN + C(SEX) + C(DX_GROUP)``.
Prints, per region, the share of variance explained by site before/after (alone, and beyond the preserved
covariates) and its median; the diagnosis and age coefficients (coef, t, p of ``y ~ age + C(sex) + C(dx)``)
before and after in the median and key regions; and the largest absolute difference between smriflow's
harmonized values and neuroHarmonize's (run by ``bench/neuroharmonize_reference.py`` in an environment that
has it: ``--reference-python`` or ``$NEUROHARMONIZE_PYTHON``; neuroHarmonize 2.5.2 needs numpy < 2).

    python bench/harmonize.py [--pipeline FS5.3] [--qc] [--gam] [--roi COLUMN ...] [--reference-python PY]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import statsmodels.formula.api as smf

from smriflow.stats.harmonize import run_harmonize

REPO = Path(__file__).resolve().parents[1]
ABIDE = Path(
    os.environ.get("SMRIFLOW_SHARED_DATA", REPO.parent / "shared" / "data"),
    "abide",
    "ABIDE_CT_pipelines_DKT_software_QC.csv",
)
COVARIATES = "age + C(sex) + C(dx)"


def write_inputs(csv: Path, pipeline: str, qc: bool, folder: Path) -> tuple[Path, Path]:
    """The pipeline's rows as a wide ROI table and a participants.tsv (site, age, sex, dx)."""
    raw = pd.read_csv(csv)
    rows = raw[raw["software"] == pipeline]
    if rows.empty:
        raise SystemExit(f"{csv}: no pipeline {pipeline!r} (have {', '.join(raw['software'].unique())})")
    if qc:
        rows = rows[rows["QC_pass"].eq(True)]
    rois = [c for c in rows.columns if c.startswith(("L_", "R_"))]
    ids = "sub-" + rows["SubjID"].astype(str)
    table = pd.concat([ids.rename("participant_id"), rows[rois]], axis=1)
    participants = pd.DataFrame(
        {
            "participant_id": ids,
            "site": rows["SITE_ID"],
            "age": rows["AGE_AT_SCAN"],
            "sex": rows["SEX"],
            "dx": rows["DX_GROUP"],
        }
    )
    table.to_csv(folder / "rois.tsv", sep="\t", index=False)
    participants.to_csv(folder / "participants.tsv", sep="\t", index=False)
    return folder / "rois.tsv", folder / "participants.tsv"


def neuroharmonize(result, python: str | None, smooth: list[str], folder: Path) -> np.ndarray | None:
    """neuroHarmonize's harmonized values for the same data and covariates (None when unavailable)."""
    script = REPO / "bench" / "neuroharmonize_reference.py"
    if python is None:
        try:
            import neuroHarmonize  # noqa: F401

            python = sys.executable
        except ImportError:
            return None
    covariates = result.covariates
    np.savez(
        folder / "nh_in.npz",
        values=result.before.to_numpy(dtype=float),
        sites=result.sites.to_numpy().astype(str),
        covariates=covariates.to_numpy(dtype=float),
        covariate_names=np.array([f"c{i}" if c not in smooth else c for i, c in enumerate(covariates)]),
        smooth_terms=np.array(smooth, dtype=str),
        eb=result.fit.eb,
        seed=0,
    )
    subprocess.run(
        [python, str(script), str(folder / "nh_in.npz"), str(folder / "nh_out.npz")],
        check=True,
        capture_output=True,
    )
    return np.load(folder / "nh_out.npz")["harmonized"]


def effects(values: pd.DataFrame, design: pd.DataFrame, key: str) -> dict[str, tuple[float, float, float]]:
    """coef, t, p of dx and age in ``key ~ age + C(sex) + C(dx)``."""
    frame = design.assign(y=values[key].to_numpy())
    fit = smf.ols("y ~ age + C(sex) + C(dx)", frame).fit()
    dx = next(c for c in fit.params.index if c.startswith("C(dx)"))
    return {
        name: (fit.params[term], fit.tvalues[term], fit.pvalues[term])
        for name, term in (("dx", dx), ("age", "age"))
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipeline", default="FS5.3", help="FS5.3 (default), FS6.0 or CIVET")
    parser.add_argument("--qc", action="store_true", help="QC-passed subjects only (default: all 779)")
    parser.add_argument("--gam", action="store_true", help="ComBat-GAM with a smooth age term")
    parser.add_argument(
        "--roi", nargs="+", help="only these columns, e.g. L_precuneus (ComBat-GAM: one CV per region)"
    )
    parser.add_argument("--reference-python", default=os.environ.get("NEUROHARMONIZE_PYTHON"))
    args = parser.parse_args()
    if not ABIDE.is_file():
        raise SystemExit(f"{ABIDE}: not found (set SMRIFLOW_SHARED_DATA)")
    smooth = ["age"] if args.gam else []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        table, participants = write_inputs(ABIDE, args.pipeline, args.qc, folder)
        start = time.perf_counter()
        result = run_harmonize(
            [table],
            participants,
            site="site",
            covariates="C(sex) + C(dx)" if args.gam else COVARIATES,
            smooth_terms=smooth,
            rois=args.roi,
            figures=False,
            output_dir=folder / "out",
        )
        seconds = time.perf_counter() - start
        reference = neuroharmonize(result, args.reference_python, smooth, folder)
        design = pd.read_csv(participants, sep="\t", dtype={"participant_id": str})
    load = os.getloadavg()[0]
    v = result.variance
    print(
        f"ABIDE {args.pipeline}{' QC-passed' if args.qc else ''}: {len(result.sites)} subjects, "
        f"{len(result.fit.sites)} sites, {len(v)} regions; "
        f"{'ComBat-GAM' if args.gam else 'ComBat'} preserving "
        f"{'C(sex) + C(dx) + smooth age' if args.gam else COVARIATES}; "
        f"{seconds:.1f} s (load {load:.2f})"
    )
    print("\nshare of variance explained by site (%): alone before/after, beyond the covariates before/after")
    for _, row in v.iterrows():
        print(
            f"  {row['hemi']} {row['roi']:<26} {100 * row['site_r2_before']:6.2f} "
            f"{100 * row['site_r2_after']:6.2f}   {100 * row['site_r2_unique_before']:6.2f} "
            f"{100 * row['site_r2_unique_after']:6.3f}"
        )
    medians = v[["site_r2_before", "site_r2_after", "site_r2_unique_before", "site_r2_unique_after"]].median()
    print(
        f"  median region: site alone {100 * medians.iloc[0]:.2f} % -> {100 * medians.iloc[1]:.2f} %; "
        f"beyond the covariates {100 * medians.iloc[2]:.2f} % -> {100 * medians.iloc[3]:.3f} %; "
        f"max after (beyond) {100 * v['site_r2_unique_after'].max():.3f} %"
    )

    design = design.set_index("participant_id")
    design.index = design.index.str.removeprefix("sub-")
    design = design.loc[result.before.index]
    median_key = v.iloc[(v["site_r2_unique_before"] - medians.iloc[2]).abs().argmin()]["key"]
    before = {k: effects(result.before, design, k) for k in result.before.columns}
    after = {k: effects(result.harmonized, design, k) for k in result.before.columns}
    strongest_dx = max(before, key=lambda k: abs(before[k]["dx"][1]))
    strongest_age = max(before, key=lambda k: abs(before[k]["age"][1]))
    print("\ncovariate effects (coef, t, p) before -> after")
    for label, key in (
        ("median-site-share region", median_key),
        ("strongest dx region", strongest_dx),
        ("strongest age region", strongest_age),
    ):
        for term in ("dx", "age"):
            b, a = before[key][term], after[key][term]
            print(
                f"  {label:<25} {key:<26} {term:<3} {b[0]:+.4f} t={b[1]:+6.2f} p={b[2]:.2g}  ->  "
                f"{a[0]:+.4f} t={a[1]:+6.2f} p={a[2]:.2g}"
            )
    for term in ("dx", "age"):
        tb = np.median([abs(before[k][term][1]) for k in before])
        ta = np.median([abs(after[k][term][1]) for k in after])
        nb_ = sum(before[k][term][2] < 0.05 for k in before)
        na_ = sum(after[k][term][2] < 0.05 for k in after)
        print(f"  {term}: median |t| over regions {tb:.2f} -> {ta:.2f}; regions p < 0.05: {nb_} -> {na_}")

    if reference is None:
        print("\nneuroHarmonize: not available (give --reference-python or set NEUROHARMONIZE_PYTHON)")
    else:
        diff = np.abs(result.harmonized.to_numpy() - reference).max()
        print(f"\nneuroHarmonize 2.5.2: max |smriflow - neuroHarmonize| = {diff:.3g} (target <= 1e-6)")


if __name__ == "__main__":
    main()
