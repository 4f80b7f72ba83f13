"""ComBat / ComBat-GAM (smriflow.stats.combat, smriflow.stats.harmonize): equality with neuroHarmonize 2.5.2,
planted site and covariate effects, exact properties, one-line errors, and ABIDE.

neuroHarmonize pins numpy < 2, so its outputs are stored in tests/data/harmonize/ (written by
``make_reference.py`` there, from an environment that has it) and compared here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from conftest import require_shared

from smriflow.stats.combat import combat, site_variance_share
from smriflow.stats.harmonize import (
    VARIANCE_COLUMNS,
    harmonize_rois,
    region_family,
    run_harmonize,
)
from smriflow.stats.participants import load_participants
from smriflow.stats.roi_glm import fit_roi_glm
from smriflow.stats.tables import read_roi_tables

DATA = Path(__file__).resolve().parents[1] / "data" / "harmonize"
ROIS = ["lh_superiorfrontal", "lh_precuneus", "rh_insula", "rh_lingual", "rh_posteriorcingulate"]
PLANTED = {"age": -0.012, "dx": 0.08, "sex": 0.03}  # make_reference.py
ABIDE = ("abide", "ABIDE_CT_pipelines_DKT_software_QC.csv")


def _study() -> pd.DataFrame:
    return pd.read_csv(DATA / "study.tsv", sep="\t")


def _study_files(tmp_path: Path, study: pd.DataFrame | None = None) -> tuple[Path, Path]:
    """The study as an ROI table and a participants.tsv."""
    study = _study() if study is None else study
    study[["participant_id", *ROIS]].to_csv(tmp_path / "rois.tsv", sep="\t", index=False, na_rep="n/a")
    study[["participant_id", "site", "age", "sex", "dx"]].to_csv(
        tmp_path / "participants.tsv", sep="\t", index=False, na_rep="n/a"
    )
    return tmp_path / "rois.tsv", tmp_path / "participants.tsv"


def _reference(name: str) -> np.ndarray:
    return pd.read_csv(DATA / f"neuroharmonize_{name}.tsv", sep="\t")[ROIS].to_numpy()


def test_combat_equals_neuroharmonize():
    study = _study()
    fit = combat(study[ROIS], study["site"], study[["age", "sex", "dx"]])
    assert fit.eb and list(fit.sites) == ["A", "B", "C", "D"] and list(fit.n_per_site) == [20, 15, 25, 12]
    np.testing.assert_allclose(fit.harmonized, _reference("combat"), rtol=0, atol=1e-6)
    assert not np.allclose(fit.harmonized, study[ROIS], atol=1e-3)  # it did change the values


def test_combat_gam_equals_neuroharmonize():
    study = _study()
    fit = combat(study[ROIS], study["site"], study[["sex", "dx"]], smooth=study[["age"]], seed=0)
    np.testing.assert_allclose(fit.harmonized, _reference("gam"), rtol=0, atol=1e-6)
    assert fit.penalty.shape == (len(ROIS), 1) and (fit.penalty > 0).all()
    linear = combat(study[ROIS], study["site"], study[["age", "sex", "dx"]])
    assert np.abs(fit.harmonized - linear.harmonized).max() > 1e-4  # the smooth age is not the linear one


def test_without_eb_each_site_has_the_pooled_residual_mean_and_variance():
    """Without empirical Bayes, ComBat standardizes each site exactly: residual mean 0, var_pooled."""
    study = _study()
    covariates = study[["age", "sex", "dx"]].to_numpy(float)
    fit = combat(study[ROIS], study["site"], covariates, eb=False)
    grand = (fit.n_per_site / len(study)) @ fit.beta[:4]
    residual = fit.harmonized - grand - covariates @ fit.beta[4:]
    for site in fit.sites:
        part = residual[study["site"].to_numpy() == site]
        np.testing.assert_allclose(part.mean(axis=0), 0, atol=1e-12)
        np.testing.assert_allclose(part.var(axis=0, ddof=1), fit.var_pooled, rtol=1e-10)
    # the covariate coefficients are those of OLS with site dummies
    for j, roi in enumerate(ROIS):
        ols = smf.ols(f"{roi} ~ 0 + C(site) + age + sex + dx", study).fit()
        np.testing.assert_allclose(fit.beta[4:, j], ols.params[["age", "sex", "dx"]], rtol=1e-8)


def test_planted_site_effects_go_and_covariate_effects_stay(tmp_path):
    study = _study()
    result = harmonize_rois(
        read_roi_tables([_study_files(tmp_path)[0]]),
        load_participants(tmp_path / "participants.tsv"),
        site="site",
        covariates="age + C(sex) + C(dx)",
    )
    v = result.variance.set_index("key")
    assert list(result.variance.columns) == [*VARIANCE_COLUMNS, "key"]
    assert (v["site_r2_unique_before"] > 0.15).all() and (v["site_r2_unique_after"] < 0.01).all()
    harmonized = study.copy()
    harmonized[ROIS] = result.harmonized.loc[study["participant_id"].str[4:], ROIS].to_numpy()
    sites = study["site"]
    for roi in ROIS:
        naive = smf.ols(f"{roi} ~ age + sex + dx", study).fit()
        after = smf.ols(f"{roi} ~ age + sex + dx", harmonized).fit()
        # sites confound age (planted shifts + different age ranges): the naive age slope is off ...
        assert abs(naive.params["age"] - PLANTED["age"]) > 0.003
        # ... after harmonization the planted effects are recovered without a site term
        assert after.params["age"] == pytest.approx(PLANTED["age"], abs=0.0025)
        assert after.params["dx"] == pytest.approx(PLANTED["dx"], abs=0.03)
        assert after.pvalues["dx"] < min(naive.pvalues["dx"], 0.01)
        # the planted scale differences (0.7 to 1.6) are gone: the residual SDs of the sites agree
        sd_before = naive.resid.groupby(sites).std()
        sd_after = after.resid.groupby(sites).std()
        assert sd_before.max() / sd_before.min() > 1.5 and sd_after.max() / sd_after.min() < 1.3


def test_site_variance_share_against_statsmodels():
    study = _study()
    total, unique = site_variance_share(study[ROIS], study["site"], study[["age", "sex", "dx"]])
    for j, roi in enumerate(ROIS):
        alone = smf.ols(f"{roi} ~ C(site)", study).fit()
        full = smf.ols(f"{roi} ~ C(site) + age + sex + dx", study).fit()
        reduced = smf.ols(f"{roi} ~ age + sex + dx", study).fit()
        assert total[j] == pytest.approx(alone.rsquared, rel=1e-9)
        assert unique[j] == pytest.approx(full.rsquared - reduced.rsquared, rel=1e-9)


@pytest.mark.parametrize(
    ("roi", "family"),
    [("precuneus", "parietal"), ("parsorbitalis", "frontal"), ("bankssts", "temporal"), ("insula", "insula"),
     ("isthmuscingulate", "cingulate"), ("pericalcarine", "occipital"), ("G_front_middle", "frontal"),
     ("S_temporal_sup", "temporal"), ("Hippocampus", "other")],
)  # fmt: skip
def test_region_family(roi, family):
    assert region_family(roi) == family


def _error(tmp_path: Path, study: pd.DataFrame, **options) -> str:
    table, participants = _study_files(tmp_path, study)
    kwargs = {"site": "site", "covariates": "age + C(sex) + C(dx)", "figures": False} | options
    with pytest.raises(ValueError) as info:
        run_harmonize([table], participants, output_dir=tmp_path / "out", **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message.replace(str(tmp_path) + "/", "")


def test_one_line_errors(tmp_path):
    study = _study()
    assert _error(tmp_path, study, site="scanner") == (
        "participants.tsv: no site column 'scanner'. Available: age, dx, sex, site"
    )
    lonely = study.copy()
    lonely.loc[0, "site"] = "E"
    assert _error(tmp_path, lonely) == (
        "participants.tsv: site 'E' of column 'site' has 1 subject (sub-001); ComBat needs at least 2 per "
        "site: drop that subject or merge the site with another"
    )
    holes = study.copy()
    holes.loc[3, "rh_insula"] = np.nan
    assert _error(tmp_path, holes) == (
        "ROI tables: 1 missing values (sub-004 rh_insula …); ComBat needs every ROI of every subject: drop "
        "those subjects or ROIs (--roi)"
    )
    no_site = study.copy()
    no_site.loc[5, "site"] = np.nan
    assert _error(tmp_path, no_site) == (
        "participants.tsv: column 'site' has 1 missing values (sub-006 …); every subject needs a site"
    )
    no_age = study.copy()
    no_age.loc[2, "age"] = np.nan
    assert _error(tmp_path, no_age) == (
        "participants.tsv: column 'age' has 1 missing values; choose a missing-value policy (drop or impute)"
    )
    one_site = study.assign(site="A")
    assert _error(tmp_path, one_site) == (
        "participants.tsv: column 'site' has one site only (A); nothing to harmonize"
    )
    confounded = study.assign(dx=(study["site"] == "B").astype(int))
    assert _error(tmp_path, confounded) == (
        "participants.tsv: the covariates are collinear with the sites (e.g. a group at one site only)"
    )
    assert _error(tmp_path, study, covariates="age + C(site)") == (
        "--covariates 'age + C(site)': the site column 'site' cannot be a covariate"
    )
    assert _error(tmp_path, study, smooth_terms=["weight"]).startswith(
        "--smooth-terms weight: no such column."
    )


def test_missing_policy_drops_subjects(tmp_path):
    study = _study()
    study.loc[2, "age"] = np.nan
    table, participants = _study_files(tmp_path, study)
    result = run_harmonize([table], participants, site="site", covariates="age + C(sex) + C(dx)",
                           missing="drop", figures=False, output_dir=tmp_path / "out")  # fmt: skip
    assert len(result.harmonized) == len(study) - 1 and "003" not in result.harmonized.index
    assert result.missing.dropped == {"age": ["003"]}


def test_roi_glm_harmonize_fits_the_harmonized_values(tmp_path):
    """``fit_roi_glm(harmonize=...)`` = ComBat with the formula's covariates, then the same OLS."""
    table, participants = _study_files(tmp_path)
    data, frame = read_roi_tables([table]), load_participants(participants)
    options = {"formula": "{roi} ~ age + C(sex) + C(dx)", "predictor": "dx", "missing": "drop"}
    plain = fit_roi_glm(data, frame, **options)
    harmonized = fit_roi_glm(data, frame, harmonize="site", **options)
    direct = harmonize_rois(data, frame, site="site", covariates="age + C(sex) + C(dx)")
    study = _study()
    for _, row in harmonized.table.iterrows():
        values = direct.harmonized.loc[study["participant_id"].str[4:], row["key"]].to_numpy()
        ols = smf.ols("y ~ age + C(sex) + C(dx)", study.assign(y=values)).fit()
        assert row["term"] == "C(dx)[T.1.0]"  # participants.tsv numbers are floats
        assert row["coef"] == pytest.approx(ols.params["C(dx)[T.1]"], rel=1e-9)
        assert row["t"] == pytest.approx(ols.tvalues["C(dx)[T.1]"], rel=1e-9)
    assert harmonized.table["p"].max() < plain.table["p"].min()  # the site noise hid the planted dx effect
    assert "harmonized across 4 sites of 'site'" in harmonized.summary()
    with pytest.raises(ValueError, match=r"^--harmonize scanner: no such column in participants\. "):
        fit_roi_glm(data, frame, harmonize="scanner", **options)
    with pytest.raises(ValueError, match=r"^--harmonize site: the site column is also a term of"):
        fit_roi_glm(data, frame, harmonize="site", **(options | {"formula": "{roi} ~ age + C(dx) + C(site)"}))


