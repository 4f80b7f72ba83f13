"""Jacobian determinants and modulation: exact on synthetic mappings, volume-preserving on real data."""

from __future__ import annotations

from pathlib import Path

import nibabel as nb
import numpy as np
import pytest
from _anat_data import block_mean
from scipy import ndimage

from smriflow.anat.modulation import (
    LOG_JACOBIAN_FLOOR,
    displacement_jacobian,
    log_jacobian_image,
    modulate,
    volume_mm3,
)

RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])
# An LIA grid (FreeSurfer's orientation) with anisotropic voxels: voxel axes do not follow LPS or RAS.
LIA = np.array([[-1.5, 0, 0, 40.0], [0, 0, 2.0, -35.0], [0, -1.2, 0, 30.0], [0, 0, 0, 1]])


def _affine_field(shape, grid_affine, matrix, translation) -> nb.Nifti1Image:
    """ITK displacement field of the LPS mapping p -> matrix @ p + translation, on a grid."""
    ijk = np.indices(shape).reshape(3, -1).T.astype(np.float64)
    lps = (ijk @ grid_affine[:3, :3].T + grid_affine[:3, 3]) @ RAS_TO_LPS.T
    disp = lps @ (np.asarray(matrix) - np.eye(3)).T + np.asarray(translation)
    data = disp.reshape(*shape, 1, 3).astype(np.float32)
    img = nb.Nifti1Image(data, grid_affine)
    img.header.set_intent("vector")
    return img


@pytest.mark.parametrize("grid", [np.diag([2.0, 2.0, 2.0, 1.0]), LIA], ids=["ras", "lia"])
def test_jacobian_of_affine_field_is_det_everywhere(grid):
    matrix = np.array([[1.2, 0.1, 0.0], [0.0, 1.1, -0.05], [0.02, 0.0, 0.9]])
    det = displacement_jacobian(_affine_field((12, 10, 14), grid, matrix, (3.0, -2.0, 1.0)))
    assert det.shape == (12, 10, 14)
    assert det.dtype == np.float32
    np.testing.assert_allclose(det, np.linalg.det(matrix), rtol=1e-5)  # border included


def test_zero_field_has_unit_jacobian_and_zero_log():
    field = _affine_field((6, 7, 8), LIA, np.eye(3), (0.0, 0.0, 0.0))
    ref = nb.Nifti1Image(np.zeros((6, 7, 8), np.float32), LIA)
    logj = log_jacobian_image(field, ref)
    assert np.asarray(logj.dataobj).dtype == np.float32
    np.testing.assert_array_equal(np.asarray(logj.dataobj), 0)
    np.testing.assert_allclose(logj.affine, LIA)


def test_linear_part_multiplies_the_field_jacobian():
    """T = A o W: det DT = det(A) det DW (A applied after the field, ITK's composite order)."""
    matrix = np.diag([1.1, 1.0, 0.9])
    field = _affine_field((6, 6, 6), LIA, matrix, (1.0, 2.0, 3.0))
    ref = nb.Nifti1Image(np.zeros((6, 6, 6), np.float32), LIA)
    logj = np.asarray(log_jacobian_image(field, ref, linear_det=1.5).dataobj)
    np.testing.assert_allclose(logj, np.log(1.5 * np.linalg.det(matrix)), rtol=1e-5)


def test_folded_field_log_is_finite_at_the_floor():
    field = _affine_field((5, 5, 5), np.eye(4), -np.eye(3), (0.0, 0.0, 0.0))  # det = -1: folded
    logj = np.asarray(log_jacobian_image(field, nb.Nifti1Image(np.zeros((5, 5, 5)), np.eye(4))).dataobj)
    np.testing.assert_allclose(logj, np.log(LOG_JACOBIAN_FLOOR), rtol=1e-6)


def test_field_shape_and_grid_errors():
    with pytest.raises(ValueError, match=r"'field' must be a 3-D displacement field .* Shape \(4, 4, 4, 2\)"):
        displacement_jacobian(nb.Nifti1Image(np.zeros((4, 4, 4, 2), np.float32), np.eye(4)))
    field = _affine_field((4, 4, 4), np.eye(4), np.eye(3), (0, 0, 0))
    with pytest.raises(ValueError, match=r"'field' must be sampled on the grid of 'reference'"):
        log_jacobian_image(field, nb.Nifti1Image(np.zeros((5, 4, 4)), np.eye(4)))


