"""smriflow.stats.qc: collecting the IQM files, robust z-scores, flags and their reasons, the TSV."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import median_abs_deviation

from smriflow.stats.qc import QCRules, collect_iqms, group_qc, robust_z, write_table

CLEAN = {
    "cjv": 0.3,
    "snr_total": 10.0,
    "volume_brain_cm3": 1100.0,
    "volume_mask_cm3": 1400.0,
    "mask_lcc_fraction": 1.0,
    "mask_n_components": 1.0,
    "reg_ncc": 0.8,
    "reg_dice": 0.97,
    "summary_wm_n": 8000.0,
}


def write(root: Path, label: str, values: dict, session: str | None = None) -> Path:
    folder = root / f"sub-{label}" / (f"ses-{session}/anat" if session else "anat")
    folder.mkdir(parents=True, exist_ok=True)
    name = f"sub-{label}" + (f"_ses-{session}" if session else "") + "_desc-iqms_T1w.json"
    (folder / name).write_text(json.dumps(values))
    return folder / name


def cohort(root: Path, n: int = 12, seed: int = 0) -> None:
    """``n`` plausible subjects: every IQM jittered by 3 % around CLEAN."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        values = {key: value * (1 + 0.03 * rng.standard_normal()) for key, value in CLEAN.items()}
        values.update(mask_lcc_fraction=1.0, mask_n_components=1.0, reg_dice=min(values["reg_dice"], 1.0))
        write(root, f"{i:02d}", values)


# -- collect -------------------------------------------------------------------------------------------------
def test_collect_reads_sessions_and_sorts(tmp_path):
    write(tmp_path, "02", {"cjv": 0.2, "efc": 0.5})
    write(tmp_path, "01", {"cjv": 0.4}, session="b")
    write(tmp_path, "01", {"cjv": 0.3, "efc": 0.6}, session="a")
    write(tmp_path / "logs", "99", {"cjv": 9.0})  # logs and hidden folders are skipped
    write(tmp_path / ".work", "98", {"cjv": 9.0})
    (tmp_path / "sub-02" / "anat" / "sub-02_desc-preproc_T1w.json").write_text('{"Sources": []}')
    table = collect_iqms(tmp_path)
    assert list(table.columns) == ["subject", "session", "cjv", "efc"]
    assert table[["subject", "session"]].values.tolist() == [["01", "a"], ["01", "b"], ["02", ""]]
    assert table["cjv"].tolist() == [0.3, 0.4, 0.2]
    assert np.isnan(table.loc[1, "efc"])  # a metric missing from one file


def test_collect_reads_an_undefined_metric_as_nan_and_skips_the_notes(tmp_path):
    write(tmp_path, "01", {"cjv": None, "efc": 0.5, "notes": {"cjv": "undefined on this input"}})
    write(tmp_path, "02", {"cjv": 0.3, "efc": 0.6})
    table = collect_iqms(tmp_path)
    assert list(table.columns) == ["subject", "session", "cjv", "efc"]
    assert np.isnan(table.loc[0, "cjv"]) and table["efc"].tolist() == [0.5, 0.6]


def test_collect_errors_name_the_file(tmp_path):
    with pytest.raises(ValueError, match=r"does not exist"):
        collect_iqms(tmp_path / "nowhere")
    with pytest.raises(ValueError, match=r"no \*_desc-iqms_T1w.json file found"):
        collect_iqms(tmp_path)
    bad = write(tmp_path, "01", {"cjv": "high"})
    with pytest.raises(ValueError, match=rf"{bad}: expected a JSON object of numbers"):
        collect_iqms(tmp_path)
    bad.write_text("{not json")
    with pytest.raises(ValueError, match=rf"{bad}: cannot read the IQMs"):
        collect_iqms(tmp_path)


# -- robust z ------------------------------------------------------------------------------------------------
def test_robust_z_matches_scipy_normal_mad():
    x = np.random.default_rng(1).lognormal(size=41)
    expected = (x - np.median(x)) / median_abs_deviation(x, scale="normal")
    assert robust_z(x) == pytest.approx(expected, rel=1e-4)  # 1.4826 vs 1/Phi^-1(3/4)


def test_scale_floor_keeps_near_identical_values_apart():
    x = [1.000, 1.001, 1.000, 0.999, 1.030]  # MAD 0.001: 3 % off looks like z = 20
    assert robust_z(x)[-1] == pytest.approx(0.03 / (1.4826 * 0.001))
    assert robust_z(x, 0.05)[-1] == pytest.approx(0.03 / 0.05)  # the floor: 5 % of the median
    wide = np.array([100.0, 80.0, 120.0, 90.0, 110.0])
    assert robust_z(wide, 0.05) == pytest.approx(robust_z(wide))  # a real spread is above the floor


def test_robust_z_zero_mad_nan_and_constant():
    z = robust_z([5.0, 5.0, 5.0, 5.0, 9.0])  # MAD 0: the mean absolute deviation (0.8) sets the scale
    assert z.tolist() == pytest.approx([0, 0, 0, 0, 4 / (1.2533 * 0.8)])
    assert robust_z([2.0, 2.0, 2.0]).tolist() == [0.0, 0.0, 0.0]
    z = robust_z([1.0, np.nan, 3.0])
    assert np.isnan(z[1]) and z[0] == -z[2]


