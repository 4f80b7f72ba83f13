"""ROI-wise GLM: numbers equal statsmodels' own formula fits, corrections, missing values, errors, reruns."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from conftest import require_shared

from smriflow.stats.participants import load_participants
from smriflow.stats.roi_glm import RESULT_COLUMNS, corrected_threshold, fit_roi_glm, run_roi_glm
from smriflow.stats.tables import read_roi_tables

FS_STATS = ("aomic", "derivatives", "fs_stats")
FORMULA = "{roi} ~ age + eTIV + C(sex)"


def _shared_tables():
    name = "data-cortical_type-aparc_measure-thickness_hemi-{}.tsv"
    return [require_shared(*FS_STATS, name.format(h)) for h in ("lh", "rh")]


@pytest.mark.shared
def test_every_number_equals_statsmodels_formula_fits(shared_data, tmp_path):
    """Each ROI's coef, se, t, p, CI, R² and n equal smf.ols on the same data, to 1e-8."""
    tables = _shared_tables()
    participants = require_shared("aomic", "participants.tsv")
    result = run_roi_glm(
        tables, participants, formula=FORMULA, predictor="age", missing="drop", correction="fdr_bh",
        figures=False, output_dir=tmp_path,
    )  # fmt: skip
    table = pd.read_csv(tmp_path / "roi_glm.tsv", sep="\t", keep_default_na=False)
    assert list(table.columns) == RESULT_COLUMNS
    assert len(table) == 68 and set(table.hemi) == {"lh", "rh"}

    # independent assembly of the data: pandas only, no smriflow reader
    demo = pd.read_csv(participants, sep="\t", na_values="n/a", keep_default_na=False)
    demo["participant_id"] = demo["participant_id"].astype(str)
    wide = None
    for path in tables:
        frame = pd.read_csv(path, sep="\t")
        frame = frame.rename(columns={frame.columns[0]: "participant_id"})
        frame = frame.drop(
            columns=[c for c in ("eTIV", "BrainSegVolNotVent") if wide is not None and c in frame]
        )
        wide = frame if wide is None else wide.merge(frame, on="participant_id")
    data = demo.merge(wide, on="participant_id").dropna(subset=["age", "sex", "eTIV"])
    assert len(data) == 224  # sub-0105 (age, sex) and sub-0199 (age) are missing covariates
    for row in table.itertuples():
        column = f"{row.hemi}_{row.roi}_thickness"
        fit = smf.ols(f"{column} ~ age + eTIV + C(sex)", data=data).fit()
        low, high = fit.conf_int(alpha=0.05).loc["age"]
        expected = [fit.params["age"], fit.bse["age"], fit.tvalues["age"], fit.pvalues["age"], low, high,
                    fit.rsquared, fit.rsquared_adj]  # fmt: skip
        got = [row.coef, row.se, row.t, row.p, row.ci_low, row.ci_high, row.r2, row.r2_adj]
        np.testing.assert_allclose(got, expected, rtol=1e-8, atol=1e-12, err_msg=column)
        assert row.n == int(fit.nobs) and row.term == "age"
    # the unrounded values in memory match to 1e-12
    first = result.table.iloc[0]
    fit = smf.ols("lh_bankssts_thickness ~ age + eTIV + C(sex)", data=data).fit()
    assert abs(first["coef"] - fit.params["age"]) < 1e-12 and abs(first["p"] - fit.pvalues["age"]) < 1e-12


def _bh(p: np.ndarray) -> np.ndarray:
    m = len(p)
    order = np.argsort(p)
    ranked = p[order] * m / np.arange(1, m + 1)
    adjusted = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(adjusted, 1)
    return out


def _holm(p: np.ndarray) -> np.ndarray:
    m = len(p)
    order = np.argsort(p)
    stepped = np.maximum.accumulate(p[order] * (m - np.arange(m)))
    out = np.empty(m)
    out[order] = np.minimum(stepped, 1)
    return out


