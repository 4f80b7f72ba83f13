"""The robustness bench's variants (smriflow.data.variants) on a 2 mm copy of the shared real T1w.

Each variant must have the property it promises (bias range, noise level, voxel size, intensity range and
type, …) and its carry must keep FreeSurfer's brain mask aligned with the variant's data.
"""

from __future__ import annotations

import nibabel as nb
import numpy as np
import pytest
from _anat_data import FREESURFER, T1W
from scipy import ndimage

from smriflow.data.variants import (
    VARIANTS,
    Context,
    acquire_voxels,
    add_neck,
    contrast_gamma,
    cut_top,
    deface,
    identity,
    make_variant,
    move_head,
    resample_voxels,
    rescale_intensity,
    rician_noise,
    rotate_head,
    skull_strip,
    smooth_bias,
    zscore,
)
from smriflow.utils.metrics import dice, fs_tissue_classes
from smriflow.utils.morphology import head_mask

BASE_MM = 2.0


@pytest.fixture(scope="module")
def base(shared_data):
    """The shared T1w resampled to 2 mm, the carry onto it, FreeSurfer's brain mask and aseg."""
    img = nb.load(shared_data / T1W)
    small, carry = resample_voxels(img, (BASE_MM,) * 3)
    brainmask = nb.load(shared_data / FREESURFER / "brainmask.mgz")
    aseg = nb.load(shared_data / FREESURFER / "aseg.mgz")
    return small, carry, brainmask, aseg


def _brain(img, carry, brainmask) -> np.ndarray:
    return carry(brainmask) > 0


def _data(img) -> np.ndarray:
    return np.asarray(img.dataobj, dtype=np.float32)


def _world_zooms(img) -> np.ndarray:
    """Voxel size along R, A, S (the grids here are axis-aligned)."""
    a = img.affine[:3, :3]
    return np.abs(a).max(1)


def test_every_variant_is_made_and_carries_the_brain(base):
    small, _, brainmask, aseg = base
    wm = fs_tissue_classes(identity(small)(aseg))["WM"]
    ctx = Context(brainmask, float(np.median(_data(small)[wm])))
    volume = (identity(small)(brainmask) > 0).sum() * BASE_MM**3
    for name in VARIANTS:
        variant = make_variant(name, small, ctx)
        carried = variant.carry(brainmask) > 0
        assert variant.image.shape[:3] == variant.carry.shape, name
        assert np.allclose(variant.image.affine, variant.carry.affine), name
        voxel_mm3 = abs(np.linalg.det(variant.image.affine[:3, :3]))
        # the whole brain is carried (the cut top loses a little of it; coarse voxels round it)
        assert carried.sum() * voxel_mm3 == pytest.approx(volume, rel=0.04 if name != "topcut" else 0.15), (
            name
        )
    with pytest.raises(ValueError, match="unknown variant"):
        make_variant("nope", small, ctx)


def test_bias_spans_the_promised_range(base):
    small, *_ = base
    head = head_mask(_data(small), (BASE_MM,) * 3)
    tissue = head & (_data(small) > 10)
    for amplitude in (0.2, 0.5):
        ratio = _data(smooth_bias(small, amplitude, seed=3).image)[tissue] / _data(small)[tissue]
        assert ratio.min() == pytest.approx(1 - amplitude, abs=0.03)
        assert ratio.max() == pytest.approx(1 + amplitude, abs=0.03)
        assert np.ptp(ratio) > 1.8 * amplitude
    same = [_data(smooth_bias(small, 0.2, seed=s).image) for s in (1, 1, 2)]
    assert np.array_equal(same[0], same[1]) and not np.array_equal(same[0], same[2])
    with pytest.raises(ValueError, match="amplitude"):
        smooth_bias(small, 1.5)


