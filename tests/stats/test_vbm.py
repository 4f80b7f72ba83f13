"""smriflow.stats.vbm: modulation on a known deformation, GLM vs nilearn, thresholds, errors, reruns."""

from __future__ import annotations

import filecmp
from pathlib import Path

import nibabel as nb
import numpy as np
import pandas as pd
import pytest
from conftest import require_shared
from scipy.stats import norm

from smriflow.stats.vbm import (
    check_maps_on_one_grid,
    contrast_vector,
    find_modulated_maps,
    modulate_gm,
    pair_jacobians,
    run_vbm,
    subject_label,
)

AOMIC = ("aomic", "derivatives", "vbm", "subset")

# ----------------------------------------------------------------------------------------------------
# Modulation on a synthetic deformation whose answer is known.
# The template -> subject mapping T is separable, T_i(p) = s_i p_i + a_i sin(k p_i) (mm), so
# det grad T = prod_i (s_i + a_i k cos(k p_i)). The native GM is a Gaussian blob of known integral
# 0.8 (2 pi)^(3/2) sigma^3, and the warped map is sampled exactly: warped(p) = gm(T(p)).
SHAPE, SPACING, ORIGIN = (36, 36, 36), 2.0, -35.0
SCALE, AMPLITUDE, WAVENUMBER = np.array([1.15, 0.9, 1.05]), np.array([4.0, -3.0, 2.0]), 2 * np.pi / 80
SIGMA, CENTRE = 7.0, np.array([3.0, -2.0, 4.0])
NATIVE_MM3 = 0.8 * (2 * np.pi) ** 1.5 * SIGMA**3


def _grid_mm() -> np.ndarray:
    ijk = np.indices(SHAPE).astype(np.float64)
    return ORIGIN + SPACING * np.moveaxis(ijk, 0, -1)  # (X, Y, Z, 3) physical coordinates


def _mapping(p: np.ndarray) -> np.ndarray:
    return SCALE * p + AMPLITUDE * np.sin(WAVENUMBER * p)


def _warped_gm(p: np.ndarray) -> np.ndarray:
    y = _mapping(p)
    return 0.8 * np.exp(-((y - CENTRE) ** 2).sum(-1) / (2 * SIGMA**2))


def _analytic_det(p: np.ndarray) -> np.ndarray:
    return np.prod(SCALE + AMPLITUDE * WAVENUMBER * np.cos(WAVENUMBER * p), axis=-1)


def _ras_image(data: np.ndarray, path: Path) -> Path:
    affine = np.diag([SPACING, SPACING, SPACING, 1.0])
    affine[:3, 3] = ORIGIN
    nb.Nifti1Image(data.astype(np.float32), affine).to_filename(str(path))
    return path


def test_fsl_convention_preserves_the_native_volume(tmp_path):
    p = _grid_mm()
    gm = _ras_image(_warped_gm(p), tmp_path / "sub-01_GM.nii.gz")
    jac = _ras_image(_analytic_det(p), tmp_path / "sub-01_J.nii.gz")  # FNIRT's --jout: det of ref -> input
    modulated = modulate_gm(gm, jac, "fsl")
    volume = np.asanyarray(modulated.dataobj, dtype=np.float64).sum() * SPACING**3
    assert volume == pytest.approx(NATIVE_MM3, rel=1e-4)
    # the test can tell the two directions apart: dividing misses by the mean volume change (~9 %)
    divided = (_warped_gm(p) / _analytic_det(p)).sum() * SPACING**3
    assert abs(divided / NATIVE_MM3 - 1) > 0.05
    assert modulated.get_data_dtype() == np.float32
    assert np.allclose(modulated.affine, nb.load(gm).affine)