def test_run_harmonize_writes_tables_and_figures(tmp_path):
    table, participants = _study_files(tmp_path)
    result = run_harmonize([table], participants, site="site", covariates="age + C(sex) + C(dx)",
                           output_dir=tmp_path / "out")  # fmt: skip
    out = tmp_path / "out"
    written = pd.read_csv(out / "harmonized.tsv", sep="\t")
    assert list(written.columns) == ["participant_id", *ROIS]
    np.testing.assert_allclose(written[ROIS], _reference("combat"), atol=1e-6)
    again = read_roi_tables([out / "harmonized.tsv"])  # what `smriflow stats roi` would read
    assert list(again.values.columns) == ROIS and len(again.values) == 72
    assert list(pd.read_csv(out / "site_variance.tsv", sep="\t").columns) == VARIANCE_COLUMNS
    families = ["frontal", "parietal", "insula", "occipital", "cingulate"]
    assert sorted(p.name for p in (out / "figures").iterdir()) == sorted(
        f"harmonize_site_variance_{f}.png" for f in families
    )
    assert set(result.files) == {"harmonized", "variance", "json", *(f"site_variance_{f}" for f in families)}
    before = (out / "harmonized.tsv").read_bytes()
    run_harmonize([table], participants, site="site", covariates="age + C(sex) + C(dx)", figures=False,
                  output_dir=tmp_path / "out")  # fmt: skip
    assert (out / "harmonized.tsv").read_bytes() == before


