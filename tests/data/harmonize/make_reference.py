"""Write the inputs and neuroHarmonize's outputs that tests/stats/test_harmonize.py compares smriflow with.

    python tests/data/harmonize/make_reference.py --reference-python /tmp/nh/bin/python

(``/tmp/nh``: a venv with ``neuroHarmonize==2.5.2 statsmodels==0.15.0``, see
bench/neuroharmonize_reference.py). Writes, beside this script:

- ``study.tsv``: 72 subjects of 4 sites (participant_id, site, age, sex, dx, 5 ROIs) with planted effects:
  per-site shifts and scales, thickness falling 0.012 mm per year of age, +0.08 mm for dx = 1, +0.03 for
  sex = 1; the sites' age ranges differ (age is confounded with site);
- ``neuroharmonize_combat.tsv`` and ``neuroharmonize_gam.tsv``: neuroHarmonize's harmonized ROIs
  (covariates age, sex, dx; the GAM with a smooth age, seed 0);
- ``abide_fs53_neuroharmonize.tsv`` (when the shared ABIDE table is there): neuroHarmonize on ABIDE's FS5.3
  thickness of all 779 subjects (covariates AGE_AT_SCAN, SEX, DX_GROUP): the first 12 subjects' rows and
  the mean of every ROI over all subjects (row ``mean``).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
SCRIPT = REPO / "bench" / "neuroharmonize_reference.py"
ROIS = ["lh_superiorfrontal", "lh_precuneus", "rh_insula", "rh_lingual", "rh_posteriorcingulate"]
SITES = {"A": (20, 8, 20, 0.0, 1.0), "B": (15, 15, 40, 0.2, 1.6), "C": (25, 10, 30, -0.15, 0.7),
         "D": (12, 20, 50, 0.1, 1.2)}  # fmt: skip  # n, age range, shift, scale
AGE_EFFECT, DX_EFFECT, SEX_EFFECT = -0.012, 0.08, 0.03


def make_study() -> pd.DataFrame:
    rng = np.random.default_rng(17)
    rows = []
    for site, (n, low, high, shift, scale) in SITES.items():
        age = rng.uniform(low, high, n)
        sex = rng.integers(0, 2, n)
        dx = np.tile([0, 1], n)[:n]
        base = rng.normal(2.8, 0.15, len(ROIS))
        noise = rng.normal(0, 0.08, (n, len(ROIS))) * scale
        values = base + AGE_EFFECT * age[:, None] + DX_EFFECT * dx[:, None] + SEX_EFFECT * sex[:, None]
        values = values + shift + noise
        for i in range(n):
            rows.append([site, age[i], sex[i], dx[i], *values[i]])
    frame = pd.DataFrame(rows, columns=["site", "age", "sex", "dx", *ROIS]).round(6)
    frame.insert(0, "participant_id", [f"sub-{i:03d}" for i in range(1, len(frame) + 1)])
    return frame


def neuroharmonize(python: str, values, sites, covariates, names, smooth) -> np.ndarray:
    with tempfile.TemporaryDirectory() as tmp:
        np.savez(
            Path(tmp) / "in.npz",
            values=values,
            sites=np.asarray(sites).astype(str),
            covariates=covariates,
            covariate_names=np.array(names),
            smooth_terms=np.array(smooth, dtype=str),
            eb=True,
            seed=0,
        )
        subprocess.run(
            [python, str(SCRIPT), f"{tmp}/in.npz", f"{tmp}/out.npz"], check=True, capture_output=True
        )
        return np.load(Path(tmp) / "out.npz")["harmonized"]


def write(frame: pd.DataFrame, name: str) -> None:
    frame.to_csv(HERE / name, sep="\t", index=False, float_format="%.17g", lineterminator="\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference-python", required=True)
    python = parser.parse_args().reference_python
    study = make_study()
    study.to_csv(HERE / "study.tsv", sep="\t", index=False, lineterminator="\n")
    study = pd.read_csv(HERE / "study.tsv", sep="\t")  # the values as the tests read them
    covariates = study[["age", "sex", "dx"]].to_numpy(float)
    for name, smooth in (("combat", []), ("gam", ["age"])):
        out = neuroharmonize(python, study[ROIS].to_numpy(float), study["site"], covariates,
                             ["age", "sex", "dx"], smooth)  # fmt: skip
        write(pd.DataFrame(out, columns=ROIS).assign(participant_id=study["participant_id"])[
            ["participant_id", *ROIS]], f"neuroharmonize_{name}.tsv")  # fmt: skip
    shared = Path(os.environ.get("SMRIFLOW_SHARED_DATA", REPO.parent / "shared" / "data"))
    abide = shared / "abide" / "ABIDE_CT_pipelines_DKT_software_QC.csv"
    if abide.is_file():
        raw = pd.read_csv(abide)
        rows = raw[raw["software"] == "FS5.3"]
        rois = [c for c in rows.columns if c.startswith(("L_", "R_"))]
        covariates = rows[["SEX", "DX_GROUP", "AGE_AT_SCAN"]].to_numpy(float)
        out = neuroharmonize(
            python, rows[rois].to_numpy(float), rows["SITE_ID"], covariates, ["sex", "dx", "age"], []
        )
        frame = pd.DataFrame(out, columns=rois)
        frame.insert(0, "participant_id", "sub-" + rows["SubjID"].astype(str).to_numpy())
        head = frame.iloc[:12]
        mean = pd.DataFrame([["mean", *frame[rois].mean().to_numpy()]], columns=frame.columns)
        write(pd.concat([head, mean], ignore_index=True), "abide_fs53_neuroharmonize.tsv")


if __name__ == "__main__":
    main()
