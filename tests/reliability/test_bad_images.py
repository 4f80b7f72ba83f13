"""The corpus's bad images, one by one through input validation (the end-to-end run is in test_corpus.py)."""

from __future__ import annotations

import warnings

import _faults
import nibabel as nb
import numpy as np
import pytest

from smriflow.anat.conform import load_conformed, shear_degrees, validate_image

SYNTHETIC = [
    label for label, (_, shared, expected) in _faults.CASES.items() if not shared and label != "noT1w"
]


@pytest.mark.parametrize("label", SYNTHETIC)
def test_each_bad_image_is_refused_in_one_line_naming_the_file(tmp_path, label):
    writer, _, expected = _faults.CASES[label]
    path = writer(tmp_path / f"sub-{label}_T1w.nii.gz")
    with pytest.raises(ValueError, match=expected) as info:
        load_conformed(path)
    assert str(info.value).startswith(f"{path}: ")
    assert "\n" not in str(info.value)


def _rotation(degrees: float) -> np.ndarray:
    angle = np.radians(degrees)
    return np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])


def test_shear_degrees_of_rotations_flips_and_shears():
    affine = np.eye(4)
    affine[:3, :3] = _rotation(30) @ np.diag([-1.0, 2.0, 5.0])
    assert shear_degrees(affine) == pytest.approx(0.0, abs=1e-9)
    shear = np.eye(3)
    shear[0, 2] = np.tan(np.radians(3))  # the third axis leans 3 degrees towards the first
    affine[:3, :3] = _rotation(30) @ shear @ np.diag([-1.0, 2.0, 5.0])
    assert shear_degrees(affine) == pytest.approx(3.0)


def test_an_oblique_image_without_shear_is_accepted(tmp_path):
    data, affine = _faults._head()
    affine[:3, :3] = _rotation(20) @ affine[:3, :3]
    path = _faults._save(tmp_path / "oblique.nii.gz", data, affine)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and no warning
        img, record = load_conformed(path)
    assert record["oblique"] is True and record["warnings"] == [] and record["anisotropy"] == 1.0
    np.testing.assert_allclose(img.affine, nb.as_closest_canonical(nb.load(path)).affine, atol=1e-5)


def test_float32_rounding_of_a_scanner_affine_is_not_a_shear(tmp_path):
    data, affine = _faults._head()
    affine[:3, :3] = (_rotation(7.3) @ affine[:3, :3]).astype(np.float32)  # as stored in a NIfTI header
    _faults._save(tmp_path / "scanner.nii.gz", data, affine)
    assert validate_image(tmp_path / "scanner.nii.gz")[1]["affine_source"] == "qform+sform"


def test_anisotropic_voxels_work_with_a_warning_kept_in_the_record(tmp_path):
    data, affine = _faults._head(shape=(48, 52, 10), zoom=(1.0, 1.0, 5.0))
    path = _faults._save(tmp_path / "sub-01_T1w.nii.gz", data, affine)
    with pytest.warns(UserWarning, match=r"voxels are anisotropic \(1 x 1 x 5 mm, ratio 5\)") as caught:
        img, record = load_conformed(path)
    assert len(caught) == 1 and str(caught[0].message).startswith(f"{path}: ")
    assert record["anisotropy"] == 5.0 and record["zooms"] == [1.0, 1.0, 5.0]
    assert record["warnings"] == [
        "sub-01_T1w.nii.gz: voxels are anisotropic (1 x 1 x 5 mm, ratio 5); tissue segmentation and "
        "normalization are less accurate than on isotropic ~1 mm data."
    ]  # the file name only: the record joins the sidecar, which holds no machine-specific path
    assert np.array_equal(np.asarray(img.dataobj), data)


def test_slightly_anisotropic_voxels_are_not_reported(tmp_path):
    data, affine = _faults._head(zoom=(1.0, 1.0, 1.9))
    path = _faults._save(tmp_path / "t1w.nii.gz", data, affine)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert validate_image(path)[1]["warnings"] == []


def test_a_4d_image_taken_anyway_is_noted_in_the_record(tmp_path):
    path = _faults.four_d(tmp_path / "sub-01_T1w.nii.gz")
    with pytest.warns(UserWarning, match="image is 4-D with 3 volumes; using the first one"):
        _, record = validate_image(path, take_first_volume=True)
    assert record["warnings"] == ["sub-01_T1w.nii.gz: image is 4-D with 3 volumes; using the first one."]


def test_a_slab_is_judged_in_millimetres_not_voxels(tmp_path):
    # 100 x 100 x 20 voxels at 1 x 1 x 5 mm is 100 x 100 x 100 mm: a whole (small) field of view
    data, affine = _faults._head(shape=(100, 100, 20), zoom=(1.0, 1.0, 5.0))
    with pytest.warns(UserWarning, match="anisotropic"):
        validate_image(_faults._save(tmp_path / "t1w.nii.gz", data, affine))
