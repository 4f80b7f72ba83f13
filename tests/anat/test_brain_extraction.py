"""Tests for smriflow.anat.brain_extraction.template: WM peak, crude and refined masks, template-based run."""

from __future__ import annotations

import nibabel as nb
import numpy as np
import pytest
from scipy import ndimage

from smriflow.anat.brain_extraction.template import (
    _refine_on_grid,
    brain_extraction,
    crude_brain_mask,
    refine_brain_mask,
    white_matter_peak,
)
from smriflow.utils.grids import block_reduce, to_isotropic_grid
from smriflow.utils.intensity import kmeans_1d
from smriflow.utils.metrics import dice


def _head_phantom(shape=(60, 70, 64), zoom=2.0, seed=0):
    """Ellipsoidal 'brain' (WM core, GM shell), CSF gap, dark skull, bright scalp; returns data, brain."""
    rng = np.random.default_rng(seed)
    grid = np.indices(shape).astype(np.float32)
    centre = (np.array(shape) - 1) / 2
    r = np.sqrt(sum(((grid[i] - centre[i]) / (shape[i] / 2)) ** 2 for i in range(3)))
    data = np.select(
        [r < 0.45, r < 0.62, r < 0.67, r < 0.74, r < 0.86], [160.0, 100.0, 40.0, 15.0, 130.0], 0.0
    ).astype(np.float32)
    data += rng.normal(0, 3, shape).astype(np.float32) * (data > 0)
    return np.clip(data, 0, None), r < 0.62


def test_kmeans_1d_recovers_centres():
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(m, 5, 3000) for m in (40, 100, 160)])
    centers, labels = kmeans_1d(values, 3)
    np.testing.assert_allclose(centers, [40, 100, 160], atol=1.5)
    assert np.all(np.diff(centers) > 0)
    assert labels.shape == values.shape and set(np.unique(labels)) == {0, 1, 2}
    again = kmeans_1d(values, 3)
    np.testing.assert_array_equal(again[0], centers)
    with pytest.raises(ValueError, match="2 values cannot make 3 clusters"):
        kmeans_1d(np.array([1.0, 2.0]), 3)


def test_white_matter_peak():
    rng = np.random.default_rng(1)
    values = np.concatenate([rng.normal(100, 10, 6000), rng.normal(160, 6, 5000), rng.normal(40, 8, 1000)])
    assert white_matter_peak(values) == pytest.approx(160, abs=4)


def test_crude_brain_mask_phantom():
    data, brain = _head_phantom()
    mask = crude_brain_mask(data, (2.0, 2.0, 2.0))
    assert mask.dtype == bool and mask.shape == data.shape
    assert dice(mask, brain) > 0.9
    scalp = (data > 110) & ~ndimage.binary_dilation(brain, iterations=3)
    assert not (mask & scalp).any()


def test_crude_brain_mask_rejects_non_head():
    data = np.zeros((20, 20, 20), np.float32)  # a thin plate: nothing survives a 4 mm erosion
    data[5:15, 5:15, 9:11] = np.linspace(1, 2, 200).reshape(10, 10, 2)
    with pytest.raises(ValueError, match="no brain-like tissue found"):
        crude_brain_mask(data, (2.0, 2.0, 2.0))


def test_refine_brain_mask_recovers_brain_from_a_shifted_prior():
    data, brain = _head_phantom()
    prior = np.roll(brain, 1, axis=0).astype(np.float32)  # 2 mm off
    refined = refine_brain_mask(data, (2.0, 2.0, 2.0), prior, dilation_mm=0)
    assert dice(refined, brain) > 0.95
    assert dice(refined, brain) > dice(prior > 0.5, brain)
    # the default 2 mm dilation adds the CSF rim, never the scalp
    full = refine_brain_mask(data, (2.0, 2.0, 2.0), prior)
    assert full.sum() > refined.sum()
    assert not (full & (data > 110) & ~ndimage.binary_dilation(brain, iterations=3)).any()


