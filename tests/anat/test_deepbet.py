"""Tests for smriflow.anat.brain_extraction.deepbet and BrainExtraction(method="deepbet").

deepbet (with PyTorch) is the optional extra ``smriflow[deepbet]``; CI does not install it (~1 GB), so the
tests that run the network skip there. The missing-extra error is tested everywhere.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import _anat_data
import nibabel as nb
import numpy as np
import pytest

from smriflow.anat.brain_extraction.deepbet import deepbet_mask
from smriflow.utils.metrics import dice

HAS_DEEPBET = all(importlib.util.find_spec(name) is not None for name in ("deepbet", "torch"))
needs_deepbet = pytest.mark.skipif(
    not HAS_DEEPBET,
    reason="deepbet is not installed (optional extra smriflow[deepbet], ~1 GB with PyTorch; CI does not "
    "install it): pip install torch==2.13.0 then pip install 'smriflow[deepbet]'",
)


def test_missing_extra_names_the_install_command(tmp_path, monkeypatch, synthetic_t1w):
    monkeypatch.setitem(sys.modules, "deepbet", None)  # import deepbet -> ImportError
    with pytest.raises(ImportError, match=r'pip install torch==2\.13\.0.*pip install "smriflow\[deepbet\]"'):
        deepbet_mask(synthetic_t1w, tmp_path)


def test_interface_missing_extra_fails_before_registration(tmp_path, monkeypatch, synthetic_t1w):
    from smriflow.interfaces.brain_extraction import BrainExtraction

    monkeypatch.setitem(sys.modules, "deepbet", None)
    with pytest.raises(ImportError, match=r"smriflow\[deepbet\]"):
        BrainExtraction(in_file=str(synthetic_t1w), method="deepbet").run(cwd=str(tmp_path))
    assert not (tmp_path / "_registration").exists()


@pytest.fixture(scope="module")
def t1w_3mm(shared_data, tmp_path_factory):
    return _anat_data.t1w_3mm(shared_data, tmp_path_factory.mktemp("deepbet_t1w"))


@needs_deepbet
@pytest.mark.shared
def test_deepbet_mask_on_shared_t1w(shared_data, t1w_3mm, tmp_path):
    mask_path, brain_path = deepbet_mask(t1w_3mm, tmp_path / "a", num_threads=1)
    src = nb.load(t1w_3mm)
    mask_img = nb.load(mask_path)
    assert Path(mask_path).name == "sub-0002_T1w_brainmask.nii.gz"
    assert mask_img.shape == src.shape and mask_img.get_data_dtype() == np.uint8
    np.testing.assert_allclose(mask_img.affine, src.affine)  # native grid, input's orientation (LIA here)
    assert int(mask_img.header["sform_code"]) == int(src.header["sform_code"])
    mask = np.asarray(mask_img.dataobj)
    assert set(np.unique(mask)) == {0, 1}
    brain = np.asarray(nb.load(brain_path).dataobj)
    np.testing.assert_allclose(brain, np.asarray(src.dataobj, dtype=np.float32) * mask, rtol=1e-6)
    reference, _ = _anat_data.reference_3mm(shared_data, "brainmask.mgz")
    assert dice(mask > 0, reference > 0) > 0.9  # 0.971 measured at 3 mm
    # deterministic for a given thread count
    again, _ = deepbet_mask(t1w_3mm, tmp_path / "b", num_threads=1)
    np.testing.assert_array_equal(np.asarray(nb.load(again).dataobj), mask)
    # dilation grows the mask by a layer
    dilated, _ = deepbet_mask(t1w_3mm, tmp_path / "c", n_dilate=1, num_threads=1)
    bigger = np.asarray(nb.load(dilated).dataobj) > 0
    assert bigger.sum() > mask.sum() and not (mask.astype(bool) & ~bigger).any()


@needs_deepbet
def test_deepbet_mask_rejects_4d(tmp_path):
    path = tmp_path / "x.nii.gz"
    nb.Nifti1Image(np.zeros((4, 4, 4, 2), np.float32), np.eye(4)).to_filename(str(path))
    with pytest.raises(ValueError, match="expected a 3-D image"):
        deepbet_mask(path, tmp_path)


@needs_deepbet
@pytest.mark.ants
@pytest.mark.shared
def test_interface_deepbet_keeps_every_output(shared_data, t1w_3mm, tmp_path):
    from smriflow.interfaces.brain_extraction import BrainExtraction

    out = BrainExtraction(in_file=t1w_3mm, method="deepbet", num_threads=1).run(cwd=str(tmp_path)).outputs
    direct, _ = deepbet_mask(t1w_3mm, tmp_path / "direct", num_threads=1)
    np.testing.assert_array_equal(
        np.asarray(nb.load(out.out_mask).dataobj), np.asarray(nb.load(direct).dataobj)
    )
    # the affine to the template is still computed: normalization and segmentation read it
    assert out.out_affine.endswith("from-T1w_to-MNI152NLin2009aSym_mode-image_desc-affine_xfm.mat")
    assert Path(out.out_affine).is_file() and Path(out.out_prior).is_file()
    report = json.loads(Path(out.out_report).read_text())
    assert report["method"] == "deepbet" and report["refine"] is False
    assert report["deepbet_threshold"] == 0.5 and report["deepbet_dilate"] == 0
    assert 1100 < report["brain_volume_ml"] < 1700
