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
        deepbet_mask(nb.load(synthetic_t1w))


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
def test_deepbet_mask_on_shared_t1w(shared_data, t1w_3mm):
    src = nb.load(t1w_3mm)
    mask, info = deepbet_mask(src, num_threads=1)
    assert mask.shape == src.shape and mask.dtype == bool and mask.any()
    assert info == {"deepbet_threshold": 0.5, "deepbet_dilate": 0}
    reference, _ = _anat_data.reference_3mm(shared_data, "brainmask.mgz")
    assert dice(mask, reference > 0) > 0.9  # 0.971 measured at 3 mm
    # deterministic for a given thread count
    again, _ = deepbet_mask(src, num_threads=1)
    np.testing.assert_array_equal(again, mask)
    # dilation grows the mask by a layer
    bigger, _ = deepbet_mask(src, n_dilate=1, num_threads=1)
    assert bigger.sum() > mask.sum() and not (mask & ~bigger).any()


@needs_deepbet
def test_deepbet_mask_rejects_4d(tmp_path):
    path = tmp_path / "x.nii.gz"
    nb.Nifti1Image(np.zeros((4, 4, 4, 2), np.float32), np.eye(4)).to_filename(str(path))
    with pytest.raises(ValueError, match="expected a 3-D image"):
        deepbet_mask(nb.load(path))


@needs_deepbet
@pytest.mark.ants
@pytest.mark.shared
def test_interface_deepbet_keeps_every_output(shared_data, t1w_3mm, tmp_path):
    from smriflow.interfaces.brain_extraction import BrainExtraction

    out = BrainExtraction(in_file=t1w_3mm, method="deepbet", num_threads=1).run(cwd=str(tmp_path)).outputs
    direct, _ = deepbet_mask(nb.load(t1w_3mm), num_threads=1)
    np.testing.assert_array_equal(np.asarray(nb.load(out.out_mask).dataobj) > 0, direct)
    # the affine to the template is still computed: normalization and segmentation read it
    assert out.out_affine.endswith("from-T1w_to-MNI152NLin2009aSym_mode-image_desc-affine_xfm.mat")
    assert Path(out.out_affine).is_file() and Path(out.out_prior).is_file()
    report = json.loads(Path(out.out_report).read_text())
    assert report["method"] == "deepbet" and report["refine"] is False
    assert report["deepbet_threshold"] == 0.5 and report["deepbet_dilate"] == 0
    assert 1100 < report["brain_volume_ml"] < 1700