@pytest.mark.parametrize(("name", "zooms"), [("1 x 1 x 3 mm", (1.0, 1.0, 3.0)), ("1.5 mm", (1.5, 1.5, 1.5))])
def test_refine_brain_mask_keeps_its_volume_on_coarse_or_anisotropic_voxels(name, zooms):
    """Radii in mm on a grid that can only grow by whole voxels: 1 × 1 × 3 mm dilated the mask 3 mm, 1.5 mm
    only 1.5 mm. Refined on a 1 mm grid, the mask keeps the 1 mm volume (measured on this phantom: +0.05 %
    and +0.9 %; on the coarse grid itself: +7.3 % and -4.5 %)."""
    data, brain = _head_phantom(shape=(96, 112, 102), zoom=1.0)
    prior = brain.astype(np.float32)
    fine_ml = refine_brain_mask(data, (1.0, 1.0, 1.0), prior).sum() / 1000.0
    if zooms == (1.0, 1.0, 3.0):
        coarse, coarse_prior = block_reduce(data, (1, 1, 3)), block_reduce(prior, (1, 1, 3))
    else:
        coarse, coarse_prior = (to_isotropic_grid(a, (1, 1, 1), zooms[0], order=1) for a in (data, prior))
    voxel_ml = float(np.prod(zooms)) / 1000.0
    mask = refine_brain_mask(coarse, zooms, coarse_prior)
    assert mask.shape == coarse.shape and mask.dtype == bool
    assert mask.sum() * voxel_ml == pytest.approx(fine_ml, rel=0.02), name
    own_grid = _refine_on_grid(
        coarse, zooms, coarse_prior, tissue_threshold=0.42, band_mm=2.0, closing_mm=3.0, dilation_mm=2.0
    )
    assert abs(own_grid.sum() * voxel_ml / fine_ml - 1) > 0.04, name  # what the 1 mm grid mends


def test_refine_brain_mask_stays_on_fine_or_preview_grids():
    """1 mm and 3 mm previews are refined on their own grid, as before (identical masks)."""
    data, brain = _head_phantom()
    options = {"tissue_threshold": 0.42, "band_mm": 2.0, "closing_mm": 3.0, "dilation_mm": 2.0}
    for zooms in ((1.0, 1.0, 1.0), (3.0, 3.0, 3.0)):
        expected = _refine_on_grid(data, zooms, brain.astype(np.float32), **options)
        assert np.array_equal(refine_brain_mask(data, zooms, brain.astype(np.float32)), expected)


def test_refine_brain_mask_errors():
    data, _ = _head_phantom(shape=(20, 20, 20))
    with pytest.raises(ValueError, match="the prior brain mask is empty"):
        refine_brain_mask(data, (2, 2, 2), np.zeros(data.shape))
    prior = np.zeros(data.shape)
    prior[8:12, 8:12, 8:12] = 1
    with pytest.raises(ValueError, match="no brain tissue above the intensity threshold"):
        refine_brain_mask(np.zeros(data.shape), (2, 2, 2), prior)


def _template_head():
    """A 'head' made of the 2 mm template brain plus a CSF gap, dark skull and bright scalp, in LIA."""
    from smriflow.data.templates import get_template

    t1 = nb.load(get_template(resolution=2))
    mask = np.asarray(nb.load(get_template(resolution=2, suffix="mask")).dataobj) > 0
    pad = 8
    brain = np.pad(np.asarray(t1.dataobj, dtype=np.float32), pad) * 160
    mask = np.pad(mask, pad)
    dist = ndimage.distance_transform_edt(~mask, sampling=2.0)
    data = np.select([mask, dist <= 3, dist <= 8, dist <= 14], [brain, 30.0, 10.0, 120.0], 0.0)
    data = data + np.random.default_rng(0).normal(0, 2, data.shape) * (data > 0)
    affine = t1.affine.copy()
    affine[:3, 3] -= 2.0 * pad
    ras = nb.Nifti1Image(np.clip(data, 0, None).astype(np.float32), affine)
    to_lia = nb.orientations.ornt_transform(
        nb.orientations.axcodes2ornt("RAS"), nb.orientations.axcodes2ornt("LIA")
    )
    lia = ras.as_reoriented(to_lia)
    lia_mask = nb.Nifti1Image(mask.astype(np.uint8), affine).as_reoriented(to_lia)
    return lia, np.asarray(lia_mask.dataobj) > 0


