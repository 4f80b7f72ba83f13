"""N4BiasCorrect: outputs on the input grid, profiles and overrides, determinism, a shared-data run."""

from __future__ import annotations

import os

import nibabel as nb
import numpy as np
import pytest
from _anat_data import t1w_3mm as t1w_3mm_file

from smriflow.interfaces.bias import N4BiasCorrect

pytestmark = pytest.mark.ants


def _phantom(path, shape=(40, 44, 42), zoom=4.0):
    rng = np.random.default_rng(0)
    grid = np.indices(shape).astype(np.float32)
    centre = (np.array(shape) - 1) / 2
    r = np.sqrt(sum(((grid[i] - centre[i]) / (shape[i] / 2)) ** 2 for i in range(3)))
    data = np.select([r < 0.45, r < 0.62, r < 0.7, r < 0.82], [150.0, 90.0, 30.0, 120.0], 0.0)
    bias = np.exp(0.3 * (grid[0] - centre[0]) / shape[0])
    data = (data * bias + rng.normal(0, 2, shape) * (data > 0)).clip(0).astype(np.float32)
    affine = np.diag([zoom, zoom, zoom, 1.0])
    img = nb.Nifti1Image(data, affine)
    img.set_qform(affine, 1)
    img.set_sform(affine, 1)
    img.to_filename(str(path))
    return str(path), r < 0.45


def test_outputs_on_input_grid(tmp_path):
    in_file, core = _phantom(tmp_path / "t1w.nii.gz")
    iface = N4BiasCorrect(in_file=in_file, fit_resolution=0, shrink_factor=2, iterations=[10, 10, 10])
    out = iface.run(cwd=str(tmp_path)).outputs
    src = nb.load(in_file)
    for name in ("out_file", "out_bias", "out_mask"):
        img = nb.load(getattr(out, name))
        assert img.shape == src.shape
        np.testing.assert_allclose(img.affine, src.affine)
    assert nb.load(out.out_mask).get_data_dtype() == np.uint8
    corrected = nb.load(out.out_file).get_fdata()
    raw = src.get_fdata()
    assert corrected[core].std() / corrected[core].mean() < raw[core].std() / raw[core].mean()
    assert os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] == "1"  # the policy was applied


def test_explicit_mask_and_mismatch(tmp_path):
    in_file, core = _phantom(tmp_path / "t1w.nii.gz")
    mask = tmp_path / "mask.nii.gz"
    nb.Nifti1Image(core.astype(np.uint8), nb.load(in_file).affine).to_filename(str(mask))
    out = (
        N4BiasCorrect(in_file=in_file, in_mask=str(mask), fit_resolution=0, iterations=[5, 5])
        .run(cwd=str(tmp_path))
        .outputs
    )
    np.testing.assert_array_equal(np.asarray(nb.load(out.out_mask).dataobj) > 0, core)
    small = tmp_path / "small.nii.gz"
    nb.Nifti1Image(np.ones((4, 4, 4), np.uint8), np.eye(4)).to_filename(str(small))
    with pytest.raises(ValueError, match="'in_mask' must be on the grid of 'in_file'"):
        N4BiasCorrect(in_file=in_file, in_mask=str(small)).run(cwd=str(tmp_path))


def test_bad_profile():
    with pytest.raises(Exception, match="profile"):
        N4BiasCorrect(profile="slow")


@pytest.fixture(scope="module")
def t1w_3mm(shared_data, tmp_path_factory):
    """The shared T1w block-averaged to 3 mm (keeps the suite fast)."""
    return t1w_3mm_file(shared_data, tmp_path_factory.mktemp("t1w3"))


@pytest.mark.shared
def test_shared_t1w_deterministic(t1w_3mm, tmp_path):
    runs = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        runs.append(N4BiasCorrect(in_file=t1w_3mm).run(cwd=str(tmp_path / name)).outputs)
    first, second = (np.asarray(nb.load(r.out_file).dataobj) for r in runs)
    np.testing.assert_array_equal(first, second)
    field = np.asarray(nb.load(runs[0].out_bias).dataobj)
    mask = np.asarray(nb.load(runs[0].out_mask).dataobj) > 0
    assert np.median(field[mask]) == pytest.approx(1.0, abs=1e-3)
    assert 0.5 < field[mask].min() and field[mask].max() < 2.0