# -- flags ---------------------------------------------------------------------------------------------------
def test_plausible_cohort_is_not_flagged_and_outliers_are(tmp_path):
    cohort(tmp_path)
    write(tmp_path, "small", {**CLEAN, "volume_brain_cm3": 512.0})
    write(tmp_path, "biased", {**CLEAN, "cjv": 0.9})
    table = group_qc(collect_iqms(tmp_path)).set_index("subject")
    assert not table.loc[[f"{i:02d}" for i in range(12)], "qc_flag"].any()
    assert table.loc["small", "qc_reasons"].startswith(
        "brain volume 512 cm³ below 800 cm³; volume_brain_cm3 512"
    )
    assert table.loc["biased", "qc_reasons"] == "cjv 0.9 (robust z +{:.1f})".format(
        robust_z(table["cjv"], 0.05)[list(table.index).index("biased")]
    )
    assert table.loc["biased", "qc_flag"] and table.loc["small", "qc_flag"]


def test_fixed_rules_and_their_messages():
    rows = [
        {**CLEAN, "subject": "big", "volume_brain_cm3": 2345.6},
        {**CLEAN, "subject": "empty", "volume_mask_cm3": 0.0, "volume_brain_cm3": 0.0},
        {**CLEAN, "subject": "frag", "mask_lcc_fraction": 0.931, "mask_n_components": 3.0},
        {**CLEAN, "subject": "reg", "reg_ncc": 0.41, "reg_dice": 0.82},
        {**CLEAN, "subject": "ok"},
    ]
    table = group_qc(pd.DataFrame(rows).assign(session=""), QCRules(min_subjects=10)).set_index("subject")
    reasons = table["qc_reasons"].to_dict()
    assert reasons == {
        "big": "brain volume 2346 cm³ above 2000 cm³",
        "empty": "empty brain mask; brain volume 0 cm³ below 800 cm³",
        "frag": "fragmented brain mask: largest component 93.1% of the mask (3 components)",
        "reg": "low registration similarity: NCC 0.410 below 0.6; "
        "low registration overlap: brain-mask Dice 0.820 below 0.9",
        "ok": "",
    }
    assert table["qc_flag"].to_dict() == {"big": True, "empty": True, "frag": True, "reg": True, "ok": False}


def test_robust_z_needs_enough_subjects_and_skips_counts(tmp_path):
    rows = [{**CLEAN, "subject": f"{i}"} for i in range(4)] + [{**CLEAN, "subject": "x", "cjv": 3.0}]
    table = pd.DataFrame(rows).assign(session="")
    assert not group_qc(table, QCRules(min_subjects=6))["qc_flag"].any()  # 5 rows: fixed rules only
    flagged = group_qc(table, QCRules(min_subjects=5))
    assert flagged["qc_flag"].tolist() == [False] * 4 + [True]
    counts = pd.DataFrame(rows).assign(session="", summary_wm_n=[1, 1, 1, 1, 9000])
    assert not group_qc(counts.assign(cjv=0.3))["qc_flag"].any()  # voxel counts are not scored


def test_threshold_is_configurable():
    rows = [{**CLEAN, "subject": f"{i}", "cjv": 0.3 + 0.01 * i} for i in range(9)]
    rows.append({**CLEAN, "subject": "x", "cjv": 0.5})
    table = pd.DataFrame(rows).assign(session="")
    z = robust_z(table["cjv"])[-1]
    assert 3.5 < z < 10
    assert group_qc(table)["qc_flag"].iloc[-1]
    assert not group_qc(table, QCRules(z_threshold=10))["qc_flag"].iloc[-1]


def test_rules_refuse_bad_thresholds():
    with pytest.raises(ValueError, match=r"'z_threshold' must be positive. 0 was provided."):
        QCRules(z_threshold=0)
    with pytest.raises(ValueError, match=r"'scale_floor' must be 0 or more. -1 was provided."):
        QCRules(scale_floor=-1)
    with pytest.raises(
        ValueError, match=r"'brain_volume_min' \(900\) must be below 'brain_volume_max' \(800\)"
    ):
        QCRules(brain_volume_min=900, brain_volume_max=800)


def test_table_is_written_as_tsv(tmp_path):
    cohort(tmp_path / "d", n=3)
    table = group_qc(collect_iqms(tmp_path / "d"))
    path = write_table(table, tmp_path / "group.tsv")
    lines = Path(path).read_text().splitlines()
    header = lines[0].split("\t")
    assert header[:2] == ["subject", "session"] and header[-2:] == ["qc_flag", "qc_reasons"]
    assert header[2:-2] == sorted(CLEAN)
    assert [line.split("\t")[-2] for line in lines[1:]] == ["false"] * 3
    back = pd.read_csv(path, sep="\t", keep_default_na=False, dtype={"subject": str})
    assert back["subject"].tolist() == ["00", "01", "02"]
    assert back["cjv"].astype(float).tolist() == pytest.approx(table["cjv"].tolist(), rel=1e-5)
