"""smriflow.anat.lesions and its interfaces on small synthetic images."""

from __future__ import annotations

from pathlib import Path

import nibabel as nb
import numpy as np
import pytest
from nipype.interfaces.base import isdefined
from scipy import ndimage

from smriflow.anat.lesions import fill_lesion, lesion_on_grid, lesion_tissue_fractions, n4_fit_mask
from smriflow.interfaces.lesions import LesionFill, LesionMask
from smriflow.utils.morphology import head_mask

LIA = np.array([[-2.0, 0, 0, 30], [0, 0, 2.0, -40], [0, -2.0, 0, 35], [0, 0, 0, 1]])


def _ball(shape, centre, radius) -> np.ndarray:
    grid = np.indices(shape)
    return sum((grid[i] - centre[i]) ** 2 for i in range(3)) <= radius**2


def _phantom(shape=(32, 32, 32)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """WM ball (100, 3 % noise, 1 %/voxel bias along x) in a GM shell (60) in CSF (20); brain mask."""
    c = [s // 2 for s in shape]
    brain = _ball(shape, c, 13)
    gm = brain & ~_ball(shape, c, 9)
    wm = brain & ~gm
    csf = brain & ~_ball(shape, c, 11.5)
    gm &= ~csf
    data = np.zeros(shape, np.float32)
    data[wm], data[gm], data[csf] = 100.0, 60.0, 20.0
    data[wm] *= 1 + 0.03 * np.random.default_rng(1).standard_normal(int(wm.sum())).astype(np.float32)
    bias = 1 + 0.01 * (np.indices(shape)[0] - c[0])
    return (data * bias).astype(np.float32), brain, wm


def test_lesion_on_grid_reorders_a_mask_exactly_onto_the_ras_reference():
    shape = (10, 12, 14)
    mask = np.zeros(shape, np.uint8)
    mask[2:4, 5, 7:10] = 1
    mask_img = nb.Nifti1Image(mask, LIA)
    reference = nb.as_closest_canonical(nb.Nifti1Image(np.zeros(shape, np.float32), LIA))
    out, info = lesion_on_grid(mask_img, reference)
    expected = np.asarray(nb.as_closest_canonical(mask_img).dataobj) > 0
    assert out.shape == reference.shape and np.array_equal(out, expected)
    assert info == {"resampled": False, "voxels": 6, "volume_mm3": 48.0}
    # the same world points are inside
    world = nb.affines.apply_affine(LIA, np.argwhere(mask))
    back = np.rint(nb.affines.apply_affine(np.linalg.inv(reference.affine), world)).astype(int)
    assert out[tuple(back.T)].all()


def test_lesion_on_grid_resamples_another_grid_with_nearest_neighbour():
    fine = np.diag([1.0, 1.0, 1.0, 1.0])
    mask = np.zeros((20, 20, 20), np.uint8)
    mask[4:12, 4:12, 4:12] = 1  # 8 mm cube = 4 voxels of 2 mm a side
    reference = nb.Nifti1Image(np.zeros((10, 10, 10), np.float32), np.diag([2.0, 2.0, 2.0, 1.0]))
    out, info = lesion_on_grid(nb.Nifti1Image(mask, fine), reference)
    assert info["resampled"] is True
    assert info["volume_mm3"] == pytest.approx(512.0, rel=0.3)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            np.full((4, 4, 4), 0.5, np.float32),
            "lesion.nii.gz: a lesion mask must hold only 0 and 1; it holds 0.5",
        ),
        (
            np.zeros((4, 4, 4, 2), np.uint8),
            r"lesion.nii.gz: a lesion mask must be 3-D; its shape is \(4, 4, 4, 2\)",
        ),
        (np.zeros((4, 4, 4), np.uint8), "lesion.nii.gz: the lesion mask is empty on the T1w grid"),
    ],
)
def test_lesion_on_grid_refuses_what_is_not_a_binary_lesion_mask(data, message):
    reference = nb.Nifti1Image(np.zeros((4, 4, 4), np.float32), np.eye(4))
    with pytest.raises(ValueError, match=message):
        lesion_on_grid(nb.Nifti1Image(data, np.eye(4)), reference, name="lesion.nii.gz")


def test_n4_fit_mask_is_the_head_mask_minus_the_dilated_lesion():
    data, brain, wm = _phantom()
    zooms = (2.0, 2.0, 2.0)
    lesion = _ball(data.shape, (16, 16, 16), 2)
    fit = n4_fit_mask(data, zooms, lesion, dilate_mm=2.0)
    head = head_mask(data, zooms)
    face_neighbours = ndimage.binary_dilation(lesion)  # within 2 mm (one voxel) of the lesion
    assert head[face_neighbours].all() and not fit[face_neighbours].any()
    far = ~_ball(data.shape, (16, 16, 16), 3.5)
    assert np.array_equal(fit[far], head[far])
    assert fit.sum() > 0.9 * head.sum()
    assert np.array_equal(n4_fit_mask(data, zooms, np.zeros_like(lesion), dilate_mm=2.0), head)


def assert_white_matter_like(filled: np.ndarray, truth: np.ndarray) -> None:
    """The fill follows the biased WM intensity (mean within 1 %) with the WM's 3 % texture.

    Both have 3 % noise, so their ratio spreads by ~sqrt(2) * 3 %.
    """
    ratio = filled / truth
    assert abs(ratio.mean() - 1) < 0.01
    assert 0.03 < ratio.std() < 0.06


