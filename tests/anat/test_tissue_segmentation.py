"""Tests for smriflow.anat.tissue_segmentation: memberships sum to 1, labels agree, deep-GM prior."""

from __future__ import annotations

import nibabel as nb
import numpy as np
import pytest

from smriflow.anat.tissue_segmentation import (
    CLASSES,
    apply_deep_gm_prior,
    deep_gm_atlas,
    segment_tissues,
    warp_deep_gm_prior,
)
from smriflow.utils.intensity import local_mean
from smriflow.utils.metrics import dice


def _brain_phantom(shape=(40, 44, 42), seed=0, bias=0.15):
    """WM core, GM shell, CSF rim, a WM-bright 'thalamus' ball, bias and noise: data, mask, truth, ball."""
    rng = np.random.default_rng(seed)
    grid = np.indices(shape).astype(np.float32)
    centre = (np.array(shape) - 1) / 2
    r = np.sqrt(sum(((grid[i] - centre[i]) / (shape[i] / 2)) ** 2 for i in range(3)))
    truth = np.select([r < 0.5, r < 0.72, r < 0.85], [2, 1, 3], 0).astype(np.uint8)
    thalamus = np.sqrt(sum((grid[i] - centre[i]) ** 2 for i in range(3))) < 4
    means = np.array([0.0, 100.0, 160.0, 45.0], np.float32)
    data = means[truth]
    field = 1 + bias * (grid[0] - centre[0]) / shape[0] - bias * (grid[2] - centre[2]) / shape[2]
    data = data * field + rng.normal(0, 4, shape) * (truth > 0)
    return data.astype(np.float32), r < 0.85, truth, thalamus


def test_local_mean():
    values = np.full((10, 10, 10), 5.0, np.float32)
    select = np.zeros_like(values, dtype=bool)
    select[3:7, 3:7, 3:7] = True
    mean, weight = local_mean(values * (1 + select), select, 2.0, (1, 1, 1))
    np.testing.assert_allclose(mean[select], 10.0, rtol=1e-5)
    assert weight.max() <= 1 and weight[0, 0, 0] < weight[5, 5, 5]


def test_segmentation_properties_and_accuracy():
    data, mask, truth, _ = _brain_phantom()
    probseg, dseg, info = segment_tissues(data, mask, (2.0, 2.0, 2.0))
    assert probseg.shape == data.shape + (3,) and probseg.dtype == np.float32
    assert dseg.dtype == np.uint8 and dseg.shape == data.shape
    assert probseg.min() >= 0 and probseg.max() <= 1
    np.testing.assert_allclose(probseg[mask].sum(-1), 1.0, atol=1e-6)
    assert not probseg[~mask].any() and not dseg[~mask].any()
    assert set(np.unique(dseg[mask])) <= {1, 2, 3}
    np.testing.assert_array_equal(dseg[mask], np.argmax(probseg[mask], -1) + 1)
    # the hard classes are disjoint by construction; check them against the phantom
    for label, name in enumerate(CLASSES, start=1):
        assert dice(dseg == label, truth == label) > 0.9, name
    assert info["class_means"]["CSF"] < info["class_means"]["GM"] < info["class_means"]["WM"]
    assert info["deep_gm_prior"] is False


def test_segmentation_is_deterministic():
    data, mask, _, _ = _brain_phantom(seed=3)
    first = segment_tissues(data, mask, (2.0, 2.0, 2.0))
    second = segment_tissues(data, mask, (2.0, 2.0, 2.0))
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])


def test_local_means_follow_the_bias():
    data, mask, truth, _ = _brain_phantom(bias=0.35)
    _, dseg_local, _ = segment_tissues(data, mask, (2.0, 2.0, 2.0))
    # a strong bias defeats one global threshold but not the local GM/WM means
    wm_global = mask & (data > 100 + 0.45 * 60)
    assert dice(dseg_local == 2, truth == 2) > dice(wm_global, truth == 2)


