"""smriflow.qc.iqms: properties on synthetic images, and agreement with MRIQC's formulas.

``mriqc`` cannot be installed beside smriflow (``pip install --dry-run mriqc`` would downgrade numpy to
1.26, pandas, traits and MarkupSafe and pin niworkflows 1.10), so :func:`reference_iqms` below
re-implements, independently and literally, what MRIQC 24's ``StructuralQC`` computes (Esteban et al.
2017; MRIQC's documentation of each IQM) from the same image and masks; every IQM whose definition we
share must agree with it to 1e-6.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import _qc_data
import nibabel as nb
import numpy as np
import pytest
from scipy import ndimage

from smriflow.qc import iqms, measures
from smriflow.utils.metrics import cjv_from_stats, ncc

SUMMARY_STATS = ("mean", "median", "stdv", "mad", "k", "p05", "p95", "n")
SHARED_MRIQC = sorted(
    [
        *(f"summary_{r}_{s}" for r in ("bg", "csf", "gm", "wm") for s in SUMMARY_STATS),
        *(f"snr_{t}" for t in ("csf", "gm", "wm", "total")),
        *(f"snrd_{t}" for t in ("csf", "gm", "wm", "total")),
        "cnr",
        "cjv",
        "efc",
        "fber",
        "wm2max",
        "inu_med",
        "inu_range",
        *(f"icvs_{t}" for t in ("csf", "gm", "wm")),
        *(f"rpve_{t}" for t in ("csf", "gm", "wm")),
        *(f"tpm_overlap_{t}" for t in ("csf", "gm", "wm")),
    ]
)
ALL_KEYS = sorted(
    SHARED_MRIQC
    + ["fwhm_x", "fwhm_y", "fwhm_z", "fwhm_avg"]
    + ["volume_brain_cm3", "volume_tiv_cm3", "volume_mask_cm3", "mask_n_components", "mask_lcc_fraction"]
    + ["seg_entropy", "reg_ncc", "reg_dice"]
)


@pytest.fixture(scope="module")
def subject(tmp_path_factory) -> dict:
    return _qc_data.make_subject(tmp_path_factory.mktemp("qc_subject"))


@pytest.fixture(scope="module")
def computed(subject) -> dict[str, float]:
    return iqms.compute_iqms(**subject)


def load(path) -> np.ndarray:
    return np.asarray(nb.load(str(path)).dataobj, dtype=np.float64)


# -- MRIQC's formulas, re-implemented from its documentation, for the comparison ---------------------------
def reference_iqms(subject: dict) -> dict[str, float]:
    """MRIQC's StructuralQC on our images, with our head mask and frame as its head/air/rotation masks."""
    struct = ndimage.generate_binary_structure(3, 2)
    raw, n4, bias = load(subject["t1w"]), load(subject["t1w_preproc"]), load(subject["bias"])
    brain, dseg = load(subject["mask"]) > 0, load(subject["dseg"]).astype(np.uint8)
    gm, wm, csf = (load(p) for p in subject["tpms"])
    head = measures.iqm_head_mask(raw, (1.5, 1.5, 1.5), brain)
    rot = measures.frame_mask(raw) & ~head
    air = (~head & ~rot).astype(np.uint8)
    # Harmonize: WM probability > 0.9, eroded, median scaled to 1000
    wm_mask = ndimage.binary_erosion(wm > 0.9, structure=struct)
    data = n4 * (1000.0 / np.median(n4[wm_mask]))
    data = np.nan_to_num(data)
    data[data < 0] = 0
    # summary_stats: FSL order (bg, csf, gm, wm), > 0.85, eroded (voxels < 1.9 mm)
    stats = {}
    for name, prob in (("bg", air), ("csf", csf), ("gm", gm), ("wm", wm)):
        mask = ndimage.binary_erosion(prob > 0.85, structure=struct)
        x = data[mask]
        med = np.median(x)
        m2 = ((x - x.mean()) ** 2).mean()
        m4 = ((x - x.mean()) ** 4).mean()
        stats[name] = {
            "mean": x.mean(),
            "stdv": x.std(),
            "median": med,
            "mad": np.median(np.abs(x - med)) / 0.6744897501960817,  # statsmodels' normalized MAD
            "p95": np.percentile(x, 95),
            "p05": np.percentile(x, 5),
            "k": m4 / m2**2 - 3.0,  # Fisher kurtosis, biased (scipy's default)
            "n": float(mask.sum()),
        }
    out = {f"summary_{r}_{k}": float(v) for r, d in stats.items() for k, v in d.items()}
    for t in ("csf", "wm", "gm"):
        s = stats[t]
        out[f"snr_{t}"] = s["median"] / (s["stdv"] * math.sqrt(s["n"] / (s["n"] - 1)))
        bg_mad, bg_sd = stats["bg"]["mad"], stats["bg"]["stdv"]
        out[f"snrd_{t}"] = 0.6551364 * s["median"] / (bg_mad if bg_mad > 1.0 else bg_sd)
    out["snr_total"] = np.mean([out["snr_csf"], out["snr_wm"], out["snr_gm"]])
    out["snrd_total"] = np.mean([out["snrd_csf"], out["snrd_wm"], out["snrd_gm"]])
    w, g, b = stats["wm"], stats["gm"], stats["bg"]
    out["cnr"] = abs(w["median"] - g["median"]) / math.sqrt(b["stdv"] ** 2 + g["stdv"] ** 2 + w["stdv"] ** 2)
    out["cjv"] = (w["mad"] + g["mad"]) / abs(w["median"] - g["median"])
    airmask = np.ones_like(head, dtype=np.uint8)
    airmask[head] = 0
    airmask[rot] = 0
    out["fber"] = np.median(np.abs(data[head]) ** 2) / np.median(np.abs(data[airmask == 1]) ** 2)
    n_vox = np.sum(~rot)
    efc_max = 1.0 * n_vox * (1.0 / np.sqrt(n_vox)) * np.log(1.0 / np.sqrt(n_vox))
    b_max = np.sqrt((data[~rot] ** 2).sum())
    out["efc"] = (1.0 / efc_max) * np.sum((data[~rot] / b_max) * np.log((data[~rot] + 1e-16) / b_max))
    out["wm2max"] = w["median"] / np.percentile(data.reshape(-1), 99.95)
    inu = bias[dseg > 0]
    out["inu_range"] = abs(np.percentile(inu, 95.0) - np.percentile(inu, 5.0))
    out["inu_med"] = np.median(inu)
    pvms = {"csf": csf, "gm": gm, "wm": wm}
    total = sum(p.sum() for p in pvms.values())
    for t, p in pvms.items():
        out[f"icvs_{t}"] = p.sum() / total
        pv = p.copy()  # MRIQC's rpve, step by step and in place
        pv[pv < 0.0] = 0.0
        pv[pv >= 1.0] = 1.0
        totalvol = np.sum(pv > 0.0)
        upth, loth = np.percentile(pv[pv > 0], 98), np.percentile(pv[pv > 0], 2)
        pv[pv < loth] = 0
        pv[pv > upth] = 0
        out[f"rpve_{t}"] = (pv[pv > 0.5].sum() + (1.0 - pv[pv <= 0.5]).sum()) / totalvol
    from smriflow.data.templates import get_template

    for t, std in zip(("gm", "wm", "csf"), subject["std_tpms"], strict=True):
        tpl = get_template(resolution=2, suffix="probseg", label=t.upper())
        a, c = load(std).reshape(-1), load(tpl).reshape(-1)
        out[f"tpm_overlap_{t}"] = np.min([a, c], axis=0).sum() / np.max([a, c], axis=0).sum()
    return {key: float(value) for key, value in out.items()}