def _synthetic(tmp_path, n: int = 40, seed: int = 0, n_roi: int = 6):
    rng = np.random.default_rng(seed)
    age = rng.uniform(20, 70, n).round(1)
    sex = np.where(np.arange(n) % 2 == 0, "F", "M")
    etiv = rng.normal(1.5e6, 1e5, n)
    ids = [f"sub-{i:03d}" for i in range(n)]
    participants = pd.DataFrame({"participant_id": ids, "age": age, "sex": sex, "site": "A"})
    participants.to_csv(tmp_path / "participants.tsv", sep="\t", index=False)
    columns = {"lh.aparc.thickness": ids}
    for j in range(n_roi):
        hemi = "lh"
        slope = -0.01 * j  # ROI 0 has no age effect, the others increasingly strong ones
        columns[f"{hemi}_roi{j}_thickness"] = (2.8 + slope * age + rng.normal(0, 0.1, n)).round(5)
    columns["lh_MeanThickness_thickness"] = rng.normal(2.5, 0.1, n).round(5)
    columns["BrainSegVolNotVent"] = (etiv * 0.8).round(1)
    columns["eTIV"] = etiv.round(3)
    pd.DataFrame(columns).to_csv(tmp_path / "lh.tsv", sep="\t", index=False)
    return tmp_path / "lh.tsv", tmp_path / "participants.tsv"


@pytest.mark.parametrize("method", ["bonferroni", "holm", "fdr_bh"])
def test_corrections_equal_their_definitions(tmp_path, method):
    table, participants = _synthetic(tmp_path)
    result = fit_roi_glm(
        read_roi_tables([table]), load_participants(participants), formula=FORMULA, predictor="age",
        correction=method,
    )  # fmt: skip
    p = result.table["p"].to_numpy()
    expected = {"bonferroni": np.minimum(p * len(p), 1), "holm": _holm(p), "fdr_bh": _bh(p)}[method]
    np.testing.assert_allclose(result.table["p_corrected"], expected, rtol=1e-12)
    reject = expected <= 0.05
    assert result.threshold == (p[reject].max() if reject.any() else 0.05 / len(p))


def test_corrected_threshold_without_rejection():
    assert corrected_threshold(np.array([0.2, 0.5]), np.array([False, False]), 0.05) == 0.025


def test_missing_policies_report_subjects(tmp_path):
    table, participants = _synthetic(tmp_path, n=30)
    frame = pd.read_csv(participants, sep="\t", dtype=str)
    frame.loc[3, "age"] = "n/a"
    frame.loc[7, "sex"] = "n/a"
    frame.to_csv(participants, sep="\t", index=False)
    data, demo = read_roi_tables([table]), load_participants(participants)
    dropped = fit_roi_glm(data, demo, formula=FORMULA, predictor="age", missing="drop")
    assert dropped.missing.dropped == {"age": ["003"], "sex": ["007"]}
    assert set(dropped.table["n"]) == {28}
    imputed = fit_roi_glm(data, demo, formula=FORMULA, predictor="age", missing="impute")
    assert imputed.missing.imputed == {"age": ["003"], "sex": ["007"]}
    assert set(imputed.table["n"]) == {30}
    assert imputed.design.loc["003", "age"] == pytest.approx(demo["age"].drop("003").mean())
    # a subject missing one ROI value leaves that ROI's fit only
    wide = pd.read_csv(table, sep="\t")
    wide.loc[0, "lh_roi2_thickness"] = np.nan
    wide.to_csv(table, sep="\t", index=False, na_rep="n/a")
    result = fit_roi_glm(read_roi_tables([table]), demo, formula=FORMULA, predictor="age", missing="impute")
    assert result.table.set_index("roi")["n"].to_dict() == {f"roi{j}": 29 if j == 2 else 30 for j in range(6)}


def test_contrast_and_factor_predictor_agree(tmp_path):
    table, participants = _synthetic(tmp_path)
    data, demo = read_roi_tables([table]), load_participants(participants)
    by_predictor = fit_roi_glm(data, demo, formula=FORMULA, predictor="sex")
    by_contrast = fit_roi_glm(data, demo, formula=FORMULA, contrast="C(sex)[T.M]")
    assert set(by_predictor.table["term"]) == {"C(sex)[T.M]"}
    np.testing.assert_allclose(by_predictor.table["t"], by_contrast.table["t"], rtol=1e-12)
    difference = fit_roi_glm(data, demo, formula="{roi} ~ age + C(sex)", contrast="age - C(sex)[T.M]")
    fit = smf.ols("lh_roi1_thickness ~ age + C(sex)", data=demo.join(data.values)).fit()
    expected = fit.t_test("age - C(sex)[T.M]")
    row = difference.table.set_index("roi").loc["roi1"]
    assert row["t"] == pytest.approx(float(np.ravel(expected.tvalue)[0]), rel=1e-10)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"formula": "{roi} ~ agee + C(sex)"}, "participants: unknown column 'agee'. Did you mean 'age'?"),
        ({"formula": "{roi} ~ age + site"}, "participants: predictor 'site' has no variance (all 'A', n=40)"),
        ({"formula": "y ~ age"}, "--formula 'y ~ age': the left-hand side must be {roi}, e.g. "),
        ({"predictor": "eTIV2"}, "--predictor eTIV2: not a term of '" + FORMULA + "'. Did you mean 'eTIV'?"),
        ({"correction": "fdr"},
         "'correction' must be one of {'bonferroni', 'holm', 'fdr_bh'}. 'fdr' was provided."),
        ({"alpha": 1.5}, "'alpha' must be in (0, 1). 1.5 was provided."),
        ({"rois": ["roi9"]}, "--roi roi9: not in the tables."),
        ({"missing": "mean"}, "missing-value policy must be one of drop, impute; got 'mean'"),
    ],
)  # fmt: skip
def test_errors_are_one_clear_line(tmp_path, kwargs, message):
    table, participants = _synthetic(tmp_path)
    args = {"formula": FORMULA, "predictor": "age"} | kwargs
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        fit_roi_glm(read_roi_tables([table]), load_participants(participants), **args)