def test_contrast_gamma_changes_the_contrast_not_the_order():
    levels = np.array([0.0, 40.0, 110.0, 170.0], dtype=np.float32)  # background, CSF, GM, WM
    img = nb.Nifti1Image(np.broadcast_to(levels[:, None, None], (4, 2, 2)).copy(), np.eye(4))
    for gamma, closer in ((0.7, True), (1.4, False)):
        out = np.asarray(contrast_gamma(img, gamma).image.dataobj)[:, 0, 0]
        assert np.all(np.diff(out) > 0) and out[-1] == pytest.approx(170.0)  # order and maximum kept
        assert bool(out[2] / out[3] > levels[2] / levels[3]) is closer  # GM/WM ratio up for gamma < 1
    with pytest.raises(ValueError, match="gamma"):
        contrast_gamma(img, 0.0)


@pytest.mark.parametrize("fraction", [0.03, 0.06])
def test_rician_noise_level_in_the_background(base, fraction):
    small, *_ = base
    level = 110.0
    noisy = _data(rician_noise(small, fraction, level, seed=0).image)
    head = ndimage.binary_dilation(head_mask(_data(small), (BASE_MM,) * 3), iterations=3)
    air = ~head & (_data(small) == 0)
    assert air.sum() > 10000
    # Rician noise of a zero signal is Rayleigh: mean σ √(π/2)
    sigma = noisy[air].mean() / np.sqrt(np.pi / 2)
    assert sigma == pytest.approx(fraction * level, rel=0.03)


def test_voxel_sizes(base):
    small, *_ = base
    aniso = resample_voxels(small, (BASE_MM, BASE_MM, 3 * BASE_MM)).image
    assert np.allclose(_world_zooms(aniso), (BASE_MM, BASE_MM, 3 * BASE_MM))
    iso = resample_voxels(small, (1.3 * BASE_MM,) * 3).image
    assert np.allclose(_world_zooms(iso), 1.3 * BASE_MM)
    assert nb.aff2axcodes(iso.affine) == nb.aff2axcodes(small.affine)
    # the field of view is kept (to within a voxel)
    extent = np.array(small.shape) * BASE_MM
    assert np.all(np.abs(np.array(iso.shape) * 1.3 * BASE_MM - extent) < 1.3 * BASE_MM)


def test_acquired_voxels_keep_the_field_of_view_and_the_signal(base):
    small, *_ = base
    iso = acquire_voxels(small, (1.3 * BASE_MM,) * 3).image
    shape = np.array(small.shape)
    assert iso.shape == tuple(int(round(n / 1.3)) for n in shape)
    # the field of view exactly, voxel 0 where it was, the orientation kept
    assert np.allclose(np.array(iso.shape) * _world_zooms(iso), shape * BASE_MM)
    assert np.allclose(_world_zooms(iso), 1.3 * BASE_MM, rtol=0.01)
    assert np.allclose(iso.affine[:3, 3], small.affine[:3, 3])
    assert nb.aff2axcodes(iso.affine) == nb.aff2axcodes(small.affine)
    # a magnitude image with the input's mean intensity
    data = _data(iso)
    assert data.min() >= 0
    assert data.mean() == pytest.approx(_data(small).mean(), rel=0.01)
    with pytest.raises(ValueError, match="finer than"):
        acquire_voxels(small, (BASE_MM / 2,) * 3)


def _contrast_kept(make, cycles: int, n: int = 64) -> float:
    """Amplitude kept of a cosine with ``cycles`` periods over ``n`` 1 mm voxels, on the 1.3 mm copy."""
    x = np.arange(n)
    phantom = 100 + 20 * np.cos(2 * np.pi * cycles * x / n)[:, None, None] * np.ones((n, 4, 4))
    out = make(nb.Nifti1Image(phantom.astype(np.float32), np.eye(4)), (1.3, 1.3, 1.3)).image
    y = _data(out)[:, 2, 2]
    at = out.affine[0, 3] + out.affine[0, 0] * np.arange(len(y))
    phase = 2 * np.pi * cycles * at / n
    design = np.stack([np.cos(phase), np.sin(phase), np.ones(len(y))])
    coef = np.linalg.lstsq(design.T, y, rcond=None)[0]
    return float(np.hypot(coef[0], coef[1]) / 20)


