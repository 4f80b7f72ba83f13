"""Pipeline comparison: ICC against an ANOVA fit and a published example, agreement statistics, ABIDE."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from conftest import require_shared
from statsmodels.stats.anova import anova_lm

from smriflow.stats.compare import (
    COMPARE_COLUMNS,
    compare_pipelines,
    icc_two_way,
    load_pipelines,
    run_compare,
)

ABIDE = ("abide", "ABIDE_CT_pipelines_DKT_software_QC.csv")


def _icc_from_anova(values: np.ndarray) -> tuple[float, float]:
    """ICC(2,1), ICC(3,1) from statsmodels' two-way ANOVA table (independent of icc_two_way)."""
    n, k = values.shape
    long = pd.DataFrame(
        {"y": values.ravel(), "subject": np.repeat(np.arange(n), k), "rater": np.tile(np.arange(k), n)}
    )
    table = anova_lm(smf.ols("y ~ C(subject) + C(rater)", data=long).fit())
    msr, msc, mse = table.loc[["C(subject)", "C(rater)", "Residual"], "mean_sq"]
    icc2 = (msr - mse) / (msr + (k - 1) * mse + k * (msc - mse) / n)
    icc3 = (msr - mse) / (msr + (k - 1) * mse)
    return icc2, icc3


def test_icc_matches_anova_and_shrout_fleiss():
    rng = np.random.default_rng(0)
    truth = rng.normal(2.5, 0.3, 25)
    values = np.column_stack([truth + rng.normal(0, 0.1, 25), truth + 0.2 + rng.normal(0, 0.1, 25)])
    np.testing.assert_allclose(icc_two_way(values), _icc_from_anova(values), rtol=1e-10)
    # Shrout & Fleiss (1979), Table 2: 6 targets, 4 judges; ICC(2,1) = .29, ICC(3,1) = .71
    sf = np.array([[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]])
    icc2, icc3 = icc_two_way(sf)
    assert round(icc2, 2) == 0.29 and round(icc3, 2) == 0.71
    # a constant offset lowers absolute agreement, not consistency
    assert icc_two_way(np.column_stack([truth, truth + 1.0]))[1] == pytest.approx(1.0)
    assert icc_two_way(np.column_stack([truth, truth + 1.0]))[0] < 0.2


def _pipeline_tables(tmp_path, n=20, seed=0):
    rng = np.random.default_rng(seed)
    ids = [f"sub-{i:02d}" for i in range(n)]
    truth = rng.normal(2.6, 0.2, (n, 2))
    paths = []
    for name, bias, noise in (("fs6", 0.0, 0.05), ("fs7", 0.05, 0.05), ("civet", 0.5, 0.3)):
        values = truth + bias + rng.normal(0, noise, truth.shape)
        frame = pd.DataFrame({"participant_id": ids, "lh_cuneus": values[:, 0], "rh_cuneus": values[:, 1]})
        frame["QC_pass"] = ["True"] * (n - 1) + ["False" if name == "civet" else "True"]
        frame.to_csv(tmp_path / f"{name}.tsv", sep="\t", index=False)
        paths.append(tmp_path / f"{name}.tsv")
    return paths


def test_agreement_statistics_per_roi_and_pair(tmp_path):
    paths = _pipeline_tables(tmp_path)
    values, qc, rois = load_pipelines(paths, qc_column="QC_pass")
    result = compare_pipelines(values, rois, qc)
    assert result.qc_excluded == ["19"] and len(result.subjects) == 19
    assert list(result.table.columns[:-1]) == COMPARE_COLUMNS
    assert len(result.table) == 2 * 3  # ROIs x pairs
    row = result.table[(result.table.roi == "cuneus") & (result.table.hemi == "rh")].iloc[0]
    assert (row.pipeline_a, row.pipeline_b, row.n) == ("fs6", "fs7", 19)
    a = values["fs6"].loc[result.subjects, "rh_cuneus"].to_numpy()
    b = values["fs7"].loc[result.subjects, "rh_cuneus"].to_numpy()
    assert row.pearson_r == pytest.approx(np.corrcoef(a, b)[0, 1], rel=1e-12)
    d = a - b
    assert row.mean_diff == pytest.approx(d.mean()) and row.sd_diff == pytest.approx(d.std(ddof=1))
    assert row.loa_low == pytest.approx(d.mean() - 1.96 * d.std(ddof=1))
    assert row.loa_high == pytest.approx(d.mean() + 1.96 * d.std(ddof=1))
    np.testing.assert_allclose([row.icc2_1, row.icc3_1], _icc_from_anova(np.column_stack([a, b])), rtol=1e-10)
    # the biased, noisy pipeline agrees worst
    by_pair = result.table.groupby(["pipeline_a", "pipeline_b"])["icc2_1"].mean()
    assert by_pair[("fs6", "fs7")] > by_pair[("fs6", "civet")]