@pytest.mark.ants
def test_ants_convention_preserves_the_native_volume(tmp_path):
    """J computed by ANTs itself from the forward displacement field u(p) = T(p) - p (LPS, template grid)."""
    ants = pytest.importorskip("ants")
    p = _grid_mm()  # read as LPS physical coordinates of an ANTs image with identity direction
    kwargs = {"origin": (ORIGIN,) * 3, "spacing": (SPACING,) * 3}
    field = ants.from_numpy((_mapping(p) - p).astype(np.float32), has_components=True, **kwargs)
    ants.image_write(field, str(tmp_path / "sub-01_1Warp.nii.gz"))
    domain = ants.from_numpy(_warped_gm(p).astype(np.float32), **kwargs)
    ants.image_write(domain, str(tmp_path / "sub-01_GM.nii.gz"))
    det = ants.create_jacobian_determinant_image(domain, str(tmp_path / "sub-01_1Warp.nii.gz"), do_log=False)
    ants.image_write(det, str(tmp_path / "sub-01_J.nii.gz"))
    # ANTs' determinant is the template -> subject one (J > 1 where the subject is larger) ...
    inner = (slice(3, -3),) * 3  # ANTs is off on the outermost voxel layers
    assert np.allclose(det.numpy()[inner], _analytic_det(p)[inner], rtol=3e-3)
    modulated = modulate_gm(tmp_path / "sub-01_GM.nii.gz", tmp_path / "sub-01_J.nii.gz", "ants")
    volume = np.asanyarray(modulated.dataobj, dtype=np.float64).sum() * SPACING**3
    # ... so multiplying recovers the native volume (up to ANTs' finite differences)
    assert volume == pytest.approx(NATIVE_MM3, rel=2e-3)


# ----------------------------------------------------------------------------------------------------
# Small synthetic studies for the errors and the end-to-end properties.
def _write(path: Path, data: np.ndarray, zoom: float = 2.0, shift: float = 0.0) -> Path:
    affine = np.diag([zoom, zoom, zoom, 1.0])
    affine[:3, 3] = -zoom * (np.array(data.shape) - 1) / 2 + shift
    path.parent.mkdir(parents=True, exist_ok=True)
    nb.Nifti1Image(data.astype(np.float32), affine).to_filename(str(path))
    return path


def _participants(path: Path, rows: list[tuple[str, float, str]]) -> Path:
    frame = pd.DataFrame(rows, columns=["participant_id", "age", "sex"])
    frame.to_csv(path, sep="\t", index=False)
    return path


def _study(root: Path, n: int = 12, shape=(16, 16, 16), effect: float = 0.03, seed: int = 0) -> Path:
    """smriflow-style derivatives with an age effect planted in one corner block (positive z expected)."""
    rng = np.random.default_rng(seed)
    ages = np.linspace(20, 40, n)
    rows = []
    for i, age in enumerate(ages):
        label = f"{i + 1:02d}"
        gm = np.full(shape, 0.5) + rng.normal(0, 0.02, shape)
        gm[2:7, 2:7, 2:7] += effect * (age - 30)
        anat = root / f"sub-{label}" / "anat"
        _write(anat / f"sub-{label}_space-MNI152NLin2009aSym_label-GM_probseg.nii.gz", gm)
        _write(anat / f"sub-{label}_space-MNI152NLin2009aSym_label-GM_desc-modulated_probseg.nii.gz", gm)
        rows.append((f"sub-{label}", float(age), "MF"[i % 2]))
    _participants(root / "participants.tsv", rows)
    return root