def _sphere(shape, affine, centre_mm, radius_mm) -> np.ndarray:
    """Partial-volume sphere (8x supersampled) on a grid."""
    sub = (np.arange(2) + 0.5) / 2 - 0.5
    acc = np.zeros(shape, np.float32)
    ijk = np.indices(shape).astype(np.float64)
    for dx in sub:
        for dy in sub:
            for dz in sub:
                pts = np.stack([ijk[0] + dx, ijk[1] + dy, ijk[2] + dz], -1) @ affine[:3, :3].T + affine[:3, 3]
                acc += (np.linalg.norm(pts - centre_mm, axis=-1) <= radius_mm).astype(np.float32)
    return acc / 8


def test_modulated_integral_equals_native_volume_for_known_scaling():
    """Subject = template scaled by 1.2 per axis: J = 1.728 and the modulated map keeps the native volume."""
    scale = 1.2
    native_aff = LIA  # subject grid, anisotropic voxels
    native = _sphere((60, 60, 70), native_aff, np.array([-5.0, 10.0, -10.0]), 30.0)
    native_volume = volume_mm3(nb.Nifti1Image(native, native_aff))
    assert native_volume == pytest.approx(4 / 3 * np.pi * 30.0**3, rel=0.01)

    # template grid (RAS, 2 mm); T maps template points to subject points: p -> scale * p + shift
    tpl_aff = np.diag([2.0, 2.0, 2.0, 1.0])
    tpl_aff[:3, 3] = -40.0
    shift_ras = np.array([-5.0, 10.0, -10.0])
    tpl_shape = (41, 41, 41)
    ijk = np.indices(tpl_shape).reshape(3, -1).T.astype(np.float64)
    ras = ijk @ tpl_aff[:3, :3].T + tpl_aff[:3, 3]
    sub_ras = scale * ras + shift_ras
    sub_ijk = (sub_ras - native_aff[:3, 3]) @ np.linalg.inv(native_aff[:3, :3]).T
    warped = ndimage.map_coordinates(native, sub_ijk.T, order=1, mode="constant").reshape(tpl_shape)
    warped_img = nb.Nifti1Image(warped.astype(np.float32), tpl_aff)

    lps_matrix = RAS_TO_LPS @ (scale * np.eye(3)) @ RAS_TO_LPS
    field = _affine_field(tpl_shape, tpl_aff, lps_matrix, RAS_TO_LPS @ shift_ras)
    logj = log_jacobian_image(field, warped_img)
    np.testing.assert_allclose(np.exp(np.asarray(logj.dataobj)), scale**3, rtol=1e-5)

    modulated = modulate(warped_img, logj)
    assert volume_mm3(modulated) == pytest.approx(native_volume, rel=0.01)
    # without modulation the template-space volume is the native one divided by 1.728
    assert volume_mm3(warped_img) == pytest.approx(native_volume / scale**3, rel=0.02)
    # FSL's direction (reciprocal) would be wrong by a factor 1.728**2
    fsl = volume_mm3(nb.Nifti1Image(warped / scale**3, tpl_aff))
    assert abs(fsl / native_volume - 1) > 0.5


def test_modulate_keeps_header_and_checks_grid():
    aff = np.diag([2.0, 2.0, 2.0, 1.0])
    warped = nb.Nifti1Image(np.full((4, 4, 4), 0.5, np.float32), aff)
    warped.set_sform(aff, code=4)
    logj = nb.Nifti1Image(np.full((4, 4, 4), np.log(2.0), np.float32), aff)
    out = modulate(warped, logj)
    np.testing.assert_allclose(np.asarray(out.dataobj), 1.0, rtol=1e-6)
    assert int(out.header["sform_code"]) == 4
    with pytest.raises(ValueError, match=r"'warped' and 'log_jacobian' must be on the same grid"):
        modulate(warped, nb.Nifti1Image(np.zeros((4, 4, 5), np.float32), aff))