@pytest.mark.ants
def test_brain_extraction_on_template_head(tmp_path):
    head, truth = _template_head()
    assert nb.aff2axcodes(head.affine) == ("L", "I", "A")
    result = brain_extraction(head, work_dir=tmp_path / "a", num_threads=1)
    assert result.mask.shape == head.shape and result.mask.dtype == bool
    assert dice(result.mask, truth) > 0.95
    assert dice(result.prior > 0.5, truth) > 0.9
    assert 0 <= result.prior.min() and result.prior.max() <= 1
    assert result.info["method"] == "ants" and result.info["use_syn"] is False
    assert result.info["brain_volume_ml"] == pytest.approx(result.mask.sum() * 8 / 1000)
    assert result.affine_xfm.startswith(str(tmp_path / "a" / "affine"))
    # the mask never reaches the scalp
    data = np.asarray(head.dataobj)
    assert not (result.mask & (data > 100) & ~ndimage.binary_dilation(truth, iterations=4)).any()
    # one thread and a fixed seed: identical results
    again = brain_extraction(head, work_dir=tmp_path / "b", num_threads=1)
    np.testing.assert_array_equal(again.mask, result.mask)
    np.testing.assert_array_equal(again.prior, result.prior)


@pytest.mark.ants
def test_brain_extraction_without_refinement(tmp_path):
    head, truth = _template_head()
    result = brain_extraction(head, refine=False, work_dir=tmp_path, num_threads=1)
    np.testing.assert_array_equal(result.mask, result.prior > 0.5)
    assert result.info["refine"] is False


_RUN_TWO_THREADS = """
import sys
import numpy as np
sys.path.insert(0, sys.argv[1])
from test_brain_extraction import _template_head
from smriflow.anat.brain_extraction.template import brain_extraction
head, _ = _template_head()
result = brain_extraction(head, work_dir=sys.argv[2], num_threads=2)
np.save(sys.argv[3], result.mask)
"""


@pytest.mark.ants
def test_two_threads_fresh_processes_identical(tmp_path):
    """A re-run is a fresh process: with 2 ITK threads and the same seed the mask is the same."""
    import subprocess
    import sys
    from pathlib import Path

    masks = []
    for run in ("a", "b"):
        out = tmp_path / f"{run}.npy"
        cmd = [
            sys.executable,
            "-c",
            _RUN_TWO_THREADS,
            str(Path(__file__).parent),
            str(tmp_path / run),
            str(out),
        ]
        subprocess.run(cmd, check=True, timeout=300)
        masks.append(np.load(out))
    np.testing.assert_array_equal(masks[0], masks[1])


def test_workflow_choices_are_the_registered_methods():
    """The YAML arguments that pick a method list exactly the registry's methods (one declaration)."""
    from ruamel.yaml import YAML

    from smriflow.anat.brain_extraction import METHODS
    from smriflow.config.resources import packaged_dir

    folder = packaged_dir("workflows")
    for name, arg in (("anat_preproc", "brain_method"), ("brain_extraction", "method")):
        spec = YAML(typ="safe").load((folder / f"{name}.yml").read_text())
        assert spec["args"][arg]["choices"] == list(METHODS), name
        assert spec["args"][arg]["default"] in METHODS


# --- hybrid: learned mask, checked and retried registration, refined edge (3 mm copies of the shared T1w) ---