@pytest.mark.parametrize("cycles", [6, 13, 19, 22])
def test_acquired_voxels_keep_the_detail_a_coarser_scan_holds(cycles):
    """k-space cut: every frequency a 1.3 mm matrix holds (up to 0.385 cycles/mm) passes unchanged; the
    smoothed and interpolated copy (``resample_voxels``) loses part of it (64 % kept at ~0.3 cycles/mm).
    """
    assert _contrast_kept(acquire_voxels, cycles) == pytest.approx(1.0, abs=0.005)
    assert _contrast_kept(resample_voxels, cycles) < 0.9


def test_intensity_types_and_ranges(base):
    small, *_ = base
    as_int = rescale_intensity(small, 4095, np.int16).image
    assert as_int.get_data_dtype() == np.int16
    data = np.asanyarray(as_int.dataobj)
    assert data.min() == 0 and data.max() == 4095
    as_float = rescale_intensity(small, 1.0, np.float32).image
    assert as_float.get_data_dtype() == np.float32
    data = np.asanyarray(as_float.dataobj)
    assert data.min() == 0 and data.max() == pytest.approx(1.0)
    scored = _data(zscore(small).image)
    head = head_mask(_data(small), (BASE_MM,) * 3)
    assert scored[head].mean() == pytest.approx(0, abs=1e-3)
    assert scored[head].std() == pytest.approx(1, rel=1e-3)
    assert scored.min() < 0 and np.all(scored[_data(small) == 0] < 0)


def _same_inside_brain(variant, small, carry_brain) -> None:
    """The variant's voxels in the carried brain hold the input's intensities there (data and carry agree)."""
    source = variant.carry(small)
    brain = carry_brain(variant)
    assert brain.sum() > 1000
    assert np.array_equal(_data(variant.image)[brain], source[brain].astype(np.float32))


def test_copies_keep_the_brain_where_the_carry_puts_it(base):
    small, _, brainmask, _ = base

    def carried(variant):
        return variant.carry(brainmask) > 0

    for variant in (
        move_head(small, (40.0, -40.0, 20.0)),
        add_neck(small),
        cut_top(small, 25.0),
        deface(small, brainmask),
        skull_strip(small, brainmask),
    ):
        _same_inside_brain(variant, small, carried)


def test_move_head_puts_the_head_off_centre(base):
    small, _, brainmask, _ = base
    offset = np.array([40.0, -40.0, 20.0])
    moved = move_head(small, offset)
    brain = moved.carry(brainmask) > 0
    centre = nb.affines.apply_affine(moved.image.affine, np.argwhere(brain).mean(0))
    centre_before = nb.affines.apply_affine(small.affine, np.argwhere(identity(small)(brainmask) > 0).mean(0))
    volume_centre = nb.affines.apply_affine(moved.image.affine, (np.array(moved.image.shape) - 1) / 2)
    small_centre = nb.affines.apply_affine(small.affine, (np.array(small.shape) - 1) / 2)
    assert np.allclose(centre - centre_before, offset, atol=BASE_MM)
    assert np.allclose(volume_centre, small_centre, atol=BASE_MM)


def test_neck_extends_below_with_tissue_and_shoulders(base):
    small, _, brainmask, _ = base
    neck = add_neck(small, length_mm=120.0)
    data = _data(neck.image)
    added = neck.image.shape[1] - small.shape[1]  # LIA: axis 1 runs inferior
    assert added * BASE_MM == pytest.approx(120.0, abs=BASE_MM)
    below = data[:, -added:, :]
    assert np.all(neck.carry(brainmask)[:, -added:, :] == 0)  # no brain down there
    tissue = below > 0.2 * np.percentile(_data(small)[_data(small) > 0], 90)
    width = tissue.any(axis=2).sum(0)  # left-right extent per slice, top to bottom of the added part
    assert width.min() > 0  # tissue all the way down, not zeros
    assert width[-5:].mean() > 1.5 * width[:5].mean()  # shoulders: wider at the bottom
    # the input's own voxels are where they were
    head = head_mask(_data(small), (BASE_MM,) * 3)
    kept = data[:, : small.shape[1], :]
    assert np.array_equal(kept[head], _data(small)[head])