@pytest.mark.parametrize("height_control", ["fdr", "bonferroni"])
def test_planted_age_effect_is_found_where_it_was_put(tmp_path, height_control):
    root = _study(tmp_path / "deriv")
    result = run_vbm(
        derivatives=root, participants=root / "participants.tsv", design="age + C(sex)", contrast="age",
        output_dir=tmp_path / "out", smoothing_fwhm=0, height_control=height_control, alpha=0.05,
        cluster_threshold=10, atlases=(),
    )  # fmt: skip
    if height_control == "bonferroni":  # two-sided, over the 16^3 mask voxels
        assert result.n_voxels == 16**3
        assert result.threshold == pytest.approx(norm.isf(0.05 / 2 / 16**3))
    thresholded = np.asanyarray(nb.load(result.files["thresholded"]).dataobj)
    block = np.zeros(thresholded.shape, dtype=bool)
    block[2:7, 2:7, 2:7] = True
    assert (thresholded[block] > 0).all()  # every planted voxel survives, with a positive z
    assert not thresholded[~block].any()  # nothing else does (FDR on pure noise, clusters >= 10 voxels)
    table = pd.read_csv(result.files["clusters"], sep="\t", dtype={"cluster_id": str})
    assert list(table.columns) == ["cluster_id", "x", "y", "z", "peak_z", "cluster_size_mm3"]
    main = table[table["cluster_id"] == "1"].iloc[0]
    assert main["cluster_size_mm3"] == 125 * 8
    peak = np.linalg.inv(nb.load(result.files["z"]).affine) @ [main["x"], main["y"], main["z"], 1]
    assert all(2 <= v <= 6 for v in peak[:3])
    assert result.subjects == [f"{i:02d}" for i in range(1, 13)]
    assert len(result.modulated) == 12 and all(p.is_file() for p in result.modulated)
    design = pd.read_csv(result.files["design"], sep="\t")
    assert list(design.columns) == ["participant_id", "Intercept", "C(sex)[T.M]", "age"]


def test_resampling_and_a_given_mask(tmp_path):
    root = _study(tmp_path / "deriv", n=6, shape=(12, 12, 12))
    mask = np.zeros((24, 24, 24))
    mask[4:20, 4:20, 4:20] = 1
    mask_file = _write(tmp_path / "mask.nii.gz", mask, zoom=1.0)  # 1 mm mask, maps at 2 mm, analysis at 3 mm
    result = run_vbm(
        derivatives=root, participants=root / "participants.tsv", design="age", contrast="age",
        output_dir=tmp_path / "out", smoothing_fwhm=4, resample_mm=3, mask=mask_file, atlases=(),
    )  # fmt: skip
    z = nb.load(result.files["z"])
    assert np.allclose(np.abs(np.diag(z.affine)[:3]), 3.0)
    out_mask = np.asanyarray(nb.load(result.files["mask"]).dataobj).astype(bool)
    world = z.affine @ np.r_[np.argwhere(out_mask).T, np.ones((1, out_mask.sum()))]
    assert out_mask.any() and (np.abs(world[:3]) <= 8.5).all()  # inside the given mask's 16 mm cube


# ----------------------------------------------------------------------------------------------------
# One-line errors
def test_subject_labels_and_pairing(tmp_path):
    assert subject_label("/x/sub-0001_space-GM226_label-GM_probseg.nii.gz") == "0001"
    with pytest.raises(ValueError, match=r"^/x/GM_0001\.nii\.gz: no 'sub-<label>' in the file name"):
        subject_label("/x/GM_0001.nii.gz")
    pairs = pair_jacobians(["b/sub-02_GM.nii", "a/sub-01_GM.nii"], ["sub-01_J.nii", "sub-02_J.nii"])
    assert [(g.name, j.name) for g, j in pairs] == [
        ("sub-01_GM.nii", "sub-01_J.nii"),
        ("sub-02_GM.nii", "sub-02_J.nii"),
    ]
    with pytest.raises(ValueError, match=r"^sub-03_GM\.nii: sub-03 has a GM map but no Jacobian$"):
        pair_jacobians(["sub-01_GM.nii", "sub-03_GM.nii"], ["sub-01_J.nii"])
    with pytest.raises(
        ValueError, match=r"^sub-01_b\.nii: sub-01 is given twice in --gm-maps \(also sub-01_a\.nii\)$"
    ):
        pair_jacobians(["sub-01_a.nii", "sub-01_b.nii"], ["sub-01_J.nii"])