@pytest.fixture(scope="module")
def t1w_3mm_ref(shared_data):
    """The shared T1w at 3 mm (LIA) and FreeSurfer's brain mask on its grid."""
    from _anat_data import T1W, downsample, reference_3mm

    img = downsample(nb.load(shared_data / T1W))
    reference, _ = reference_3mm(shared_data, "brainmask.mgz")
    return img, reference > 0


def _hybrid(img, tmp_path, **kwargs):
    from smriflow.anat.brain_extraction.hybrid import hybrid_brain_extraction

    return hybrid_brain_extraction(img, work_dir=tmp_path, num_threads=1, **kwargs)


@pytest.fixture(scope="module")
def hybrid_3mm(t1w_3mm_ref, tmp_path_factory):
    return _hybrid(t1w_3mm_ref[0], tmp_path_factory.mktemp("hybrid"))


@pytest.mark.ants
@pytest.mark.shared
def test_hybrid_on_the_shared_t1w(t1w_3mm_ref, hybrid_3mm):
    img, reference = t1w_3mm_ref
    info = hybrid_3mm.info
    assert hybrid_3mm.mask.shape == img.shape and hybrid_3mm.mask.dtype == bool
    assert dice(hybrid_3mm.mask, reference) >= 0.95
    assert info["method"] == "hybrid" and info["path"] == "refined" and info["refine"] is True
    assert info["skull_stripped_input"] is False and info["outside_fraction"] > 0.3
    assert info["retries"] == 0 and info["starts"][0]["passed"] and info["start"] == "centre of mass"
    assert info["dice_prior"] >= 0.85 and info["ncc"] >= 0.5 and 0.45 <= info["scale"] <= 1.6
    assert info["brain_volume_ml"] == pytest.approx(hybrid_3mm.mask.sum() * 27 / 1000)


def _pad_axis(data: np.ndarray, axis: int, before: int, after: int, mode: str) -> np.ndarray:
    widths = [(0, 0)] * 3
    widths[axis] = (before, after)
    return np.pad(data, widths, mode=mode)


@pytest.mark.ants
@pytest.mark.shared
def test_hybrid_crops_a_long_neck(t1w_3mm_ref, tmp_path):
    """40 neck-like slices (120 mm; the lowest slice repeated) below the head: the mask stays on the brain."""
    img, reference = t1w_3mm_ref
    assert nb.aff2axcodes(img.affine)[1] == "I"  # axis 1 runs downwards: pad at its end
    data = _pad_axis(np.asarray(img.dataobj), 1, 0, 40, "edge")
    result = _hybrid(nb.Nifti1Image(data, img.affine), tmp_path)
    truth = _pad_axis(reference, 1, 0, 40, "constant")
    assert dice(result.mask, truth) >= 0.95
    assert result.info["path"] == "refined"
    assert result.info["crop_voxels"][1][1] < data.shape[1] - 20  # the neck is cropped away


@pytest.mark.ants
@pytest.mark.shared
def test_hybrid_on_a_shifted_tilted_head(t1w_3mm_ref, tmp_path):
    """The head tilted by 20° and moved 60 mm (20 voxels) off the volume's centre."""
    img, reference = t1w_3mm_ref

    def move(volume, order):
        padded = _pad_axis(_pad_axis(volume, 0, 20, 0, "constant"), 2, 0, 20, "constant")
        a = np.deg2rad(20.0)
        rot = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
        centre = (np.array(padded.shape) - 1) / 2
        return ndimage.affine_transform(padded, rot, offset=centre - rot @ centre, order=order)

    affine = img.affine.copy()
    affine[:3, 3] -= affine[:3, 0] * 20
    data = move(np.asarray(img.dataobj, dtype=np.float32), 1)
    result = _hybrid(nb.Nifti1Image(data, affine), tmp_path)
    assert dice(result.mask, move(reference.astype(np.uint8), 0) > 0) >= 0.95
    assert result.info["path"] == "refined"