def test_cut_top_removes_the_vertex(base):
    small, _, brainmask, _ = base
    cut = cut_top(small, 25.0)
    before = (identity(small)(brainmask) > 0).sum()
    after = (cut.carry(brainmask) > 0).sum()
    assert 0.8 * before < after < before  # brain is lost at the top, not most of it
    top = nb.affines.apply_affine(cut.image.affine, [0, 0, 0])[2]  # LIA: index 0 of axis 1 is the top
    head = head_mask(_data(small), (BASE_MM,) * 3)
    head_top = nb.affines.apply_affine(small.affine, np.argwhere(head))[:, 2].max()
    assert head_top - top == pytest.approx(25.0, abs=BASE_MM + 0.01)


def test_variants_leave_their_input_alone(base):
    small, _, brainmask, _ = base
    before = np.array(small.dataobj)
    for make in (lambda: deface(small, brainmask), lambda: add_neck(small), lambda: smooth_bias(small, 0.5)):
        make()
        assert np.array_equal(np.asarray(small.dataobj), before)


def test_deface_zeroes_the_face_not_the_brain(base):
    small, _, brainmask, _ = base
    defaced = deface(small, brainmask)
    removed = (_data(small) > 0) & (_data(defaced.image) == 0)
    brain = identity(small)(brainmask) > 0
    assert removed.sum() * BASE_MM**3 > 50_000  # the face: tens of ml of tissue
    assert not np.any(removed & brain)
    world = nb.affines.apply_affine(small.affine, np.argwhere(removed))
    brain_world = nb.affines.apply_affine(small.affine, np.argwhere(brain))
    assert world[:, 1].min() > brain_world[:, 1].mean()  # all in front of the brain's centre


def _stripped_dice(make, small, brainmask) -> float:
    """Dice of the carried brain mask with the variant of the skull-stripped image, thresholded."""
    variant = make(small)
    stripped = make(skull_strip(small, brainmask).image).image
    data = _data(stripped)
    brain_values = _data(small)[identity(small)(brainmask) > 0]
    return dice(variant.carry(brainmask) > 0, data > 0.5 * np.percentile(brain_values, 5))


def test_resampled_and_rotated_brain_stays_aligned(base):
    small, _, brainmask, _ = base
    centre = nb.affines.apply_affine(small.affine, np.array(small.shape) / 2)
    makers = {
        "iso13": lambda img: acquire_voxels(img, (1.3 * BASE_MM,) * 3),
        "iso13interp": lambda img: resample_voxels(img, (1.3 * BASE_MM,) * 3),
        "aniso": lambda img: resample_voxels(img, (BASE_MM, BASE_MM, 3 * BASE_MM)),
        "tilt": lambda img: rotate_head(img, 20.0, centre_mm=centre),
    }
    for name, make in makers.items():
        assert _stripped_dice(make, small, brainmask) > 0.93, name
    # a wrong carry (the rotation left out) is caught by the same measure
    rotated = rotate_head(skull_strip(small, brainmask).image, 20.0, centre_mm=centre).image
    wrong = identity(rotated)(brainmask) > 0
    assert dice(wrong, _data(rotated) > 10) < 0.9


def test_rotation_preserves_the_brain_and_turns_it_about_the_centre(base):
    small, _, brainmask, _ = base
    centre = np.zeros(3)
    tilted = rotate_head(small, 20.0, centre_mm=centre)
    before = nb.affines.apply_affine(small.affine, np.argwhere(identity(small)(brainmask) > 0)).mean(0)
    brain = tilted.carry(brainmask) > 0
    after = nb.affines.apply_affine(tilted.image.affine, np.argwhere(brain)).mean(0)
    angle = np.deg2rad(20.0)
    turn = np.array([[1, 0, 0], [0, np.cos(angle), -np.sin(angle)], [0, np.sin(angle), np.cos(angle)]])
    assert np.allclose(after, turn @ before, atol=1.0)
    assert brain.sum() == pytest.approx((identity(small)(brainmask) > 0).sum(), rel=0.02)
