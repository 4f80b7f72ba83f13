"""``smriflow demo`` end to end on a small, coarse study: every step runs and the planted truth is found."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import nibabel as nb
import numpy as np
import pandas as pd
import pytest

from smriflow.cli.demo.scoring import age_effect, roi_table, score_subject
from smriflow.cli.main import main
from smriflow.utils.metrics import dice

SUBJECTS, VOXEL = 3, 3.0  # the least that fits the ROI GLM; 3 mm keeps it to a couple of CPU minutes


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, int, str]:
    out = tmp_path_factory.mktemp("demo") / "study"
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = main(
            ["demo", "--output-dir", str(out), "--subjects", str(SUBJECTS), "--voxel-size", str(VOXEL)]
        )
    return out, code, buffer.getvalue()


@pytest.mark.slow
@pytest.mark.xdist_group("demo")  # one demo run per worker: keep its tests together
def test_demo_runs_every_step(demo):
    out, code, printed = demo
    assert code == 0, printed
    results = json.loads((out / "demo_results.json").read_text())
    assert {name: step["status"] for name, step in results["steps"].items()} == {
        "anat_preproc": "done",
        "qc_group": "done",
        "roi_glm": "done",
        "roi_glm_thickness": "done",
    }
    assert "[5/5] measured vs ground truth" in printed and "Age effect on the GM volume" in printed
    assert "Age effect on the cortical thickness of ctx-lh-superiorfrontal" in printed
    for subject in ("sub-01", "sub-02", "sub-03"):
        assert (
            out / "derivatives" / "smriflow" / subject / "anat" / f"{subject}_desc-brain_mask.nii.gz"
        ).is_file()


@pytest.mark.slow
@pytest.mark.xdist_group("demo")  # one demo run per worker: keep its tests together
def test_demo_dataset_is_bids_with_ground_truth(demo):
    out, _, _ = demo
    participants = pd.read_csv(out / "bids" / "participants.tsv", sep="\t")
    assert list(participants.columns) == ["participant_id", "age", "sex"] and len(participants) == SUBJECTS
    t1w = nb.load(out / "bids" / "sub-01" / "anat" / "sub-01_T1w.nii.gz")
    assert t1w.header.get_zooms() == (VOXEL,) * 3
    truth = pd.read_csv(out / "truth" / "truth.tsv", sep="\t")
    assert truth["participant_id"].tolist() == participants["participant_id"].tolist()
    assert (out / "truth" / "sub-01_dseg.nii.gz").is_file()


@pytest.mark.slow
@pytest.mark.xdist_group("demo")  # one demo run per worker: keep its tests together
def test_demo_recovers_the_truth(demo):
    """At 3 mm: a good brain mask, good tissue labels, and the sign and size of the age effect."""
    out, _, _ = demo
    results = json.loads((out / "demo_results.json").read_text())
    subjects = results["subjects"]
    for subject in subjects:
        assert subject["brain_dice"] > 0.93, subject
        assert subject["gm_dice"] > 0.85 and subject["wm_dice"] > 0.85, subject
        # 3 mm voxels blur the thin cortex: the region's GM comes out 10-30 % high, but in the true order
        assert subject["region_gm_mm3"] == pytest.approx(subject["true_region_gm_mm3"], rel=0.4)
    measured = np.argsort([s["region_gm_mm3"] for s in subjects])
    assert measured.tolist() == np.argsort([s["true_region_gm_mm3"] for s in subjects]).tolist()
    effect = results["age_effect"]
    assert effect["true"]["slope"] < 0 and effect["measured"]["slope"] < 0
    assert effect["measured"]["slope"] == pytest.approx(effect["true"]["slope"], rel=0.5)
    glm = effect["glm"]
    assert glm["found"] and glm["coef"] == pytest.approx(effect["measured"]["slope"], rel=1e-6)
    assert glm["n"] == SUBJECTS
    # the planted thinning (0.8 %/year of the age-20 thickness) on the thickness tables: at 3 mm the region
    # comes out 3.3-3.9 mm thick, the thinning under half the truth (-0.34 %/year measured), but of its sign
    thick = results["thickness_effect"]
    assert thick["true_percent_per_year"] == pytest.approx(-0.8)
    assert all(1.0 < s["region_thickness_mm"] < 5.0 for s in subjects)
    assert thick["measured"]["slope"] < 0 and thick["measured"]["n"] == SUBJECTS
    glm = thick["glm"]
    assert glm["found"] and glm["coef"] == pytest.approx(thick["measured"]["slope"], rel=1e-6)


@pytest.mark.slow
@pytest.mark.xdist_group("demo")  # one demo run per worker: keep its tests together
def test_demo_refuses_another_demo_folder(demo, capsys):
    out, _, _ = demo
    assert main(["demo", "--output-dir", str(out), "--subjects", str(SUBJECTS), "--seed", "7"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"--output-dir {out} holds a demo made with other settings: seed=42 (now 7), "
        "voxel_size=3.0 (now 1.5); choose another --output-dir, or remove that one"
    )


def test_demo_usage_errors(tmp_path: Path, capsys):
    assert main(["demo", "--subjects", "1", "--output-dir", str(tmp_path / "d")]) == 2
    assert (
        capsys.readouterr().err.strip() == "--subjects 1: the demo needs at least 2 subjects (an age effect)"
    )
    assert main(["demo", "--voxel-size", "9", "--output-dir", str(tmp_path / "d")]) == 2
    assert "choose a voxel size between 0.5 and 4 mm" in capsys.readouterr().err
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "thesis.tex").write_text("")
    assert main(["demo", "--output-dir", str(tmp_path / "busy")]) == 2
    assert "exists and is not a smriflow demo folder" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()


# -- scoring against the truth (fast) ------------------------------------------------------------------------
def _truth(truth_dir: Path, label: str) -> None:
    """A small true brain mask and tissue labels (a cube of WM in GM, CSF rim)."""
    truth_dir.mkdir(parents=True, exist_ok=True)
    dseg = np.zeros((20, 20, 20), np.uint8)
    dseg[3:17, 3:17, 3:17] = 3
    dseg[4:16, 4:16, 4:16] = 1
    dseg[7:13, 7:13, 7:13] = 2
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    nb.Nifti1Image((dseg > 0).astype(np.uint8), affine).to_filename(
        str(truth_dir / f"{label}_desc-brain_mask.nii.gz")
    )
    nb.Nifti1Image(dseg, affine).to_filename(str(truth_dir / f"{label}_dseg.nii.gz"))


def _fake_derivatives(root: Path, truth_dir: Path, label: str, region_gm: float, shift: int = 0) -> None:
    anat = root / label / "anat"
    anat.mkdir(parents=True)
    mask = nb.load(truth_dir / f"{label}_desc-brain_mask.nii.gz")
    data = np.roll(np.asarray(mask.dataobj), shift, axis=0)
    nb.Nifti1Image(data, mask.affine).to_filename(str(anat / f"{label}_desc-brain_mask.nii.gz"))
    dseg = nb.load(truth_dir / f"{label}_dseg.nii.gz")
    nb.Nifti1Image(np.asarray(dseg.dataobj), dseg.affine).to_filename(str(anat / f"{label}_dseg.nii.gz"))
    pd.DataFrame({"gm_volume_mm3": [1000.0]}).to_csv(anat / f"{label}_desc-summary_volumes.tsv", sep="\t")
    pd.DataFrame(
        {"label": [1, 2, 3], "name": ["left", "right", "empty"], "gm_volume_mm3": [region_gm, 5.0, 0.0]}
    ).to_csv(anat / f"{label}_atlas-toy_volumes.tsv", sep="\t", index=False)


def test_scores_and_roi_table(tmp_path: Path):
    truth_dir, deriv = tmp_path / "truth", tmp_path / "deriv"
    for label in ("sub-01", "sub-02"):
        _truth(truth_dir, label)
    _fake_derivatives(deriv, truth_dir, "sub-01", 10.0)
    _fake_derivatives(deriv, truth_dir, "sub-02", 20.0, shift=2)
    perfect = score_subject(deriv, truth_dir, "sub-01", region="left", atlas="toy")
    assert perfect == {
        "brain_dice": 1.0,
        "gm_dice": 1.0,
        "wm_dice": 1.0,
        "csf_dice": 1.0,
        "gm_mm3": 1000.0,
        "region_gm_mm3": 10.0,
    }
    shifted = score_subject(deriv, truth_dir, "sub-02", region="left", atlas="toy")
    true_mask = np.asarray(nb.load(truth_dir / "sub-02_desc-brain_mask.nii.gz").dataobj)
    assert shifted["brain_dice"] == pytest.approx(dice(np.roll(true_mask, 2, axis=0), true_mask))
    assert shifted["brain_dice"] == pytest.approx(2 * 12 * 14 * 14 / (2 * 14**3))  # 12 of 14 slabs overlap
    assert score_subject(deriv, truth_dir, "sub-03", region="left", atlas="toy") == {}
    with pytest.raises(ValueError, match="no region named 'nowhere'"):
        score_subject(deriv, truth_dir, "sub-01", region="nowhere", atlas="toy")
    wide = roi_table(deriv, "toy")
    assert list(wide.columns) == ["participant_id", "left", "right"]  # 'empty' has nothing to model
    assert wide["left"].tolist() == [10.0, 20.0]


def test_age_effect_matches_a_least_squares_line():
    ages, values = [20, 40, 60, 80], [100.0, 90.0, 81.0, 69.0]
    effect = age_effect(ages, values)
    slope = np.polyfit(ages, values, 1)[0]
    assert effect["slope"] == pytest.approx(slope)
    assert effect["percent_per_year"] == pytest.approx(100 * slope / np.mean(values))
    assert effect["n"] == 4 and effect["r"] < -0.99