@pytest.mark.shared
def test_abide_fs53(shared_data, tmp_path):
    """ABIDE FS5.3 thickness, 779 subjects, 18 sites: site variance ≤ 1 % in the median region after
    ComBat, and the values equal neuroHarmonize's (stored rows and per-ROI means)."""
    raw = pd.read_csv(require_shared(*ABIDE))
    rows = raw[raw["software"] == "FS5.3"]
    rois = [c for c in rows.columns if c.startswith(("L_", "R_"))]
    ids = "sub-" + rows["SubjID"].astype(str)
    table = pd.concat([ids.rename("participant_id"), rows[rois]], axis=1)
    table.to_csv(tmp_path / "t.tsv", sep="\t", index=False)
    participants = pd.DataFrame({"participant_id": ids, "site": rows["SITE_ID"], "age": rows["AGE_AT_SCAN"],
                                 "sex": rows["SEX"], "dx": rows["DX_GROUP"]})  # fmt: skip
    participants.to_csv(tmp_path / "p.tsv", sep="\t", index=False)
    result = run_harmonize([tmp_path / "t.tsv"], tmp_path / "p.tsv", site="site", figures=False,
                           covariates="age + C(sex) + C(dx)", output_dir=tmp_path / "out")  # fmt: skip
    v = result.variance
    assert len(result.sites) == 779 and len(result.fit.sites) == 18 and len(v) == 62
    assert v["site_r2_unique_before"].median() > 0.2
    assert v["site_r2_unique_after"].median() <= 0.01
    reference = pd.read_csv(DATA / "abide_fs53_neuroharmonize.tsv", sep="\t").set_index("participant_id")
    ours = result.harmonized.copy()
    ours.index = "sub-" + ours.index
    head = reference.drop(index="mean")
    np.testing.assert_allclose(ours.loc[head.index, rois], head[rois], rtol=0, atol=1e-6)
    np.testing.assert_allclose(ours[rois].mean(), reference.loc["mean", rois], rtol=0, atol=1e-6)


