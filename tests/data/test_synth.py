"""Ground-truth properties of the synthetic subjects of ``smriflow demo`` (smriflow.data.synth)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import nibabel as nb
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage, stats

from smriflow.data import synth


def _sphere_model() -> synth.TemplateModel:
    """A 2 mm 'template': WM core (r < 16 mm), GM (16-26 mm), CSF (26-30 mm); region = the x < 0 half."""
    shape = (56, 56, 56)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = -55.0
    r = np.sqrt(((nb.affines.apply_affine(affine, np.indices(shape).reshape(3, -1).T)) ** 2).sum(1))
    r = r.reshape(shape)

    def ramp(x):
        return np.clip(x, 0, 1)

    inside = ramp((30 - r) / 2 + 0.5)
    wm = ramp((16 - r) / 2 + 0.5)
    gm = ramp((26 - r) / 2 + 0.5) - wm
    csf = inside - wm - gm
    x = nb.affines.apply_affine(affine, np.indices(shape).reshape(3, -1).T)[:, 0].reshape(shape)
    return synth.model_from_arrays(gm, wm, csf, inside > 0.5, x < 0, affine, region_name="left")


@pytest.fixture(scope="module")
def model() -> synth.TemplateModel:
    return _sphere_model()


PARAMS = synth.SynthParams(voxel_size=3.0)


def _subject(model, age=50.0, seed=1, **changes) -> synth.SyntheticSubject:
    return synth.synthesize_subject(
        model, age=age, rng=np.random.default_rng(seed), params=replace(PARAMS, **changes)
    )


def test_head_shell_layers_follow_the_distance():
    d = np.linspace(0, 25, 251, dtype=np.float32)
    layers = synth.head_shell(d, skull_mm=5.0, scalp_mm=6.0, fluid_mm=1.5)
    total = layers["fluid"] + layers["skull"] + layers["scalp"]
    assert np.all(total[d == 0] == 0)  # nothing of the head inside the brain
    assert np.all(total[d >= 13.5] == 0)  # nothing beyond the scalp (1.5 + 5 + 6 + 1 mm ramp)
    assert np.all(total <= 1 + 1e-6)
    assert np.all(layers["skull"][(d >= 2.5) & (d <= 6.5)] == 1)
    assert np.all(layers["scalp"][(d >= 7.5) & (d <= 12.5)] == 1)


def test_shell_surrounds_the_brain_and_stays_outside_it(model):
    subject = _subject(model)
    mask = np.asarray(subject.mask.dataobj) > 0
    interior = ndimage.binary_erosion(mask)
    assert subject.shell[interior].max() == 0
    # the brain sits in a pocket of the shell: the non-shell component holding the brain never reaches the
    # border of the image, so brain extraction must cut through skull and scalp
    components, _ = ndimage.label(subject.shell < 0.5)
    brain_labels = np.unique(components[interior])
    border = np.concatenate([components[[0, -1]].ravel(), components[:, [0, -1]].ravel()])
    border = np.concatenate([border, components[:, :, [0, -1]].ravel()])
    assert set(brain_labels) == {brain_labels[0]} and brain_labels[0] not in set(border)
    # the scalp is brighter than the skull, as on a T1w
    assert subject.clean[subject.shell > 0.99].max() > synth.INTENSITIES["GM"]


def test_jacobian_determinant_of_a_linear_field_is_its_determinant():
    matrix = np.array([[1.1, 0.05, 0.0], [0.0, 0.9, 0.02], [0.03, 0.0, 1.05]])
    grid = np.stack(np.meshgrid(*[np.arange(10.0) * 4] * 3, indexing="ij"), axis=-1)
    field = grid @ (matrix - np.eye(3)).T  # u(y) = (M - I) y, so y + u(y) = M y
    det = synth.jacobian_determinant(field, 4.0)
    np.testing.assert_allclose(det, np.linalg.det(matrix), rtol=1e-10)


def test_deformation_is_smooth_bounded_and_invertible():
    rng = np.random.default_rng(3)
    field, affine = synth.random_deformation(
        rng, np.full(3, -90.0), np.full(3, 90.0), amplitude_mm=2.5, sigma_mm=16.0
    )
    assert np.sqrt((field**2).sum(-1)).max() == pytest.approx(2.5)
    det = synth.jacobian_determinant(field, affine[0, 0])
    assert det.min() > 0.7 and det.max() < 1.3  # orientation-preserving everywhere: a diffeomorphism


def test_random_affine_stays_within_its_bounds():
    params = synth.SynthParams()
    for seed in range(20):
        a = synth.random_affine(np.random.default_rng(seed), params, centre=np.array([0.0, -18.0, 8.0]))
        lo, hi = (1 - params.scaling) ** 3 / 1.01, (1 + params.scaling) ** 3 * 1.01
        assert lo < np.linalg.det(a[:3, :3]) < hi
        moved = a @ [0.0, -18.0, 8.0, 1.0]  # the centre only moves by the translation
        assert np.all(np.abs(moved[:3] - [0.0, -18.0, 8.0]) <= params.translation_mm)


def test_bias_is_multiplicative_and_smooth(model):
    subject = _subject(model, noise=0.0)
    t1w = np.asarray(subject.t1w.dataobj).astype(np.float64)
    expected = np.rint(subject.clean.astype(np.float64) * subject.bias * 1000.0)
    np.testing.assert_allclose(t1w, expected, atol=1.0)  # noise-free image = clean × bias (int16 rounding)
    head = subject.clean > 0.05
    log_bias = np.log(subject.bias[head])
    assert np.abs(log_bias).max() == pytest.approx(PARAMS.bias_strength, rel=1e-5)
    # log(bias) is a quadratic polynomial of position: a quadratic fit leaves nothing
    x = nb.affines.apply_affine(subject.t1w.affine, np.argwhere(head))
    design = np.column_stack(
        [np.ones(len(x)), x, x**2, x[:, [0]] * x[:, [1]], x[:, [0]] * x[:, [2]], x[:, [1]] * x[:, [2]]]
    )
    residual = log_bias - design @ np.linalg.lstsq(design, log_bias, rcond=None)[0]
    assert np.abs(residual).max() < 1e-4


@pytest.mark.parametrize("signal", [0.0, 1.0, 5.0])
def test_noise_is_rician(signal: float):
    sigma = 0.5
    noisy = synth.add_rician_noise(np.full(200_000, signal), sigma, np.random.default_rng(7))
    reference = stats.rice(signal / sigma, scale=sigma)  # scipy's Rice distribution: b = A / sigma
    assert noisy.mean() == pytest.approx(reference.mean(), rel=0.01)
    assert noisy.std() == pytest.approx(reference.std(), rel=0.01)
    assert np.mean(noisy**2) == pytest.approx(signal**2 + 2 * sigma**2, rel=0.01)
    assert stats.kstest(noisy[:20_000], reference.cdf).pvalue > 0.01


def test_background_noise_is_rayleigh(model):
    subject = _subject(model, bias_strength=0.0)
    background = np.asarray(subject.t1w.dataobj)[subject.clean == 0] / 1000.0
    sigma = PARAMS.noise
    assert background.mean() == pytest.approx(sigma * np.sqrt(np.pi / 2), rel=0.05)


def test_thin_region_moves_gm_to_csf_only_in_the_region():
    rng = np.random.default_rng(0)
    gm, csf = rng.uniform(0, 0.5, (2, 20, 20, 20)).astype(np.float32)
    region = np.zeros(gm.shape, bool)
    region[:10] = True
    new_gm, new_csf = synth.thin_region(gm, csf, region, 0.3)
    np.testing.assert_allclose(new_gm[region], 0.7 * gm[region], rtol=1e-6)
    np.testing.assert_array_equal(new_gm[~region], gm[~region])
    np.testing.assert_allclose(new_gm + new_csf, gm + csf, rtol=1e-6)
    with pytest.raises(ValueError, match=r"'fraction' must be within \[0, 1\]"):
        synth.thin_region(gm, csf, region, 1.5)


def test_thinning_reduces_the_region_gm_with_age(model):
    young, old = _subject(model, age=30.0), _subject(model, age=70.0)  # same seed: same pose and noise
    f_young, f_old = (PARAMS.thinning_rate * (a - PARAMS.reference_age) for a in (30.0, 70.0))
    assert young.truth["thinning_fraction"] == pytest.approx(f_young)
    ratio = old.truth["region_gm_mm3"] / young.truth["region_gm_mm3"]
    # thin_cortex removes the outer part of the thickness; at 1.5-3 mm the GM volume it takes is of the same
    # order as the thickness fraction (0.65 here), not equal to it: the truth records the volume itself
    assert 0.4 < ratio < 0.8
    outside_young = young.truth["gm_mm3"] - young.truth["region_gm_mm3"]
    outside_old = old.truth["gm_mm3"] - old.truth["region_gm_mm3"]
    assert outside_old == pytest.approx(outside_young, rel=1e-6)  # only the region changes
    assert np.mean(np.asarray(old.t1w.dataobj)) < np.mean(np.asarray(young.t1w.dataobj))


def test_truth_labels_match_the_mask(model):
    subject = _subject(model)
    mask = np.asarray(subject.mask.dataobj) > 0
    dseg = np.asarray(subject.dseg.dataobj)
    assert set(np.unique(dseg[mask])) <= {1, 2, 3} and np.all(dseg[~mask] == 0)
    assert subject.t1w.get_data_dtype() == np.int16
    assert np.allclose(subject.t1w.affine, subject.mask.affine)
    assert 0 < subject.truth["deformation_min_jacobian"] < 1


def test_participants_spread_over_age_and_sex():
    table = synth.participant_table(6, np.random.default_rng(0))
    assert list(table.columns) == ["participant_id", "age", "sex"]
    assert table["age"].between(20, 80).all() and table["age"].nunique() == 6
    assert sorted(np.floor((table["age"] - 20) / 10)) == [0, 1, 2, 3, 4, 5]  # one per decade slot
    assert set(table["sex"]) == {"F", "M"}


def test_dataset_is_bids_and_deterministic(model, tmp_path: Path, monkeypatch):
    monkeypatch.setattr(synth, "load_template_model", lambda region: model)
    truth = synth.write_dataset(tmp_path / "a", n_subjects=2, seed=5, params=PARAMS)
    synth.write_dataset(tmp_path / "b", n_subjects=2, seed=5, params=PARAMS)
    bids = tmp_path / "a" / "bids"
    participants = pd.read_csv(bids / "participants.tsv", sep="\t")
    assert list(participants["participant_id"]) == ["sub-01", "sub-02"]
    assert json.loads((bids / "dataset_description.json").read_text())["BIDSVersion"]
    for name in ("sub-01/anat/sub-01_T1w.nii.gz", "sub-02/anat/sub-02_T1w.nii.gz"):
        assert (bids / name).read_bytes() == (tmp_path / "b" / "bids" / name).read_bytes()
    assert list(truth["participant_id"]) == ["sub-01", "sub-02"]
    assert (truth["age"].to_numpy() == participants["age"].to_numpy()).all()


def test_the_real_template_region_is_left_cortex():
    real = synth.load_template_model()
    region = np.argwhere(real.region)
    x = nb.affines.apply_affine(real.affine, region)[:, 0]
    assert len(region) > 10_000 and np.all(x < 2.0)  # the left superior frontal gyrus (RAS: x < 0)
    assert real.gm[real.region].mean() > 0.4  # cortex: mostly grey matter
    with pytest.raises(ValueError, match="'region' must be a region of the desikankilliany atlas"):
        synth.load_template_model("ctx-lh-nowhere")


@pytest.mark.parametrize("fraction", [0.0, 0.25, 0.5])
def test_thin_cortex_removes_that_fraction_of_the_thickness_from_outside(fraction):
    """A flat 4 mm cortex (WM below, CSF above): its GM column shrinks by the fraction, from the CSF side."""
    shape = (12, 12, 30)
    z = np.arange(shape[2])[None, None, :]
    wm = np.broadcast_to(z < 10, shape).astype(np.float32)
    gm = np.broadcast_to((z >= 10) & (z < 14), shape).astype(np.float32)
    csf = 1.0 - gm - wm
    region = np.zeros(shape, bool)
    region[:6] = True
    new_gm, new_csf = synth.thin_cortex(gm, wm, csf, region, fraction, 1.0)
    column = new_gm[2:4, 2:10].sum(axis=-1)  # inside the region, away from its edge
    assert column == pytest.approx(4.0 * (1 - fraction), abs=0.51)
    assert new_gm[..., 10].min() == 1.0  # the deep layer stays
    np.testing.assert_array_equal(new_gm[~region], gm[~region])
    np.testing.assert_allclose(new_gm + new_csf, gm + csf, atol=1e-6)