def test_shared_iqms_agree_with_mriqc_formulas(subject, computed):
    reference = reference_iqms(subject)
    assert sorted(reference) == SHARED_MRIQC
    for key in SHARED_MRIQC:
        assert computed[key] == pytest.approx(reference[key], rel=1e-6, abs=1e-9), key


def test_every_metric_is_present_and_finite(computed):
    assert list(computed) == ALL_KEYS  # sorted, and nothing else
    assert all(math.isfinite(value) for value in computed.values())


def test_perfect_registration_and_clean_mask(computed):
    # the template-space inputs are the template itself
    assert computed["reg_ncc"] == pytest.approx(1.0)
    assert computed["reg_dice"] == pytest.approx(1.0)
    assert computed["tpm_overlap_gm"] == pytest.approx(1.0)
    assert computed["mask_n_components"] == 1.0 and computed["mask_lcc_fraction"] == 1.0
    assert computed["icvs_gm"] + computed["icvs_wm"] + computed["icvs_csf"] == pytest.approx(1.0)
    assert computed["summary_wm_median"] == pytest.approx(1000.0, rel=0.01)  # harmonized


def test_volumes_from_the_tissue_maps(subject, computed):
    voxel_cm3 = 1.5**3 / 1000
    gm, wm, csf = (load(p) for p in subject["tpms"])
    brain = load(subject["mask"]) > 0
    assert computed["volume_brain_cm3"] == pytest.approx((gm + wm)[brain].sum() * voxel_cm3, rel=1e-5)
    assert computed["volume_tiv_cm3"] == pytest.approx((gm + wm + csf)[brain].sum() * voxel_cm3, rel=1e-5)
    assert computed["volume_mask_cm3"] == pytest.approx(brain.sum() * voxel_cm3)


