"""Tests for smriflow.anat.bias: fast head mask, block averaging/interpolation, N4 on a phantom."""

from __future__ import annotations

import numpy as np
import pytest

from smriflow.anat.bias import N4_PROFILES, n4_correct, n4_shrink
from smriflow.utils.grids import block_reduce, resize_linear
from smriflow.utils.morphology import head_mask


def _phantom(shape=(48, 56, 52), seed=0):
    """A head-like phantom at 4 mm: bright 'WM' core, 'GM' shell, dark gap, 'scalp', air; plus a bias."""
    rng = np.random.default_rng(seed)
    grid = np.indices(shape).astype(np.float32)
    centre = (np.array(shape) - 1) / 2
    r = np.sqrt(sum(((grid[i] - centre[i]) / (shape[i] / 2)) ** 2 for i in range(3)))
    data = np.select([r < 0.45, r < 0.62, r < 0.7, r < 0.82], [150.0, 90.0, 30.0, 120.0], 0.0).astype(
        np.float32
    )
    truth = data.copy()
    bias = np.exp(0.25 * (grid[0] - centre[0]) / shape[0] + 0.2 * (grid[2] - centre[2]) / shape[2])
    data = data * bias.astype(np.float32) + rng.normal(0, 2, shape).astype(np.float32) * (data > 0)
    data[data < 0] = 0
    return data.astype(np.float32), truth, bias.astype(np.float32)


def test_block_reduce_and_resize_roundtrip():
    x = np.add.outer(np.add.outer(np.arange(10.0), np.arange(12.0)), np.arange(9.0)).astype(np.float32)
    small = block_reduce(x, (2, 3, 1))
    assert small.shape == (5, 4, 9)
    assert small[0, 0, 0] == pytest.approx(x[:2, :3, 0].mean())
    # a linear field survives the round trip exactly inside the grid
    back = resize_linear(small, (2, 3, 1), x.shape)
    assert back.shape == x.shape
    np.testing.assert_allclose(back[1:-1, 1:-2, :], x[1:-1, 1:-2, :], atol=1e-4)


def test_resize_linear_edges_are_nearest():
    small = np.arange(3, dtype=np.float32).reshape(3, 1, 1)
    out = resize_linear(small, (2, 1, 1), (7, 1, 1))
    assert out[0, 0, 0] == 0 and out[-1, 0, 0] == 2
    assert np.all(np.diff(out[:, 0, 0]) >= 0)


def test_head_mask_phantom():
    data, truth, _ = _phantom()
    mask = head_mask(data, (4.0, 4.0, 4.0), resolution=4.0)
    assert mask.shape == data.shape and mask.dtype == bool
    head = truth > 0
    # everything that is head (incl. the dark gap, filled) and almost no air
    assert (mask & head).sum() / head.sum() > 0.98
    assert (mask & ~head).sum() / mask.sum() < 0.1


def test_head_mask_odd_grid_copies_edges():
    data, _, _ = _phantom(shape=(33, 35, 31))
    mask = head_mask(data, (1.0, 1.0, 1.0), resolution=2.0)
    assert mask.shape == data.shape
    np.testing.assert_array_equal(mask[-1], mask[-2])


def test_head_mask_rejects_empty():
    with pytest.raises(ValueError, match="no positive voxels"):
        head_mask(np.zeros((8, 8, 8)), (1, 1, 1))


def test_profiles():
    assert set(N4_PROFILES) == {"fast", "precise"}
    assert N4_PROFILES["precise"]["shrink_factor"] < N4_PROFILES["fast"]["shrink_factor"]


@pytest.mark.parametrize(
    ("zooms", "blocks", "shrink"),
    [
        ((1.0, 1.0, 1.0), (2, 2, 2), 4),  # 1 mm: the 2 mm fit grid shrunk 4 times, 8 mm
        ((0.6, 0.6, 0.6), (3, 3, 3), 4),  # 3 blocks of 0.6 mm: 7.2 mm
        ((1.3, 1.3, 1.3), (2, 2, 2), 3),  # 2 blocks of 1.3 mm: 7.8 mm, not 10.4 mm
        ((1.2, 1.2, 1.2), (2, 2, 2), 3),  # 7.2 mm, not 9.6 mm
        ((1.0, 1.0, 3.0), (2, 2, 1), 4),  # 1 x 1 x 3 mm: the finest side sets it
        ((3.0, 3.0, 3.0), (1, 1, 1), 4),  # no blocks: its own grid, the profile's factor
    ],
)
def test_n4_samples_at_the_same_spacing_in_mm_whatever_the_voxel_size(zooms, blocks, shrink):
    factor = N4_PROFILES["fast"]["shrink_factor"]
    assert n4_shrink(factor, 2.0, zooms, blocks) == shrink
    if max(blocks) > 1:  # the nearest multiple of the fit grid's finest side to 8 mm
        finest = min(z * k for z, k in zip(zooms, blocks, strict=True))
        assert abs(shrink * finest - 8.0) <= 0.5 * finest
    assert n4_shrink(factor, 0.0, zooms, (1, 1, 1)) == factor  # the native grid keeps the factor