def _wrong_transform(path):
    """An affine that halves the template and moves it 40 mm: the checks must reject it."""
    from smriflow.utils.antsenv import import_ants

    ants = import_ants(1)
    tx = ants.create_ants_transform(dimension=3, matrix=0.5 * np.eye(3), translation=(40.0, 0.0, 0.0))
    ants.write_transform(tx, str(path))
    return str(path)


@pytest.mark.ants
@pytest.mark.shared
def test_hybrid_detects_a_failed_registration_and_retries(t1w_3mm_ref, tmp_path, monkeypatch):
    from smriflow.anat.brain_extraction import hybrid

    img, reference = t1w_3mm_ref
    real = hybrid._register
    calls = []

    def first_wrong(fixed, moving, fixed_mask, initial, outprefix, ants):
        calls.append(initial)
        if len(calls) == 1:
            return _wrong_transform(tmp_path / "wrong.mat")
        return real(fixed, moving, fixed_mask, initial, outprefix, ants)

    monkeypatch.setattr(hybrid, "_register", first_wrong)
    result = _hybrid(img, tmp_path / "run")
    info = result.info
    assert len(calls) == 2 and calls[0] is None and calls[1] is not None  # the retry starts rotated
    assert info["retries"] == 1 and info["start"] == "pitch +20"
    first = info["starts"][0]
    assert first["passed"] is False and first["dice_prior"] < 0.85
    assert any(f.startswith("scale 0.125 outside") for f in first["failed"])
    assert info["starts"][1]["passed"] is True and info["path"] == "refined"
    assert dice(result.mask, reference) >= 0.95


@pytest.mark.ants
@pytest.mark.shared
def test_hybrid_fails_in_one_line_when_no_start_passes(t1w_3mm_ref, tmp_path, monkeypatch):
    from smriflow.anat.brain_extraction import hybrid

    monkeypatch.setattr(hybrid, "_register", lambda *args: _wrong_transform(tmp_path / "wrong.mat"))
    expected = (
        r"^brain extraction \(hybrid\): the registration to MNI152NLin2009aSym failed its checks from all 2 "
        r"starts \(best 'centre of mass': dice_prior [\d.]+ outside \[0\.85, 1\]; ncc -?[\d.e-]+ outside "
        r"\[0\.5, 1\]; scale 0\.125 outside \[0\.45, 1\.6\]\)$"
    )
    with pytest.raises(hybrid.BrainExtractionError, match=expected):
        _hybrid(t1w_3mm_ref[0], tmp_path / "run", max_starts=2)


@pytest.mark.ants
@pytest.mark.shared
def test_hybrid_refuses_an_impossible_brain_volume(t1w_3mm_ref, tmp_path):
    """Voxel sizes 10 times too small make a 1.3 ml brain: one line naming the check."""
    from smriflow.anat.brain_extraction.hybrid import BrainExtractionError

    img = t1w_3mm_ref[0]
    affine = img.affine.copy()
    affine[:3, :3] /= 10
    expected = (
        r"^brain extraction \(hybrid\): the learned brain mask volume_ml \d\.\d+ outside \[600, 2500\] ml "
        r"\(is this a T1w of an adult head with correct voxel sizes\?\)$"
    )
    with pytest.raises(BrainExtractionError, match=expected):
        _hybrid(nb.Nifti1Image(np.asarray(img.dataobj), affine), tmp_path)


@pytest.mark.ants
@pytest.mark.shared
def test_hybrid_recognises_a_skull_stripped_input(t1w_3mm_ref, tmp_path):
    img, reference = t1w_3mm_ref
    stripped = np.asarray(img.dataobj, dtype=np.float32) * reference
    result = _hybrid(nb.Nifti1Image(stripped, img.affine), tmp_path)
    info = result.info
    assert info["skull_stripped_input"] is True and info["path"] == "skull-stripped input"
    assert info["outside_fraction"] < 0.1 and "no second skull strip" in info["path_reason"]
    # the mask is the nonzero brain region, not a second strip inside it
    assert dice(result.mask, reference) >= 0.98
    assert result.mask[stripped > 0].mean() > 0.99