def test_bias_is_seen_by_inu_and_cjv(tmp_path):
    flat = iqms.compute_iqms(**_qc_data.make_subject(tmp_path / "flat", bias_strength=0.0))
    strong = _qc_data.make_subject(tmp_path / "strong", bias_strength=1.2)
    left = iqms.compute_iqms(**{**strong, "t1w_preproc": strong["t1w"]})  # N4 "forgot" to divide
    assert flat["inu_range"] == pytest.approx(0.0, abs=1e-6) and flat["inu_med"] == pytest.approx(1.0)
    assert left["cjv"] > 2 * flat["cjv"]
    assert left["summary_wm_stdv"] > 2 * flat["summary_wm_stdv"]


def test_compute_iqms_is_deterministic(subject, computed, tmp_path):
    again = iqms.compute_iqms(**subject)
    assert again == computed
    first = iqms.write_iqms(computed, tmp_path / "a.json")
    second = iqms.write_iqms(again, tmp_path / "b.json")
    assert Path(first).read_bytes() == Path(second).read_bytes()
    assert list(json.loads(Path(first).read_text())) == ALL_KEYS


# -- single metrics on known inputs ---------------------------------------------------------------------
def test_efc_of_constant_and_of_a_single_voxel():
    assert measures.efc(np.full((10, 10, 10), 7.0)) == pytest.approx(1.0, abs=1e-9)
    spike = np.zeros((10, 10, 10))
    spike[3, 4, 5] = 100.0
    assert measures.efc(spike) == pytest.approx(0.0, abs=1e-9)
    frame = np.zeros_like(spike, dtype=bool)
    frame[0] = True
    ramp = np.random.default_rng(0).uniform(1, 2, spike.shape)
    assert measures.efc(ramp, frame) == pytest.approx(measures.efc(ramp[1:]))  # the frame is left out


def test_wm2max_and_harmonize_leave_their_inputs_unless_told():
    rng = np.random.default_rng(3)
    data = rng.gamma(2.0, 100.0, (20, 21, 22)).astype(np.float32)
    data[0, 0, :3] = [np.nan, -5.0, 0.0]
    wm = np.zeros(data.shape, np.float32)
    wm[5:15, 5:15, 5:15] = 1.0
    before = data.copy()
    scaled = measures.harmonize(data, wm)
    np.testing.assert_array_equal(data, before)  # the caller's image is untouched (equal_nan: NaN at 0,0,0)
    region = ndimage.binary_erosion(wm > 0.9, structure=ndimage.generate_binary_structure(3, 2))
    median = np.median(before[region].astype(np.float64))
    expected = np.nan_to_num(before.astype(np.float64)) * (1000.0 / median)
    expected[expected < 0] = 0
    np.testing.assert_array_equal(scaled, expected)
    kept = scaled.copy()
    value = measures.wm2max(scaled, 1000.0)
    np.testing.assert_array_equal(scaled, kept)
    assert value == 1000.0 / np.percentile(kept, 99.95)
    assert measures.wm2max(scaled, 1000.0, overwrite_input=True) == value
    assert not np.array_equal(scaled, kept)  # partially sorted in place, as asked


def test_cjv_on_known_distributions():
    rng = np.random.default_rng(1)
    image = np.concatenate([rng.normal(1000, 50, 200_000), rng.normal(600, 30, 200_000)])
    wm = np.zeros(image.size)
    wm[:200_000] = 1.0
    gm = 1.0 - wm
    stats = measures.summary_stats(image, {"wm": wm, "gm": gm}, erode=False)
    value = cjv_from_stats(
        stats["wm"]["median"], stats["gm"]["median"], stats["wm"]["mad"], stats["gm"]["mad"]
    )
    assert value == pytest.approx((50 + 30) / 400, rel=0.01)
    assert stats["wm"]["mad"] == pytest.approx(50, rel=0.01)  # normalized MAD estimates sigma
    assert stats["wm"]["k"] == pytest.approx(0.0, abs=0.05)  # Fisher kurtosis of a normal sample


