"""ConformImage: validated RAS output, the JSON record, one-line refusals."""

from __future__ import annotations

import json

import nibabel as nb
import numpy as np
import pytest

from smriflow.engine.registry import interface_registry
from smriflow.interfaces.conform import ConformImage

LIA = np.array([[-2.0, 0, 0, 20], [0, 0, 2, -24], [0, -2, 0, 28], [0, 0, 0, 1]])


def _write(path, data, affine=LIA):
    img = nb.Nifti1Image(data, affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    img.to_filename(str(path))
    return str(path)


def test_registered():
    from smriflow.interfaces import bias, conform
    from smriflow.interfaces import brain_extraction as brain
    from smriflow.interfaces import tissue_segmentation as segmentation

    registry = interface_registry()
    assert registry["ConformImage"] is ConformImage
    for module in (bias, brain, conform, segmentation):
        assert len(module.__all__) == 1
        assert registry[module.__all__[0]] is getattr(module, module.__all__[0])


def test_conform_lia(tmp_path):
    data = np.random.default_rng(0).integers(1, 100, (8, 9, 10)).astype(np.uint8)
    in_file = _write(tmp_path / "sub-01_T1w.nii.gz", data)
    out = ConformImage(in_file=in_file).run(cwd=str(tmp_path)).outputs
    assert out.out_file == str(tmp_path / "sub-01_T1w_conformed.nii.gz")
    img = nb.load(out.out_file)
    assert nb.aff2axcodes(img.affine) == ("R", "A", "S")
    assert img.get_data_dtype() == np.uint8
    assert sorted(img.shape) == sorted(data.shape)
    record = json.loads(open(out.out_report).read())
    assert record == out.report
    assert record["reoriented_from"] == "LIA" and record["took_first_volume"] is False


def test_take_first_volume(tmp_path):
    data = np.random.default_rng(0).random((6, 6, 6, 3)).astype(np.float32) + 1
    in_file = _write(tmp_path / "t1w.nii.gz", data)
    with pytest.raises(ValueError, match=r"image is 4-D with 3 volumes .*take_first_volume=True"):
        ConformImage(in_file=in_file).run(cwd=str(tmp_path))
    out = ConformImage(in_file=in_file, take_first_volume=True).run(cwd=str(tmp_path)).outputs
    assert out.report["took_first_volume"] is True
    assert nb.load(out.out_file).shape == (6, 6, 6)


def test_refuses_nan(tmp_path):
    data = np.ones((6, 6, 6), np.float32)
    data[0, 0, 0] = 2
    data[1, 1, 1] = np.nan
    in_file = _write(tmp_path / "t1w.nii.gz", data)
    with pytest.raises(ValueError, match=r"t1w\.nii\.gz: image has 1 NaN/Inf voxels\."):
        ConformImage(in_file=in_file).run(cwd=str(tmp_path))


@pytest.mark.shared
def test_shared_t1w(shared_data, tmp_path):
    in_file = shared_data / "bids/sub-0002/anat/sub-0002_T1w.nii.gz"
    out = ConformImage(in_file=str(in_file)).run(cwd=str(tmp_path)).outputs
    assert out.report["reoriented_from"] == "LIA" and out.report["shape"] == [256, 256, 256]
    src, img = nb.load(in_file), nb.load(out.out_file)
    # same voxel values at the same world points (no resampling)
    world = src.affine @ np.array([100, 120, 140, 1.0])
    ijk = np.round(np.linalg.inv(img.affine) @ world).astype(int)[:3]
    assert np.asarray(img.dataobj)[tuple(ijk)] == np.asarray(src.dataobj)[100, 120, 140]
