"""Scoring the processed demo against its ground truth: per subject, and for the planted age effects.

:func:`score_subject` compares one subject's ``anat_preproc`` derivatives with the truth that
:func:`smriflow.data.synth.write_dataset` wrote (brain-mask and tissue Dice, GM volumes, the thickness of the
thinned region); :func:`age_effect` fits a line against age; :func:`roi_table` gathers the atlas volume tables
for the ROI GLM; :func:`score_demo` assembles everything ``smriflow demo`` reports and writes to
``demo_results.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["ATLAS", "age_effect", "roi_table", "score_demo", "score_subject"]

#: The atlas of the demo's regional volumes, thickness tables and ROI GLMs.
ATLAS = "desikankilliany"


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


def score_demo(out: Path, truth: Any, params: Any, steps: dict[str, Any]) -> dict[str, Any]:
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