def test_grid_errors_name_both_files(tmp_path):
    a = _write(tmp_path / "sub-01_GM.nii.gz", np.ones((8, 8, 8)))
    b = _write(tmp_path / "sub-02_GM.nii.gz", np.ones((8, 8, 9)))
    c = _write(tmp_path / "sub-03_GM.nii.gz", np.ones((8, 8, 8)), shift=1.0)
    with pytest.raises(ValueError) as info:
        check_maps_on_one_grid([a, b])
    assert str(info.value) == (
        f"{b}: shape (8, 8, 9) differs from {a} (shape (8, 8, 8)); every map must be on the same grid"
    )
    with pytest.raises(ValueError) as info:
        check_maps_on_one_grid([a, c], what="GM map")
    assert str(info.value) == f"{c}: affine differs from {a}; every GM map must be on the same grid"
    jac = _write(tmp_path / "sub-01_J.nii.gz", np.ones((8, 8, 9)))
    with pytest.raises(ValueError) as info:
        modulate_gm(a, jac, "fsl")
    assert str(info.value) == (
        f"{jac}: Jacobian grid (shape (8, 8, 9)) differs from the grid of its GM map {a} "
        "(shape (8, 8, 8), or the affines differ)"
    )


def test_jacobian_values_and_convention_are_checked(tmp_path):
    gm = _write(tmp_path / "sub-01_GM.nii.gz", np.ones((4, 4, 4)))
    logj = np.full((4, 4, 4), 0.1)  # a log-Jacobian: negative where the subject is smaller
    logj[0, 0, :2] = -0.2
    jac = _write(tmp_path / "sub-01_J.nii.gz", logj)
    with pytest.raises(ValueError) as info:
        modulate_gm(gm, jac, "fsl")
    assert str(info.value) == (
        f"{jac}: 2 voxels have a Jacobian determinant <= 0 or not finite (min -0.2); "
        "a determinant is expected, not its logarithm"
    )
    with pytest.raises(
        ValueError, match=r"^'jacobian_convention' must be one of fsl, ants; 'spm' was given$"
    ):
        modulate_gm(gm, jac, "spm")


@pytest.fixture
def small_inputs(tmp_path):
    gms, jacs = [], []
    for label in ("01", "02", "03", "04", "05"):
        gms.append(_write(tmp_path / f"sub-{label}_GM.nii.gz", np.full((6, 6, 6), 0.5)))
        jacs.append(_write(tmp_path / f"sub-{label}_J.nii.gz", np.ones((6, 6, 6))))
    return tmp_path, gms, jacs


@pytest.mark.parametrize(
    ("rows", "design", "contrast", "message"),
    [
        (None, "age + C(sexx)", "age",
         "{tsv}: unknown column 'sexx'. Did you mean 'sex'? Available: age, sex"),
        ([("sub-0" + str(i), 20.0 + i, "F") for i in range(1, 6)], "age + C(sex)", "age",
         "{tsv}: predictor 'sex' has no variance (all 'F', n=5)"),
        (None, "age * C(sex) + I(age ** 2)", "age",
         "{tsv}: 5 subjects for 5 model parameters (Intercept, C(sex)[T.M], age, age:C(sex)[T.M], "
         "I(age ** 2)); need at least 6"),
        (None, "age + C(sex)", "height",
         "contrast 'height' is not a column of the design (or an expression of them). "
         "Available: C(sex)[T.M], Intercept, age, sex"),
        ([("sub-0" + str(i), 20.0 + i, "FM"[i % 2]) for i in range(1, 5)], "age", "age",
         "{tsv}: no row for sub-05 (subjects of the maps)"),
    ],
)  # fmt: skip
def test_design_errors(small_inputs, rows, design, contrast, message):
    root, gms, jacs = small_inputs
    rows = rows or [(f"sub-0{i}", 20.0 + 3 * i, "FM"[i % 2]) for i in range(1, 6)]
    tsv = _participants(root / "participants.tsv", rows)
    with pytest.raises(ValueError) as info:
        run_vbm(
            gm_maps=gms, jacobians=jacs, jacobian_convention="fsl", participants=tsv, design=design,
            contrast=contrast, output_dir=root / "out",
        )  # fmt: skip
    assert str(info.value) == message.format(tsv=tsv)
    assert not (root / "out").exists()  # nothing is written before the inputs are checked


