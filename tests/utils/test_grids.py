"""One "same grid?" rule for every check of smriflow, and the isotropic grid (:mod:`smriflow.utils.grids`)."""

from __future__ import annotations

import nibabel as nb
import numpy as np
import pytest

from smriflow.utils.grids import (
    GRID_ATOL,
    check_same_grid,
    from_isotropic_grid,
    same_grid,
    to_isotropic_grid,
)


def _img(shape=(4, 5, 6), shift=0.0) -> nb.Nifti1Image:
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    affine[:3, 3] = [-2.0 + shift, -2.5, -3.0]
    return nb.Nifti1Image(np.zeros(shape, np.float32), affine)


def test_same_grid_compares_the_first_three_axes_and_the_affine():
    assert same_grid(_img(), _img())
    assert same_grid(_img((4, 5, 6)), _img((4, 5, 6, 2)))  # a 4-D image on the grid of a 3-D one
    assert not same_grid(_img((4, 5, 6)), _img((4, 5, 7)))
    assert not same_grid(_img(), _img(shift=0.5))


def test_the_tolerance_accepts_float32_rounding_and_nothing_like_a_voxel():
    assert same_grid(_img(), _img(shift=GRID_ATOL / 2))
    assert not same_grid(_img(), _img(shift=GRID_ATOL * 3))


def test_check_same_grid_raises_the_callers_message():
    check_same_grid(_img(), _img(), "never raised")
    with pytest.raises(ValueError, match=r"^'in_mask' must be on the grid of 'in_file'$"):
        check_same_grid(_img(), _img((4, 5, 7)), "'in_mask' must be on the grid of 'in_file'")


def test_the_isotropic_grid_round_trip_keeps_a_mask_and_its_volume():
    """A 1 × 1 × 3 mm ball taken to the 1 mm grid and back is the same ball, and its 1 mm volume holds."""
    grid = np.indices((40, 40, 14), dtype=np.float32)
    zooms = (1.0, 1.0, 3.0)
    r = np.sqrt((grid[0] - 19.5) ** 2 + (grid[1] - 19.5) ** 2 + ((grid[2] - 6.5) * 3) ** 2)
    ball = (r < 12).astype(np.float32)
    fine = to_isotropic_grid(ball, zooms, 1.0, order=1)
    assert fine.shape == (40, 40, 42)
    assert abs(float((fine > 0.5).sum()) - float(ball.sum()) * 3) / (float(ball.sum()) * 3) < 0.03
    back = from_isotropic_grid(fine, ball.shape, zooms, 1.0)
    assert back.shape == ball.shape
    assert np.array_equal(back >= 0.5, ball > 0)
    # a constant map stays constant, at the edges too
    np.testing.assert_allclose(
        from_isotropic_grid(np.full(fine.shape, 0.25, np.float32), ball.shape, zooms, 1.0), 0.25
    )