def test_deep_gm_prior_turns_bright_deep_grey_into_gm():
    data, mask, truth, thalamus = _brain_phantom()
    _, without, _ = segment_tissues(data, mask, (2.0, 2.0, 2.0))
    assert (without[thalamus] == 2).all()  # WM-bright: intensity alone says WM
    probseg, dseg, info = segment_tissues(data, mask, (2.0, 2.0, 2.0), deep_gm=thalamus.astype(np.float32))
    assert (dseg[thalamus] == 1).all()
    np.testing.assert_array_equal(dseg[~thalamus], without[~thalamus])
    np.testing.assert_allclose(probseg[mask].sum(-1), 1.0, atol=1e-6)
    assert info["deep_gm_prior"] is True


def test_apply_deep_gm_prior_ramp():
    p_gm, p_wm = np.full(5, 0.2, np.float32), np.full(5, 0.8, np.float32)
    prior = np.array([0.0, 0.4, 0.5, 0.6, 1.0], np.float32)
    gm, wm = apply_deep_gm_prior(p_gm, p_wm, prior)
    np.testing.assert_allclose(gm + wm, 1.0, atol=1e-6)
    np.testing.assert_allclose(wm, [0.8, 0.8, 0.4, 0.0, 0.0], atol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mask": np.ones((3, 3, 3), bool)}, r"'mask' shape \(3, 3, 3\) differs from the image shape"),
        ({"mask": np.zeros((40, 44, 42), bool)}, "'mask' has 0 voxels; a brain mask is needed"),
        ({"wm_fraction": 1.2}, r"'wm_fraction' must be in \(0, 1\). 1.2 was provided."),
    ],
)
def test_segmentation_errors(kwargs, message):
    data, mask, _, _ = _brain_phantom()
    args = {"mask": mask, **kwargs}
    with pytest.raises(ValueError, match=message):
        segment_tissues(data, args.pop("mask"), (2.0, 2.0, 2.0), **args)


def test_segmentation_needs_three_classes():
    data = np.zeros((10, 10, 10), np.float32)
    data[2:8, 2:8, 2:8] = 5.0
    with pytest.raises(ValueError, match="could not separate three intensity classes"):
        segment_tissues(data, data > 0, (1, 1, 1))


def test_deep_gm_atlas():
    atlas = deep_gm_atlas()
    data = np.asarray(atlas.dataobj)
    assert data.dtype == np.float32 and data.min() >= 0 and data.max() <= 1
    volume_ml = (data > 0.5).sum() * np.prod(atlas.header.get_zooms()[:3]) / 1000
    assert 40 < volume_ml < 90  # thalamus + basal ganglia + hippocampus/amygdala + ventral DC
    # centred on the midline, symmetric-ish and deep (thalamus near MNI (±11, -18, 7))
    for x in (-11, 11):
        ijk = np.round(np.linalg.inv(atlas.affine) @ [x, -18, 7, 1]).astype(int)[:3]
        assert data[tuple(ijk)] > 0.9


@pytest.mark.ants
def test_warp_deep_gm_prior_identity(tmp_path):
    from smriflow.utils.antsenv import import_ants

    ants = import_ants(1)
    identity = ants.create_ants_transform(transform_type="AffineTransform", dimension=3)
    xfm = str(tmp_path / "identity.mat")
    ants.write_transform(identity, xfm)
    atlas = deep_gm_atlas()
    ref = nb.Nifti1Image(np.zeros((80, 90, 70), np.float32), np.diag([2.0, 2.0, 2.0, 1.0]))
    ref.affine[:3, 3] = [-80, -110, -60]
    ref = nb.Nifti1Image(np.zeros((80, 90, 70), np.float32), ref.affine)
    prior = warp_deep_gm_prior(ref, [xfm], [True])
    assert prior.shape == ref.shape and prior.min() >= 0 and prior.max() <= 1
    ijk = np.round(np.linalg.inv(ref.affine) @ [11, -18, 7, 1]).astype(int)[:3]
    assert prior[tuple(ijk)] > 0.9
    volume_atlas = (np.asarray(atlas.dataobj) > 0.5).sum() * np.prod(atlas.header.get_zooms()[:3])
    assert (prior > 0.5).sum() * 8 == pytest.approx(volume_atlas, rel=0.1)