def test_compare_errors(tmp_path):
    paths = _pipeline_tables(tmp_path)
    with pytest.raises(
        ValueError, match=r"^--table: give two or more tables \(one per pipeline\), or --pipeline-column$"
    ):
        load_pipelines(paths[:1])
    with pytest.raises(
        ValueError, match=re.escape(f"{paths[0]}: no column 'QC_pas'. Did you mean 'QC_pass'?")
    ):
        load_pipelines(paths, qc_column="QC_pas")
    with pytest.raises(ValueError, match=r"^--name: 1 names for 3 tables$"):
        load_pipelines(paths, names=["a"])
    with pytest.raises(ValueError, match=r"^--pipeline-column: give exactly one --table"):
        load_pipelines(paths, pipeline_column="software")
    frame = pd.read_csv(paths[0], sep="\t")
    frame["QC_pass"] = "maybe"
    frame.to_csv(paths[0], sep="\t", index=False)
    with pytest.raises(ValueError, match="--qc-column QC_pass: 'maybe' is neither true nor false"):
        load_pipelines(paths, qc_column="QC_pass")


@pytest.mark.shared
def test_abide_three_pipelines(shared_data, tmp_path):
    path = require_shared(*ABIDE)
    result = run_compare([path], pipeline_column="software", qc_column="QC_pass", output_dir=tmp_path)
    table = pd.read_csv(tmp_path / "compare.tsv", sep="\t")
    assert list(table.columns) == COMPARE_COLUMNS
    assert len(table) == 62 * 3
    assert set(zip(table.pipeline_a, table.pipeline_b, strict=True)) == {
        ("CIVET", "FS5.3"), ("CIVET", "FS6.0"), ("FS5.3", "FS6.0"),
    }  # fmt: skip
    # an independent check of one ROI straight from the CSV
    raw = pd.read_csv(path)
    passing = raw.groupby("SubjID")["QC_pass"].apply(lambda flags: flags.eq(True).all())  # n/a = not passed
    keep = set(passing[passing].index)
    assert len(keep) == 685 and set(table.n) == {685}
    fs5 = (
        raw[(raw.software == "FS5.3") & raw.SubjID.isin(keep)].set_index("SubjID")["L_precuneus"].sort_index()
    )
    fs6 = (
        raw[(raw.software == "FS6.0") & raw.SubjID.isin(keep)].set_index("SubjID")["L_precuneus"].sort_index()
    )
    row = table[(table.roi == "precuneus") & (table.hemi == "lh") & (table.pipeline_a == "FS5.3")].iloc[0]
    assert row.pearson_r == pytest.approx(np.corrcoef(fs5, fs6)[0, 1], rel=1e-8)
    assert row.mean_diff == pytest.approx((fs5 - fs6).mean(), rel=1e-8)
    np.testing.assert_allclose(
        [row.icc2_1, row.icc3_1], _icc_from_anova(np.column_stack([fs5, fs6])), rtol=1e-8
    )
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == [
        "compare_bland_altman.png",
        "compare_r.png",
    ]
    assert "FS5.3 vs FS6.0: median r" in result.summary()


def test_one_table_per_pipeline_keeps_hemisphere_columns_only(tmp_path):
    """ABIDE-like tables, one per pipeline: SubjID, demographics and QC are not ROIs."""
    rng = np.random.default_rng(3)
    ids = [50000 + i for i in range(12)]
    truth = rng.normal(2.6, 0.2, 12)
    paths = []
    for name, bias in (("FS5.3", 0.0), ("FS6.0", 0.03)):
        frame = pd.DataFrame({"SubjID": ids, "SEX": [1, 2] * 6, "AGE_AT_SCAN": rng.uniform(8, 30, 12),
                              "QC_pass": [True] * 12,
                              "L_cuneus": truth + bias + rng.normal(0, 0.02, 12)})  # fmt: skip
        frame.to_csv(tmp_path / f"{name}.csv")
        paths.append(tmp_path / f"{name}.csv")
    result = run_compare(paths, qc_column="QC_pass", figures=False, output_dir=tmp_path / "out")
    assert result.table[["roi", "hemi", "pipeline_a", "pipeline_b", "n"]].values.tolist() == [
        ["cuneus", "lh", "FS5.3", "FS6.0", 12]
    ]