def test_fewer_subjects_than_parameters(tmp_path):
    table, participants = _synthetic(tmp_path, n=4)
    with pytest.raises(ValueError, match=r"^participants: 4 subjects for 4 model parameters \(Intercept, "):
        fit_roi_glm(
            read_roi_tables([table]), load_participants(participants), formula=FORMULA, predictor="age"
        )


def test_rerun_is_byte_identical_and_tmap_paints_the_atlas(tmp_path):
    """Two runs give identical files; the t map holds each ROI's t on its atlas label."""
    import nibabel as nb

    from smriflow.data.atlases import atlas_dseg, atlas_labels

    rng = np.random.default_rng(1)
    n = 30
    ids = [f"sub-{i:02d}" for i in range(n)]
    age = rng.uniform(20, 60, n)
    pd.DataFrame({"participant_id": ids, "age": age.round(2)}).to_csv(
        tmp_path / "p.tsv", sep="\t", index=False
    )
    wide = {"lh.aparc.thickness": ids}
    for roi in ("bankssts", "cuneus", "insula"):
        wide[f"lh_{roi}_thickness"] = (3 - 0.01 * age + rng.normal(0, 0.1, n)).round(4)
    wide["eTIV"] = rng.normal(1.5e6, 1e5, n).round(2)
    pd.DataFrame(wide).to_csv(tmp_path / "lh.tsv", sep="\t", index=False)
    outs = []
    for name in ("a", "b"):
        run_roi_glm(
            [tmp_path / "lh.tsv"], tmp_path / "p.tsv", formula="{roi} ~ age + eTIV", predictor="age",
            correction="holm", output_dir=tmp_path / name,
        )  # fmt: skip
        outs.append(tmp_path / name)
    files = sorted(p.relative_to(outs[0]) for p in outs[0].rglob("*") if p.is_file())
    assert {str(f) for f in files} >= {"roi_glm.tsv", "missing.tsv", "design.tsv", "roi_glm.json",
                                       "figures/roi_glm_pvalues.png", "figures/roi_glm_tmap.nii.gz",
                                       "figures/roi_glm_scatter.png", "figures/roi_glm_tmap.png"}  # fmt: skip
    assert {"figures/roi_glm_surf.png", "figures/roi_glm_hemi-L_space-fsaverage5_desc-t.func.gii",
            "figures/roi_glm_hemi-R_space-fsaverage5_desc-t.func.gii"} <= {str(f) for f in files}  # fmt: skip
    for relative in files:  # tables, JSON, NIfTI and PNG figures alike
        assert (outs[0] / relative).read_bytes() == (outs[1] / relative).read_bytes(), relative
    table = pd.read_csv(outs[0] / "roi_glm.tsv", sep="\t").set_index("roi")
    tmap = np.asanyarray(nb.load(outs[0] / "figures/roi_glm_tmap.nii.gz").dataobj)
    atlas = np.asanyarray(atlas_dseg("desikan_killiany").dataobj)
    labels = atlas_labels("desikan_killiany").set_index("name")["label"]
    for roi in ("bankssts", "cuneus", "insula"):
        inside = tmap[atlas == labels[f"ctx-lh-{roi}"]]
        assert np.allclose(inside, table.loc[roi, "t"], atol=1e-5)
    assert np.all(tmap[atlas == labels["ctx-rh-insula"]] == 0)