@pytest.mark.ants
def test_n4_removes_bias_and_is_deterministic():
    data, truth, bias = _phantom()
    kwargs = {"fit_resolution": 0, "shrink_factor": 2, "iterations": (20, 20, 20), "num_threads": 1}
    corrected, field, mask = n4_correct(data, (4.0, 4.0, 4.0), **kwargs)
    assert corrected.shape == field.shape == mask.shape == data.shape
    assert corrected.dtype == field.dtype == np.float32
    assert np.all(field > 0)
    assert np.median(field[mask]) == pytest.approx(1.0, abs=1e-3)
    np.testing.assert_allclose(corrected, data / field, rtol=1e-5)
    core = truth == 150
    cv_before = data[core].std() / data[core].mean()
    cv_after = corrected[core].std() / corrected[core].mean()
    assert cv_after < 0.6 * cv_before  # noise alone gives 2/150 = 0.013
    # the estimated field follows the true one (up to scale)
    ratio = field[mask] / bias[mask]
    assert ratio.std() / ratio.mean() < 0.05
    again = n4_correct(data, (4.0, 4.0, 4.0), **kwargs)
    np.testing.assert_array_equal(again[0], corrected)
    np.testing.assert_array_equal(again[1], field)


@pytest.mark.ants
def test_n4_fit_grid_and_explicit_mask():
    data, truth, _ = _phantom(shape=(64, 70, 66))
    mask = truth > 0
    corrected, field, used = n4_correct(
        data, (2.0, 2.0, 2.0), mask=mask, fit_resolution=4.0, shrink_factor=2, iterations=(10, 10)
    )
    np.testing.assert_array_equal(used, mask)
    assert np.isfinite(corrected).all() and corrected.shape == data.shape


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"shrink_factor": 0}, "'shrink_factor' must be at least 1. 0 was provided."),
        ({"iterations": []}, "'iterations' must be a non-empty list of positive integers"),
        ({"iterations": [10, 0]}, "'iterations' must be a non-empty list of positive integers"),
        ({"mask": np.zeros((4, 4, 4), bool)}, r"'mask' shape \(4, 4, 4\) differs from the image shape"),
        ({"mask": np.zeros((8, 8, 8), bool)}, "'mask' is empty"),
    ],
)
def test_n4_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        n4_correct(np.ones((8, 8, 8)), (1, 1, 1), **kwargs)


def test_n4_rejects_2d():
    with pytest.raises(ValueError, match=r"'data' must be 3-D"):
        n4_correct(np.ones((8, 8)), (1, 1))


def _strong_field(shape, head, amplitude):
    """``1 + amplitude * u``: ``u`` a fixed quadratic of position spanning [-1, 1] over ``head``.

    The form of :func:`smriflow.data.variants.smooth_bias` (the robustness bench's ``bias50``), with a
    curvature so that a linear fit cannot remove it.
    """
    grid = np.indices(shape).astype(np.float32)
    x = [(grid[i] - (shape[i] - 1) / 2) / shape[i] for i in range(3)]
    u = x[0] + 0.8 * x[2] - 1.5 * x[1] ** 2 + x[0] * x[2]
    u = 2 * (u - u[head].min()) / np.ptp(u[head]) - 1
    return (1 + amplitude * u).astype(np.float32)


@pytest.mark.ants
def test_n4_flattens_a_50_percent_field():
    """Issue 15's ±50 % case on the phantom: the brain's intensity spread left by the field shrinks ≥ 3×."""
    _, truth, _ = _phantom()
    rng = np.random.default_rng(1)
    clean = truth + rng.normal(0, 2, truth.shape).astype(np.float32) * (truth > 0)
    field = _strong_field(truth.shape, truth > 0, 0.5)
    brain = truth >= 90  # 'WM' core and 'GM' shell

    def spread(ratio):
        values = ratio[brain] / np.median(ratio[brain])
        low, high = np.percentile(values, [5, 95])
        return high - low

    iterations = N4_PROFILES["fast"]["iterations"]
    corrected, _, _ = n4_correct(
        clean * field, (4.0, 4.0, 4.0), fit_resolution=0, shrink_factor=2, iterations=iterations
    )
    before = spread(field)
    assert before > 0.6
    assert spread(corrected / np.where(truth > 0, truth, 1)) < before / 3