def test_contrast_forms():
    columns = ["Intercept", "C(sex)[T.M]", "age", "BMI"]
    assert contrast_vector("age", columns).tolist() == [0, 0, 1, 0]
    assert contrast_vector("sex", columns).tolist() == [0, 1, 0, 0]
    assert contrast_vector("C(sex)[T.M]", columns).tolist() == [0, 1, 0, 0]
    assert contrast_vector("age - BMI", columns) == "age - BMI"  # nilearn evaluates expressions


def test_derivatives_discovery_errors(tmp_path):
    with pytest.raises(ValueError, match=r"derivatives folder not found$"):
        find_modulated_maps(tmp_path / "nope")
    with pytest.raises(ValueError) as info:
        find_modulated_maps(tmp_path)
    assert str(info.value) == (
        f"{tmp_path}: no sub-*/anat/sub-*_space-*_label-GM_desc-modulated_probseg.nii.gz found"
    )
    for space in ("A", "B"):
        _write(tmp_path / "sub-01" / "anat" / f"sub-01_space-{space}_label-GM_desc-modulated_probseg.nii.gz",
               np.ones((2, 2, 2)))  # fmt: skip
    with pytest.raises(ValueError, match=r"modulated maps in several template spaces \(A, B\); keep one$"):
        find_modulated_maps(tmp_path)


# ----------------------------------------------------------------------------------------------------
# The shared AOMIC subset: five subjects, FSL-VBM GM maps and Jacobians in the GM226 (MNI 2 mm) space.
@pytest.fixture(scope="module")
def aomic_run(tmp_path_factory):
    subset = require_shared(*AOMIC)
    participants = require_shared("aomic", "participants.tsv")
    gms = sorted(subset.glob("sub-*/sub-*_label-GM_probseg.nii.gz"))
    jacs = sorted(subset.glob("sub-*/sub-*_J.nii.gz"))
    kwargs = dict(
        gm_maps=gms, jacobians=jacs, jacobian_convention="fsl", participants=participants,
        design="age + C(sex)", contrast="age", smoothing_fwhm=3.0, height_control="fpr", alpha=0.05,
        cluster_threshold=50,
    )  # fmt: skip
    out = tmp_path_factory.mktemp("vbm")
    return kwargs, run_vbm(output_dir=out / "run1", **kwargs), out


@pytest.mark.shared
@pytest.mark.xdist_group("vbm_aomic")  # one worker runs the module fixture once
def test_aomic_thresholded_map_and_cluster_table(aomic_run):
    _, result, _ = aomic_run
    assert result.subjects == ["0001", "0002", "0003", "0004", "0005"]
    assert result.threshold == pytest.approx(norm.isf(0.025))  # fpr 0.05, two-sided
    z = np.asanyarray(nb.load(result.files["z"]).dataobj)
    thr = np.asanyarray(nb.load(result.files["thresholded"]).dataobj)
    mask = np.asanyarray(nb.load(result.files["mask"]).dataobj).astype(bool)
    assert thr.any() and not thr[~mask].any()
    assert (np.abs(thr[thr != 0]) >= result.threshold).all()
    assert np.array_equal(thr[thr != 0], z[thr != 0])
    table = pd.read_csv(result.files["clusters"], sep="\t", dtype={"cluster_id": str})
    main = table[table["cluster_id"].str.isdigit()]
    assert len(main) >= 1 and (main["cluster_size_mm3"] >= 50 * 8).all()
    assert main["cluster_id"].tolist() == [str(i) for i in range(1, len(main) + 1)]
    assert main["cluster_size_mm3"].sum() == np.count_nonzero(thr) * 8  # every survivor is in one cluster
    first_share = main["aal_cluster"].str.extract(r"^([0-9.]+)% ")[0].astype(float)
    assert ((first_share > 0) & (first_share <= 100)).all()
    assert set(table.columns) >= {"aal", "aal_cluster", "harvard_oxford", "harvard_oxford_cluster"}
    assert (np.abs(table["peak_z"]) >= result.threshold).all()
    for name in ("glass_brain", "slices", "design_figure"):
        assert result.files[name].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.shared