def test_fsaverage5_labels_dk_is_the_annotation_destrieux_the_transfer():
    from smriflow.data.atlases import atlas_labels
    from smriflow.data.fsaverage import fsaverage5_annotation
    from smriflow.stats.plots import fsaverage5_labels

    annotation = fsaverage5_annotation("desikankilliany")
    for name in ("desikankilliany", "desikan_killiany"):  # equal, not identical: caches may be cleared
        labels = fsaverage5_labels(name)
        for side in ("left", "right"):
            np.testing.assert_array_equal(labels[side].labels, annotation[side].labels)
            assert labels[side].names == annotation[side].names
    destrieux = fsaverage5_labels("destrieux")
    for side, key in (("left", "lh"), ("right", "rh")):
        part = destrieux[side]
        assert part.labels.shape == (10242,)
        assert 0.85 < (part.labels >= 0).mean() < 0.99  # the medial wall stays blank (-1)
        volume = {n.removeprefix(f"ctx_{key}_") for n in atlas_labels("destrieux")["name"]}
        assert set(part.names) <= volume - {"Unknown"}
        assert len(np.unique(part.labels[part.labels >= 0])) >= 70  # of the 74 Destrieux regions
    with pytest.raises(
        ValueError, match=r"^atlas 'aal': no fsaverage5 parcellation; choose desikan_killiany"
    ):
        fsaverage5_labels("aal")


def _study(tmp_path, header: str, columns: list[str], n: int = 24):
    rng = np.random.default_rng(3)
    ids = [f"sub-{i:02d}" for i in range(n)]
    age = rng.uniform(20, 60, n)
    pd.DataFrame({"participant_id": ids, "age": age.round(2)}).to_csv(
        tmp_path / "p.tsv", sep="\t", index=False
    )
    wide = {header: ids}
    for j, column in enumerate(columns):
        wide[column] = (3 - 0.005 * j * age + rng.normal(0, 0.1, n)).round(4)
    wide["eTIV"] = rng.normal(1.5e6, 1e5, n).round(2)
    pd.DataFrame(wide).to_csv(tmp_path / "table.tsv", sep="\t", index=False)
    return tmp_path / "table.tsv", tmp_path / "p.tsv"


def _gifti(path):
    import nibabel as nb

    image = nb.load(path)
    return np.asarray(image.darrays[0].data), dict(image.meta)


def test_dk_t_values_land_on_their_annotation_vertices(tmp_path):
    """Each ROI's t sits on exactly the vertices of its region in FreeSurfer's fsaverage5 DK annotation."""
    from smriflow.data.fsaverage import fsaverage5_annotation

    columns = ["lh_superiorfrontal_thickness", "lh_insula_thickness", "rh_precuneus_thickness"]
    table, participants = _study(tmp_path, "lh.aparc.thickness", columns)
    result = run_roi_glm(
        [table], participants, formula="{roi} ~ age", predictor="age", output_dir=tmp_path / "out"
    )
    t = result.table.set_index("key")["t"]
    annotation = fsaverage5_annotation("desikankilliany")
    for side, hemi in (("left", "L"), ("right", "R")):
        values, meta = _gifti(tmp_path / f"out/figures/roi_glm_hemi-{hemi}_space-fsaverage5_desc-t.func.gii")
        assert values.shape == (10242,) and values.dtype == np.float32
        assert meta["Description"] == "t of age on fsaverage5, desikan_killiany annotation"
        expected = np.full(10242, np.nan, dtype=np.float32)
        for column in columns:
            hemi_of, roi = column.split("_")[:2]
            if (hemi_of == "lh") == (side == "left"):
                expected[annotation[side].labels == annotation[side].names.index(roi)] = t[column]
        np.testing.assert_array_equal(values, expected)  # NaN on every vertex of no ROI (medial wall too)
    assert result.files["surface_left"].endswith("roi_glm_hemi-L_space-fsaverage5_desc-t.func.gii")


def test_destrieux_t_values_use_the_transfer(tmp_path):
    """An aparc.a2009s table is painted on the labels transferred from the Destrieux volume atlas."""
    from smriflow.stats.plots import fsaverage5_labels

    columns = ["lh_G&S_frontomargin_thickness", "lh_S_central_thickness", "lh_G_front_sup_thickness"]
    table, participants = _study(tmp_path, "lh.aparc.a2009s.thickness", columns)
    result = run_roi_glm(
        [table], participants, formula="{roi} ~ age", predictor="age", output_dir=tmp_path / "out"
    )
    t = result.table.set_index("key")["t"]
    values, meta = _gifti(result.files["surface_left"])
    assert meta["Description"] == (
        "t of age on fsaverage5, destrieux labels transferred from the volume atlas"
    )
    left = fsaverage5_labels("destrieux")["left"]
    for column, label in zip(columns, ["G_and_S_frontomargin", "S_central", "G_front_sup"], strict=True):
        inside = left.labels == left.names.index(label)
        assert inside.sum() > 20 and np.all(values[inside] == np.float32(t[column]))
    painted = [left.names.index(x) for x in ("G_and_S_frontomargin", "S_central", "G_front_sup")]
    assert np.isnan(values[~np.isin(left.labels, painted)]).all()
    assert np.isnan(_gifti(result.files["surface_right"])[0]).all()


