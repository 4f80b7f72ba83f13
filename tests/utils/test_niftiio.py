"""The one image loader, writer and file-name splitter (:mod:`smriflow.utils.niftiio`)."""

from __future__ import annotations

import nibabel as nb
import numpy as np
import pytest

from smriflow.utils.niftiio import image_like, load_image, save_like, split_ext, strip_ext


def test_split_ext_keeps_image_extensions_whole():
    assert split_ext("a/sub-01_T1w.nii.gz") == ("sub-01_T1w", ".nii.gz")
    assert split_ext("sub-01_stats.json") == ("sub-01_stats", ".json")
    assert split_ext("aseg.mgz") == ("aseg", ".mgz")
    assert strip_ext("/x/T1.anon.nii") == "T1.anon"  # dots inside the stem stay
    assert strip_ext("table.tsv") == "table"


def _write(path, shape=(4, 5, 6)):
    nb.Nifti1Image(
        np.arange(np.prod(shape), dtype=np.float32).reshape(shape), np.diag([2, 2, 2, 1])
    ).to_filename(str(path))
    return path


def test_load_image_takes_paths_and_images(tmp_path):
    path = _write(tmp_path / "a.nii.gz")
    img = load_image(path, ndim=3, read=True)
    assert img.shape == (4, 5, 6)
    assert load_image(img) is img


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, r"missing\.nii\.gz: file does not exist\.$"),
        (b"not an image", r"bad\.nii\.gz: not a readable NIfTI/MGH image \(.*\)\.$"),
    ],
)
def test_load_image_errors_are_one_line_naming_the_file(tmp_path, content, message):
    path = tmp_path / ("missing.nii.gz" if content is None else "bad.nii.gz")
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ValueError, match=message) as info:
        load_image(path)
    assert "\n" not in str(info.value)


def test_load_image_checks_dimensions_and_truncated_data(tmp_path):
    path = _write(tmp_path / "four.nii", shape=(4, 5, 6, 2))
    with pytest.raises(
        ValueError, match=r"four\.nii: expected a 3-D image, got 4-D with shape \(4, 5, 6, 2\)$"
    ):
        load_image(path, ndim=3)
    whole = _write(tmp_path / "cut.nii").read_bytes()
    (tmp_path / "cut.nii").write_bytes(whole[: len(whole) - 40])
    load_image(tmp_path / "cut.nii")  # the header alone is fine
    with pytest.raises(ValueError, match=r"cut\.nii: image data cannot be read \("):
        load_image(tmp_path / "cut.nii", read=True)


def test_image_like_takes_the_grid_and_either_a_new_or_a_copied_header(tmp_path):
    ref = nb.load(_write(tmp_path / "ref.nii.gz"))
    ref.header["descrip"] = b"reference"
    data = np.ones(ref.shape, bool)
    fresh = image_like(data, ref, np.uint8)
    copied = image_like(data, ref, np.uint8, copy_header=True)
    for img in (fresh, copied):
        assert np.array_equal(img.affine, ref.affine) and img.get_data_dtype() == np.uint8
    assert fresh.header["descrip"].item() == b"" and copied.header["descrip"].item() == b"reference"
    with pytest.raises(ValueError, match=r"does not match the reference"):
        image_like(np.ones((2, 2, 2)), ref)
    out = save_like(data, ref, tmp_path / "out.nii.gz", np.uint8)
    assert out == str(tmp_path / "out.nii.gz") and np.asarray(nb.load(out).dataobj).sum() == data.size