def test_freesurfer_wide_tables_of_both_hemispheres(tmp_path):
    """aparcstats2table tables (lh and rh, eTIV in both) give the same harmonized values; eTIV is usable."""
    study = _study()
    _study_files(tmp_path)
    for hemi in ("lh", "rh"):
        rois = [r for r in ROIS if r.startswith(hemi)]
        table = study[rois].rename(columns=lambda c: f"{c}_thickness")
        table.insert(0, f"{hemi}.aparc.thickness", study["participant_id"])
        table["eTIV"] = 1.5e6 + 1e4 * (np.arange(len(study)) % 7)
        table.to_csv(tmp_path / f"{hemi}.tsv", sep="\t", index=False)
    tables = [tmp_path / "lh.tsv", tmp_path / "rh.tsv"]
    result = run_harmonize(tables, tmp_path / "participants.tsv", site="site", figures=False,
                           covariates="age + C(sex) + C(dx)", output_dir=tmp_path / "out")  # fmt: skip
    assert list(result.variance["roi"]) == [r.split("_", 1)[1] for r in ROIS]
    assert list(result.harmonized.columns) == [f"{r}_thickness" for r in ROIS]
    np.testing.assert_allclose(result.harmonized, _reference("combat"), rtol=0, atol=1e-6)
    with_etiv = run_harmonize(tables, tmp_path / "participants.tsv", site="site", figures=False,
                              covariates="age + eTIV", output_dir=tmp_path / "out2")  # fmt: skip
    assert list(with_etiv.covariates.columns) == ["age", "eTIV"]
    assert "eTIV" not in with_etiv.harmonized.columns