@pytest.mark.shared
def test_shared_dk_thickness_on_fsaverage5(shared_data, tmp_path):
    """The vertices of lh superiorfrontal in the annotation carry that ROI's t from roi_glm.tsv."""
    from smriflow.data.fsaverage import fsaverage5_annotation

    participants = require_shared("aomic", "participants.tsv")
    run_roi_glm(
        _shared_tables(), participants, formula=FORMULA, predictor="age", missing="drop", correction="fdr_bh",
        output_dir=tmp_path,
    )  # fmt: skip
    table = pd.read_csv(tmp_path / "roi_glm.tsv", sep="\t").set_index(["hemi", "roi"])
    annotation = fsaverage5_annotation("desikankilliany")
    for side, hemi in (("left", "lh"), ("right", "rh")):
        path = tmp_path / f"figures/roi_glm_hemi-{hemi[0].upper()}_space-fsaverage5_desc-t.func.gii"
        values, _ = _gifti(path)
        labels, names = annotation[side].labels, annotation[side].names
        assert values.shape == (10242,)
        assert np.isnan(values[labels == names.index("unknown")]).all()
        assert not np.isnan(values[labels != names.index("unknown")]).any()  # all 34 regions in the table
        for roi in ("superiorfrontal", "insula", "bankssts"):
            inside = values[labels == names.index(roi)]
            assert inside.size > 50 and np.all(inside == np.float32(table.loc[(hemi, roi), "t"]))
    superiorfrontal = _gifti(tmp_path / "figures/roi_glm_hemi-L_space-fsaverage5_desc-t.func.gii")[0]
    assert np.nanmin(superiorfrontal) == np.float32(table["t"].min())  # lh superiorfrontal, t = -5.653


def test_smriflow_region_table_gets_its_atlas_maps(tmp_path):
    """A table named atlas-<label>_… whose columns are atlas labels is painted on that atlas."""
    import nibabel as nb

    from smriflow.data.atlases import atlas_dseg, atlas_labels

    labels = atlas_labels("desikan_killiany")
    names = [n for n in labels["name"] if n.startswith("ctx-") and not n.endswith("unknown")]
    names += ["Left-Hippocampus", "Right-Hippocampus"]
    rng = np.random.default_rng(2)
    n = 16
    age = rng.uniform(20, 70, n)
    wide = pd.DataFrame({name: 1000 - 3 * age + rng.normal(0, 20, n) for name in names})
    wide.insert(0, "participant_id", [f"sub-{i:02d}" for i in range(n)])
    wide.to_csv(tmp_path / "atlas-desikankilliany_gmvolume.tsv", sep="\t", index=False)
    pd.DataFrame({"participant_id": wide["participant_id"], "age": age}).to_csv(tmp_path / "p.tsv", sep="\t")
    result = run_roi_glm(
        [tmp_path / "atlas-desikankilliany_gmvolume.tsv"], tmp_path / "p.tsv", formula="{roi} ~ age",
        predictor="age", output_dir=tmp_path / "out",
    )  # fmt: skip
    assert {"tmap", "surface", "scatter", "pvalues"} <= set(result.files)
    row = result.table.set_index("key").loc["Right-Hippocampus"]
    assert (row["roi"], row["hemi"]) == ("Hippocampus", "rh")
    tmap = np.asanyarray(nb.load(result.files["tmap"]).dataobj)
    atlas = np.asanyarray(atlas_dseg("desikan_killiany").dataobj)
    label = labels.set_index("name").loc["Right-Hippocampus", "label"]
    assert np.allclose(tmap[atlas == label], row["t"], atol=1e-5)
    # its ctx-lh-<region> columns land on the regions of FreeSurfer's fsaverage5 annotation
    from smriflow.data.fsaverage import fsaverage5_annotation

    left = fsaverage5_annotation("desikankilliany")["left"]
    values = _gifti(result.files["surface_left"])[0]
    t = result.table.set_index("key")["t"]
    for region in ("superiorfrontal", "insula"):
        inside = values[left.labels == left.names.index(region)]
        assert np.all(inside == np.float32(t[f"ctx-lh-{region}"]))
