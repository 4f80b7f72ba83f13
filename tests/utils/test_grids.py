"""One "same grid?" rule for every check of smriflow (:mod:`smriflow.utils.grids`)."""

from __future__ import annotations

import nibabel as nb
import numpy as np
import pytest

from smriflow.utils.grids import GRID_ATOL, check_same_grid, same_grid


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