@pytest.mark.xdist_group("vbm_aomic")  # one worker runs the module fixture once
def test_aomic_z_map_equals_nilearn_called_directly(aomic_run):
    """Same modulated, smoothed inputs -> nilearn's SecondLevelModel; every voxel of the z map to 1e-6."""
    from nilearn.glm.second_level import SecondLevelModel
    from nilearn.image import smooth_img

    kwargs, result, _ = aomic_run
    modulated = []
    for gm_file, jac_file, written in zip(
        kwargs["gm_maps"], kwargs["jacobians"], result.modulated, strict=True
    ):
        gm, jac = (np.asanyarray(nb.load(f).dataobj, dtype=np.float64) for f in (gm_file, jac_file))
        ours = nb.load(written)
        np.testing.assert_allclose(ours.get_fdata(), gm * jac, rtol=1e-6, atol=1e-7)  # FSL-VBM: -mul JAC_nl
        modulated.append(ours)
    mean = np.mean([m.get_fdata() for m in modulated], axis=0)
    mask = nb.Nifti1Image((mean > 0.05).astype(np.uint8), modulated[0].affine)
    assert np.array_equal(np.asanyarray(nb.load(result.files["mask"]).dataobj), mask.get_fdata())
    info = pd.read_csv(kwargs["participants"], sep="\t").set_index("participant_id")
    info = info.loc[[f"sub-000{i}" for i in range(1, 6)]]
    design = pd.DataFrame({"Intercept": 1.0, "sexM": (info["sex"] == "M").astype(float), "age": info["age"]})
    model = SecondLevelModel(mask_img=mask).fit(smooth_img(modulated, 3.0), design_matrix=design)
    reference = model.compute_contrast("age", output_type="z_score").get_fdata()
    np.testing.assert_allclose(nb.load(result.files["z"]).get_fdata(), reference, rtol=1e-6, atol=1e-6)


@pytest.mark.shared
@pytest.mark.xdist_group("vbm_aomic")  # one worker runs the module fixture once
def test_aomic_rerun_is_byte_identical(aomic_run):
    kwargs, first, out = aomic_run
    run_vbm(output_dir=out / "run2", **kwargs)
    compared = filecmp.dircmp(out / "run1", out / "run2")
    files = [p.relative_to(out / "run1") for p in sorted((out / "run1").rglob("*")) if p.is_file()]
    assert len(files) == 13 + 5  # 7 images, 2 tables, 3 figures, provenance; 5 modulated maps
    for rel in files:
        assert (out / "run1" / rel).read_bytes() == (out / "run2" / rel).read_bytes(), rel
    assert not compared.left_only and not compared.right_only


def test_imputed_covariates_are_recorded(tmp_path):
    import json

    root = _study(tmp_path / "deriv", n=6, shape=(8, 8, 8))
    tsv = pd.read_csv(root / "participants.tsv", sep="\t")
    tsv.loc[2, "age"] = np.nan
    tsv.to_csv(root / "participants.tsv", sep="\t", index=False, na_rep="n/a")
    kwargs = dict(derivatives=root, participants=root / "participants.tsv", design="age", contrast="age")
    with pytest.raises(ValueError, match=r"column 'age' has 1 missing values; choose a missing-value policy"):
        run_vbm(output_dir=tmp_path / "none", atlases=(), **kwargs)
    result = run_vbm(output_dir=tmp_path / "out", missing="impute", atlases=(), **kwargs)
    assert result.subjects == ["01", "02", "03", "04", "05", "06"] and result.dropped == []
    provenance = json.loads(result.files["provenance"].read_text())
    mean = float(np.mean(np.delete(np.linspace(20, 40, 6), 2)))
    assert provenance["missing_values"] == [
        {"column": "age", "participant_id": "sub-03", "action": "imputed", "value": mean}
    ]
    design = pd.read_csv(result.files["design"], sep="\t")
    assert design.loc[2, "age"] == pytest.approx(mean)