@pytest.mark.parametrize("sigma", [1.0, 1.5, 2.5])
def test_fwhm_of_gaussian_smoothed_noise(sigma):
    noise = np.random.default_rng(2).normal(size=(64, 64, 64))
    smooth = ndimage.gaussian_filter(noise, sigma)
    mask = np.zeros(noise.shape, dtype=bool)
    mask[8:-8, 8:-8, 8:-8] = True
    expected = sigma * math.sqrt(8 * math.log(2))
    for value in measures.fwhm_classic(smooth, mask):
        assert value == pytest.approx(expected, rel=0.06)
    # anisotropic smoothing is seen per axis
    aniso = measures.fwhm_classic(ndimage.gaussian_filter(noise, (1.0, 2.0, 1.0)), mask)
    assert aniso[1] > 1.7 * aniso[0]


def test_fwhm_of_white_noise_is_small_and_of_a_constant_is_undefined():
    noise = np.random.default_rng(3).normal(size=(32, 32, 32))
    mask = np.ones(noise.shape, dtype=bool)
    assert all(value < 1.0 for value in measures.fwhm_classic(noise, mask))
    ramp = np.broadcast_to(np.arange(32.0)[:, None, None], noise.shape)
    assert measures.fwhm_classic(ramp, mask)[1] == -1.0  # no variation along y: rho = 1


def test_snr_dietrich_and_fber_fallbacks():
    assert measures.snr(100.0, 10.0, 2) == pytest.approx(100 / (10 * math.sqrt(2)))
    assert measures.snr_dietrich(100.0, 5.0, 9.0) == pytest.approx(0.6551364 * 20)
    assert measures.snr_dietrich(100.0, 0.5, 4.0) == pytest.approx(0.6551364 * 25)  # MAD <= 1: the SD
    assert measures.snr_dietrich(100.0, 0.0, 0.0) == -1.0
    data = np.ones((8, 8, 8))
    head = np.zeros_like(data, dtype=bool)
    head[2:6, 2:6, 2:6] = True
    data[~head] = 0.0
    assert measures.fber(data, head) == -1.0  # no energy outside the head
    data[~head] = 0.5
    assert measures.fber(data, head) == pytest.approx(4.0)


def test_rpve_counts_every_voxel_outside_the_percentile_range():
    p = np.zeros(1000)
    p[:100] = np.linspace(0.01, 1.0, 100)
    positive = p[:100]
    lo, hi = np.percentile(positive, [2, 98])
    kept = positive[(positive >= lo) & (positive <= hi)]
    expected = (kept[kept > 0.5].sum() + (1 - kept[kept <= 0.5]).sum() + (1000 - kept.size)) / 100
    assert measures.rpve({"x": p})["x"] == pytest.approx(expected)
    assert measures.rpve({"x": p})["x"] > 9  # the 900 zeros count 1 each, as in MRIQC


def test_frame_mask_finds_zero_padding_only():
    data = np.random.default_rng(4).uniform(1, 2, (30, 30, 30))
    data[:, :, :4] = 0.0  # padding at one face
    data[14:17, 14:17, 14:17] = 0.0  # zeros inside: not a frame
    frame = measures.frame_mask(data)
    assert frame[:, :, :4].all() and frame.sum() == 30 * 30 * 4
    assert not measures.frame_mask(np.random.default_rng(5).uniform(1, 2, (30, 30, 30))).any()


def test_head_mask_covers_the_brain(subject):
    raw, brain = load(subject["t1w"]), load(subject["mask"]) > 0
    head = measures.iqm_head_mask(raw, (1.5, 1.5, 1.5), brain)
    assert head[brain].all()
    assert 1.2 * brain.sum() < head.sum() < 0.6 * head.size  # the scalp, not the air


def test_ncc_dice_entropy_and_components():
    rng = np.random.default_rng(6)
    a = rng.normal(size=(10, 10, 10))
    b = 3 * a + 2 + rng.normal(scale=0.5, size=a.shape)
    assert ncc(a, b) == pytest.approx(np.corrcoef(a.ravel(), b.ravel())[0, 1])
    assert ncc(a, 2 * a + 1) == pytest.approx(1.0)
    half = np.zeros(a.shape, dtype=bool)
    half[:5] = True
    assert ncc(a, b, half) == pytest.approx(np.corrcoef(a[:5].ravel(), b[:5].ravel())[0, 1])
    assert ncc(a, np.ones(a.shape)) == 0.0  # a flat image: no correlation, not a division by zero
    mask = np.ones(a.shape, dtype=bool)
    one_hot = [np.ones(a.shape), np.zeros(a.shape), np.zeros(a.shape)]
    equal = [np.full(a.shape, 1 / 3)] * 3
    assert measures.segmentation_entropy(one_hot, mask) == pytest.approx(0.0)
    assert measures.segmentation_entropy(equal, mask) == pytest.approx(1.0)
    blobs = np.zeros((20, 20, 20), dtype=bool)
    blobs[2:8, 2:8, 2:8] = True  # 216 voxels
    blobs[12:15, 12:15, 12:15] = True  # 27 voxels, apart
    assert measures.mask_components(blobs) == (2, pytest.approx(216 / 243))
    assert measures.mask_components(np.zeros((4, 4, 4))) == (0, 0.0)