def test_volume_scales_with_voxel_size_not_voxel_count():
    data = np.zeros((10, 10, 10), np.float32)
    data[2:5, 2:5, 2:5] = 1.0
    data[6, 6, 6] = 0.5
    v1 = volume_mm3(nb.Nifti1Image(data, np.diag([1.0, 1.0, 1.0, 1.0])))
    v2 = volume_mm3(nb.Nifti1Image(data, np.diag([2.0, 2.0, 2.0, 1.0])))
    v3 = volume_mm3(nb.Nifti1Image(data, np.diag([-1.0, 0.5, 3.0, 1.0])))  # a flip does not make it negative
    assert v1 == pytest.approx(27.5)
    assert v2 == pytest.approx(27.5 * 8)
    assert v3 == pytest.approx(27.5 * 1.5)
    mask = np.zeros_like(data, dtype=bool)
    mask[6, 6, 6] = True
    assert volume_mm3(nb.Nifti1Image(data, np.eye(4)), mask) == pytest.approx(0.5)


# --- on the real image (downsampled): registration + warping + modulation keep the GM volume -------------


ASEG_GM = [3, 42, 8, 47, 10, 49, 11, 50, 12, 51, 13, 52, 17, 53, 18, 54, 26, 58, 28, 60]


@pytest.fixture(scope="module")
def real_3mm(shared_data, tmp_path_factory) -> dict[str, Path]:
    """The shared T1w, FreeSurfer brain mask and aseg GM, block-averaged to 3 mm; the template at 4 mm."""
    from smriflow.data.templates import get_template

    fs = shared_data / "aomic" / "derivatives" / "freesurfer" / "sub-0002" / "mri"
    t1w = nb.load(shared_data / "bids" / "sub-0002" / "anat" / "sub-0002_T1w.nii.gz")
    mask = np.asarray(nb.load(fs / "brainmask.mgz").dataobj) > 0
    gm = np.isin(np.asarray(nb.load(fs / "aseg.mgz").dataobj), ASEG_GM).astype(np.float32)
    out = tmp_path_factory.mktemp("real3mm")
    brain, aff = block_mean(t1w.get_fdata(dtype=np.float32) * mask, t1w.affine, 3)
    mask3, _ = block_mean(mask.astype(np.float32), t1w.affine, 3)
    gm3, _ = block_mean(gm, t1w.affine, 3)
    paths = {"brain": out / "brain.nii.gz", "mask": out / "mask.nii.gz", "gm": out / "gm.nii.gz"}
    nb.Nifti1Image(brain, aff).to_filename(paths["brain"])
    nb.Nifti1Image((mask3 > 0.5).astype(np.uint8), aff).to_filename(paths["mask"])
    nb.Nifti1Image(gm3, aff).to_filename(paths["gm"])
    for key, suffix in (("template", "T1w"), ("template_mask", "mask")):
        tpl = nb.load(get_template(resolution=2, suffix=suffix))
        data, tpl_aff = block_mean(np.asarray(tpl.dataobj, dtype=np.float32), tpl.affine, 2)
        paths[key] = out / f"tpl_{suffix}.nii.gz"
        nb.Nifti1Image(data if key == "template" else (data > 0.5).astype(np.uint8), tpl_aff).to_filename(
            paths[key]
        )
    return paths


@pytest.mark.ants
@pytest.mark.shared
def test_modulated_gm_integral_equals_native_gm_on_real_image(real_3mm, tmp_path):
    from smriflow.anat.spatial_normalization import apply_transforms, normalize_to_template

    tpl, tpl_mask = real_3mm["template"], real_3mm["template_mask"]
    result = normalize_to_template(
        real_3mm["brain"], tpl, tmp_path, in_mask=real_3mm["mask"], template_mask=tpl_mask, preset="testing"
    )
    warped_gm = apply_transforms(real_3mm["gm"], tpl, [result.forward_transform], tmp_path / "gm_tpl.nii.gz")
    native = volume_mm3(real_3mm["gm"])
    assert 5.0e5 < native < 7.5e5  # ~600 ml of aseg grey matter
    ratio = volume_mm3(modulate(warped_gm, result.log_jacobian)) / native
    assert ratio == pytest.approx(1.0, abs=0.01)
    assert volume_mm3(warped_gm) / native > 1.2  # this brain is smaller than the template: J < 1 on average