def test_fill_lesion_takes_the_local_white_matter_intensity_and_texture():
    data, brain, wm = _phantom()
    lesion = _ball(data.shape, (16, 16, 16), 3)
    lesioned = data.copy()
    lesioned[lesion] = 60.0  # as dark as grey matter
    filled, info = fill_lesion(lesioned, lesion, (2.0, 2.0, 2.0), brain_mask=brain, sigma_mm=6.0)
    assert_white_matter_like(filled[lesion], data[lesion])
    assert np.array_equal(filled[~lesion], lesioned[~lesion])
    assert info["relative_spread"] == pytest.approx(0.03, abs=0.01)
    again, _ = fill_lesion(lesioned, lesion, (2.0, 2.0, 2.0), brain_mask=brain, sigma_mm=6.0)
    other, _ = fill_lesion(lesioned, lesion, (2.0, 2.0, 2.0), brain_mask=brain, sigma_mm=6.0, seed=1)
    assert np.array_equal(again, filled) and not np.array_equal(other, filled)
    assert info["filled_mm3"] == info["lesion_mm3"] == lesion.sum() * 8.0
    assert info["class_means"]["WM"] == pytest.approx(100.0, rel=0.05)


def test_fill_lesion_leaves_voxels_outside_the_brain_and_reports_them():
    data, brain, wm = _phantom()
    outside = np.zeros(data.shape, bool)
    outside[0:2, 0:2, 0:2] = True
    filled, info = fill_lesion(data, outside, (2.0, 2.0, 2.0), brain_mask=brain)
    assert np.array_equal(filled, data)
    assert info == {"lesion_mm3": 64.0, "lesion_outside_mask_mm3": 64.0, "filled_mm3": 0.0}


def test_fill_lesion_finds_white_matter_in_the_head_mask_when_no_brain_mask_is_given():
    data, brain, wm = _phantom()
    lesion = _ball(data.shape, (16, 16, 16), 3)
    lesioned = np.where(lesion, 20.0, data).astype(np.float32)  # as dark as CSF
    filled, info = fill_lesion(lesioned, lesion, (2.0, 2.0, 2.0), sigma_mm=6.0)
    assert_white_matter_like(filled[lesion], data[lesion])
    assert info["lesion_outside_mask_mm3"] == 0.0


def test_lesion_tissue_fractions_counts_the_labels_inside_the_lesion():
    dseg = np.array([1, 1, 2, 3, 0, 1], np.uint8).reshape(1, 2, 3)
    lesion = np.array([1, 1, 1, 1, 1, 0], bool).reshape(1, 2, 3)
    assert lesion_tissue_fractions(dseg, lesion) == {"GM": 0.4, "WM": 0.2, "CSF": 0.2, "background": 0.2}
    with pytest.raises(ValueError, match="'lesion' is empty"):
        lesion_tissue_fractions(dseg, np.zeros_like(lesion))


# -- interfaces ----------------------------------------------------------------------------------------------
def _save(data, path: Path, affine=None) -> str:
    nb.Nifti1Image(data, np.diag([2.0, 2.0, 2.0, 1.0]) if affine is None else affine).to_filename(str(path))
    return str(path)


def test_interfaces_change_nothing_without_a_lesion_mask(tmp_path):
    data, brain, _ = _phantom()
    t1w = _save(data, tmp_path / "t1w.nii.gz")
    outputs = LesionMask(reference=t1w).run(cwd=tmp_path).outputs
    assert not isdefined(outputs.out_mask) and not isdefined(outputs.out_fit_mask)
    filled = LesionFill(in_file=t1w).run(cwd=tmp_path).outputs
    assert filled.out_file == t1w
    assert not isdefined(filled.out_report)


def test_interfaces_with_a_lesion_mask(tmp_path):
    data, brain, _ = _phantom()
    lesion = _ball(data.shape, (16, 16, 16), 3)
    lesioned = np.where(lesion, 60.0, data).astype(np.float32)
    t1w = _save(lesioned, tmp_path / "t1w.nii.gz")
    lesion_file = _save(lesion.astype(np.uint8), tmp_path / "sub-01_label-lesion_roi.nii.gz")
    outputs = LesionMask(reference=t1w, in_file=lesion_file).run(cwd=tmp_path).outputs
    assert np.array_equal(np.asarray(nb.load(outputs.out_mask).dataobj) > 0, lesion)
    assert not (np.asarray(nb.load(outputs.out_fit_mask).dataobj)[lesion]).any()
    mask = _save(brain.astype(np.uint8), tmp_path / "mask.nii.gz")
    fill = LesionFill(in_file=t1w, in_mask=mask, in_lesion=outputs.out_mask)
    out = np.asarray(nb.load(fill.run(cwd=tmp_path).outputs.out_file).dataobj)
    assert_white_matter_like(out[lesion], data[lesion])
    assert np.array_equal(out[~lesion], lesioned[~lesion])


def test_lesion_mask_refuses_a_bids_mask_that_is_not_a_lesion(tmp_path):
    data, _, _ = _phantom()
    t1w = _save(data, tmp_path / "t1w.nii.gz")
    other = _save(np.ones(data.shape, np.uint8), tmp_path / "sub-01_desc-deface_mask.nii.gz")
    with pytest.raises(ValueError, match="'in_file' sub-01_desc-deface_mask.nii.gz is a BIDS mask but not a"):
        LesionMask(reference=t1w, in_file=other).run(cwd=tmp_path)


def test_lesion_fill_refuses_a_lesion_on_another_grid(tmp_path):
    data, brain, _ = _phantom()
    t1w = _save(data, tmp_path / "t1w.nii.gz")
    other = _save(np.zeros((8, 8, 8), np.uint8), tmp_path / "other.nii.gz")
    fill = LesionFill(in_file=t1w, in_lesion=other)
    with pytest.raises(ValueError, match=r"'in_lesion' must be on the grid of 'in_file': .*other.nii.gz"):
        fill.run(cwd=tmp_path)
