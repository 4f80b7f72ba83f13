"""Tests for smriflow.anat.conform: every refusal has its one-line message; RAS without resampling."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import nibabel as nb
import numpy as np
import pytest

from smriflow.anat.conform import conform_image, load_conformed, validate_image

LIA = np.array([[-1.0, 0, 0, 10], [0, 0, 1, -12], [0, -1, 0, 14], [0, 0, 0, 1]])


def _image(data, affine=LIA, *, qcode=1, scode=1, qform=None) -> nb.Nifti1Image:
    img = nb.Nifti1Image(np.asarray(data), affine)
    img.set_sform(affine, code=scode)
    img.set_qform(affine if qform is None else qform, code=qcode)
    return img


def _save(tmp_path: Path, img, name="t1w.nii.gz") -> Path:
    path = tmp_path / name
    img.to_filename(str(path))
    return path


@pytest.fixture
def volume():
    return np.random.default_rng(0).integers(0, 200, (6, 7, 8)).astype(np.int16)


def test_reorients_lia_to_ras_without_resampling(tmp_path, volume):
    path = _save(tmp_path, _image(volume))
    img, record = load_conformed(path)
    assert nb.aff2axcodes(img.affine) == ("R", "A", "S")
    assert record["reoriented_from"] == "LIA"
    assert record["orientation"] == "LIA"
    assert record["took_first_volume"] is False
    assert record["affine_source"] == "qform+sform"
    assert sorted(img.shape) == sorted(volume.shape)
    # the same world point holds the same value: voxels were only reordered
    out = np.asarray(img.dataobj)
    for ijk in [(0, 0, 0), (5, 6, 7), (2, 3, 4)]:
        world = LIA @ np.array([*ijk, 1.0])
        new = np.round(np.linalg.inv(img.affine) @ world).astype(int)[:3]
        assert out[tuple(new)] == volume[ijk]
    assert np.asarray(img.dataobj).dtype == volume.dtype
    np.testing.assert_allclose(img.header.get_qform(), img.header.get_sform())
    json.dumps(record)  # JSON-serializable for the sidecar


def test_ras_input_is_kept(tmp_path, volume):
    affine = np.diag([1.2, 1.2, 1.2, 1.0])
    path = _save(tmp_path, _image(volume, affine))
    img, record = load_conformed(path)
    assert record["reoriented_from"] is None
    np.testing.assert_array_equal(np.asarray(img.dataobj), volume)
    np.testing.assert_allclose(img.affine, affine)
    assert record["zooms"] == pytest.approx([1.2, 1.2, 1.2])


def test_conform_image_writes_file(tmp_path, volume):
    out = tmp_path / "out.nii.gz"
    record = conform_image(_save(tmp_path, _image(volume)), out)
    assert out.exists() and record["source_file"] == "t1w.nii.gz"
    assert nb.aff2axcodes(nb.load(out).affine) == ("R", "A", "S")


def test_mgh_input(tmp_path, volume):
    path = tmp_path / "orig.mgz"
    nb.MGHImage(volume.astype(np.float32), LIA).to_filename(str(path))
    img, record = load_conformed(path)
    assert record["affine_source"] == "header" and record["reoriented_from"] == "LIA"


def test_only_one_of_qform_sform(tmp_path, volume):
    img = _image(volume, scode=0)
    assert validate_image(_save(tmp_path, img))[1]["affine_source"] == "qform"
    img = _image(volume, qcode=0)
    assert validate_image(_save(tmp_path, img, "s.nii.gz"))[1]["affine_source"] == "sform"


def test_single_volume_4d_is_3d(tmp_path, volume):
    _, record = validate_image(_save(tmp_path, _image(volume[..., None])))
    assert record["n_volumes"] == 1 and record["took_first_volume"] is False


def test_take_first_volume(tmp_path, volume):
    data = np.stack([volume, volume + 1, volume + 2], axis=-1)
    path = _save(tmp_path, _image(data))
    with pytest.warns(UserWarning, match="image is 4-D with 3 volumes; using the first one"):
        img, record = validate_image(path, take_first_volume=True)
    assert record["took_first_volume"] is True and record["n_volumes"] == 3
    np.testing.assert_array_equal(np.asarray(img.dataobj), volume)


def _bad(tmp_path: Path, case: str) -> Path:
    rng = np.random.default_rng(1)
    data = rng.random((5, 6, 7)).astype(np.float32) + 1
    if case == "2d":
        return _save(tmp_path, _image(data[:, :, 0]))
    if case == "flat":
        return _save(tmp_path, _image(data[:, :, :1]))
    if case == "4d":
        return _save(tmp_path, _image(np.stack([data, data], -1)))
    if case == "5d":
        return _save(tmp_path, _image(np.stack([np.stack([data, data], -1)] * 2, -1)))
    if case in ("nan", "inf"):
        data[1, 2, 3] = np.nan if case == "nan" else np.inf
        data[0, 0, 0] = -np.inf if case == "inf" else data[0, 0, 0]
        return _save(tmp_path, _image(data))
    if case == "empty":
        return _save(tmp_path, _image(np.zeros_like(data)))
    if case == "constant":
        return _save(tmp_path, _image(np.full_like(data, 7.0)))
    if case == "noform":
        return _save(tmp_path, _image(data, qcode=0, scode=0))
    if case == "mismatch":
        shifted = LIA.copy()
        shifted[0, 3] += 5
        return _save(tmp_path, _image(data, qform=shifted))
    if case == "singular":
        flat = LIA.copy()
        flat[:3, 2] = 0
        img = nb.Nifti1Image(data, None)
        img.header["sform_code"] = 1
        img.header["srow_x"], img.header["srow_y"], img.header["srow_z"] = flat[:3]
        img.header["qform_code"] = 0
        return _save(tmp_path, img)
    if case == "garbage":
        path = tmp_path / "t1w.nii.gz"
        path.write_bytes(b"this is not an image" * 20)
        return path
    if case == "truncated":
        path = _save(tmp_path, _image(rng.random((30, 30, 30)).astype(np.float32)))
        raw = gzip.decompress(path.read_bytes())
        path.write_bytes(gzip.compress(raw[: len(raw) // 2]))
        return path
    if case == "missing":
        return tmp_path / "nothere.nii.gz"
    raise AssertionError(case)


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("2d", r"image is 2-D \(shape \(5, 6\)\); a 3-D volume is required\."),
        ("flat", r"image is 2-D \(shape \(5, 6, 1\)\)"),
        ("4d", r"image is 4-D with 2 volumes \(shape \(5, 6, 7, 2\)\); a 3-D volume is required \(set "),
        ("5d", r"image is 5-D"),
        ("nan", r"image has 1 NaN/Inf voxels\."),
        ("inf", r"image has 2 NaN/Inf voxels\."),
        ("empty", r"image is empty \(all voxels are 0\)\."),
        ("constant", r"image is constant \(every voxel is 7\.0\)\."),
        ("noform", r"qform and sform are both unset \(codes 0\), the orientation is unknown\."),
        ("mismatch", r"qform and sform disagree by up to 5 mm over the field of view"),
        ("singular", r"affine is singular"),
        ("garbage", r"not a readable NIfTI/MGH image \("),
        ("truncated", r"(image data cannot be read|not a readable NIfTI/MGH image) \("),
        ("missing", r"file does not exist\."),
    ],
)
def test_refusals(tmp_path, case, message):
    path = _bad(tmp_path, case)
    with pytest.raises(ValueError, match=message) as info:
        load_conformed(path)
    text = str(info.value)
    assert text.startswith(f"{path}: ")
    assert "\n" not in text


def test_4d_with_take_first_volume_still_checks_values(tmp_path):
    data = np.zeros((5, 6, 7, 2), dtype=np.float32)
    data[..., 1] = 1
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="image is empty"):
        validate_image(_save(tmp_path, _image(data)), take_first_volume=True)


# -- intensity checks (issue 15, item 7) -------------------------------------------------------------------


@pytest.fixture(scope="module")
def synthetic_head():
    """A synthetic 2 mm T1w with a skull and scalp (smriflow.data.synth), little bias, and its labels."""
    from smriflow.data import synth

    params = synth.SynthParams(voxel_size=2.0, bias_strength=0.05)
    subject = synth.synthesize_subject(
        synth.load_template_model(), age=30.0, rng=np.random.default_rng(0), params=params
    )
    return nb.as_closest_canonical(subject.t1w), subject


def _t2w_like(t1w: nb.Nifti1Image, subject) -> np.ndarray:
    """The same head with T2w contrast in the brain: CSF bright, GM intermediate, WM dark."""
    data = np.asarray(t1w.dataobj, dtype=np.float32)
    dseg = np.asarray(nb.as_closest_canonical(subject.dseg).dataobj)
    out = data.copy()
    for label, value in ((1, 1100.0), (2, 700.0), (3, 2000.0)):
        out[dseg == label] = value
    return out


def _smooth_field(shape, amplitude: float) -> np.ndarray:
    grid = np.indices(shape, dtype=np.float32) / np.array(shape, dtype=np.float32)[:, None, None, None]
    return 1.0 + amplitude * np.sin(np.pi * (grid[0] + 0.5 * grid[2])) * np.cos(np.pi * grid[1])


def test_contrast_check_passes_a_t1w_and_a_strongly_biased_t1w(synthetic_head):
    from smriflow.anat.conform import check_t1w_contrast

    t1w, _ = synthetic_head
    data = np.asarray(t1w.dataobj, dtype=np.float32)
    zooms = t1w.header.get_zooms()[:3]
    plain = check_t1w_contrast(data, zooms)
    biased = check_t1w_contrast(data * _smooth_field(data.shape, 0.5), zooms)
    assert plain["t1w_like"] and plain["bright_dark_ratio"] > 1.5
    assert biased["t1w_like"] and biased["bright_dark_ratio"] > 1.2


def test_contrast_check_fires_on_a_t2w_and_conform_refuses_it_unless_allowed(synthetic_head, tmp_path):
    from smriflow.anat.conform import check_t1w_contrast

    t1w, subject = synthetic_head
    t2w = _t2w_like(t1w, subject)
    result = check_t1w_contrast(t2w, t1w.header.get_zooms()[:3])
    assert not result["t1w_like"] and result["bright_dark_ratio"] < 0.7
    path = _save(tmp_path, nb.Nifti1Image(t2w, t1w.affine), "sub-x_T1w.nii.gz")
    with pytest.raises(
        ValueError, match=r"^\S+sub-x_T1w.nii.gz: CSF brighter than white matter: is this a T1w\?"
    ):
        conform_image(path, tmp_path / "out.nii.gz")
    with pytest.warns(UserWarning, match="CSF brighter than white matter"):
        record = conform_image(path, tmp_path / "out.nii.gz", allow_contrast_mismatch=True)
    assert not record["contrast"]["t1w_like"] and "allow_contrast_mismatch" in record["warnings"][-1]


def test_zscored_input_is_shifted_to_nonnegative_with_a_warning(synthetic_head, tmp_path):
    t1w, _ = synthetic_head
    data = np.asarray(t1w.dataobj, dtype=np.float32)
    zscored = (data - data.mean()) / data.std()
    path = _save(tmp_path, nb.Nifti1Image(zscored, t1w.affine))
    with pytest.warns(UserWarning, match=r"intensities go down to -[0-9.]+ \(a z-scored"):
        record = conform_image(path, tmp_path / "out.nii.gz")
    out = np.asarray(nb.load(tmp_path / "out.nii.gz").dataobj)
    assert out.min() == 0.0
    assert record["intensity_shift"] == pytest.approx(-zscored.min(), rel=1e-5)
    np.testing.assert_allclose(out, zscored - zscored.min(), atol=1e-5)  # a shift, nothing else
    assert record["contrast"]["t1w_like"]


def test_zero_filled_background_stays_zero_when_shifted():
    from smriflow.anat.conform import make_nonnegative

    data = np.zeros((10, 10, 10), dtype=np.float32)
    data[3:7, 3:7, 3:7] = np.linspace(-2.0, 3.0, 64).reshape(4, 4, 4)
    out, shift = make_nonnegative(data)
    assert shift == pytest.approx(2.0)
    assert out.min() == 0.0 and (out[data == 0] == 0).all()
    assert out[3, 3, 3] == pytest.approx(0.0) and out[6, 6, 6] == pytest.approx(5.0)
    same, none = make_nonnegative(np.abs(data))
    assert none == 0.0 and same is not None and np.array_equal(same, np.abs(data))