def test_errors_name_the_problem(subject, tmp_path):
    with pytest.raises(
        ValueError, match=r"'tpms' and 'std_tpms' must list 3 files \(GM, WM, CSF\); got 2 and 3"
    ):
        iqms.compute_iqms(**{**subject, "tpms": subject["tpms"][:2]})
    small = tmp_path / "small.nii.gz"
    nb.Nifti1Image(np.ones((4, 4, 4), dtype=np.uint8), np.eye(4)).to_filename(str(small))
    with pytest.raises(ValueError, match=r"'mask' is not on the grid of the T1w"):
        iqms.compute_iqms(**{**subject, "mask": str(small)})
    empty = tmp_path / "empty.nii.gz"
    ref = nb.load(subject["mask"])
    nb.Nifti1Image(np.zeros(ref.shape, dtype=np.uint8), ref.affine).to_filename(str(empty))
    with pytest.raises(ValueError, match=r"the brain mask .*empty.nii.gz is empty"):
        iqms.compute_iqms(**{**subject, "mask": str(empty)})


def test_undefined_metric_is_null_with_a_note_and_reads_back_as_nan(tmp_path):
    path = iqms.write_iqms({"cjv": float("nan"), "efc": 0.5}, tmp_path / "x.json", {"cjv": "zero spread"})
    written = json.loads(Path(path).read_text())
    assert written == {"cjv": None, "efc": 0.5, "notes": {"cjv": "zero spread"}}
    values, notes = iqms.read_iqms(path)
    assert math.isnan(values["cjv"]) and values["efc"] == 0.5 and notes == {"cjv": "zero spread"}
    clean = iqms.write_iqms({"efc": 0.5}, tmp_path / "clean.json")
    assert json.loads(Path(clean).read_text()) == {"efc": 0.5}  # no notes key when all are defined


def test_zscored_input_gives_nan_iqms_with_notes_not_an_exception(subject, tmp_path):
    """A z-scored N4 image (WM median <= 0 after a shift): harmonize is undefined -> NaN + notes."""
    img = nb.load(subject["t1w_preproc"])
    data = np.asarray(img.dataobj, dtype=np.float32)
    zscored = -(data - data.mean()) / data.std()  # negative everywhere bright: the WM median is < 0
    path = tmp_path / "zscored.nii.gz"
    nb.Nifti1Image(zscored, img.affine, img.header).to_filename(str(path))
    notes: dict[str, str] = {}
    computed = iqms.compute_iqms(**{**subject, "t1w_preproc": str(path)}, notes=notes)
    assert math.isnan(computed["cjv"]) and math.isnan(computed["snr_wm"])
    assert "white-matter median" in notes["cjv"]
    assert math.isfinite(computed["volume_tiv_cm3"]) and math.isfinite(computed["reg_ncc"])
    assert set(notes) == {key for key, value in computed.items() if math.isnan(value)}
    iqms.write_iqms(computed, tmp_path / "iqms.json", notes)
    assert iqms.read_iqms(tmp_path / "iqms.json")[1] == notes


def test_template_space_inputs_on_another_grid(subject, tmp_path):
    """std_t1w on a 3 mm grid: the template is resampled onto it (nilearn) before NCC, Dice and overlap."""
    from nilearn.image import resample_img

    def coarse(path: str, name: str) -> str:
        img = nb.load(path)
        affine = img.affine.copy()
        affine[:3, :3] *= 1.5
        out = resample_img(img, target_affine=affine, target_shape=(66, 78, 63), interpolation="continuous",
                           force_resample=True, copy_header=True)  # fmt: skip
        out.to_filename(str(tmp_path / name))
        return str(tmp_path / name)

    std_t1w = coarse(subject["std_t1w"], "std_t1w.nii.gz")
    std_tpms = [coarse(p, f"std_{i}.nii.gz") for i, p in enumerate(subject["std_tpms"])]
    values = iqms.compute_iqms(**{**subject, "std_t1w": std_t1w, "std_tpms": std_tpms})
    assert values["reg_ncc"] == pytest.approx(1.0, abs=1e-4)  # both resampled alike
    assert values["reg_dice"] > 0.95 and values["tpm_overlap_wm"] > 0.99
