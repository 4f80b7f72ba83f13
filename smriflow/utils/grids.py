"""Grids: the same-grid check, block averages and their inverse for smooth fields (numpy only)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["GRID_ATOL_MM", "block_reduce", "check_same_grid", "resize_linear"]


def block_reduce(data: np.ndarray, factors: Sequence[int]) -> np.ndarray:
    """Average non-overlapping blocks of ``factors`` voxels (the last partial block of an axis is dropped).

    Parameters
    ----------
    data : numpy.ndarray
        3-D array.
    factors : sequence of int
        Block size per axis (>= 1).

    Returns
    -------
    numpy.ndarray
        float32 array of shape ``data.shape // factors``.
    """
    f = [int(x) for x in factors]
    shape = [n // k for n, k in zip(data.shape, f, strict=True)]
    trimmed = data[: shape[0] * f[0], : shape[1] * f[1], : shape[2] * f[2]].astype(np.float32, copy=False)
    return trimmed.reshape(shape[0], f[0], shape[1], f[1], shape[2], f[2]).mean(
        axis=(1, 3, 5), dtype=np.float32
    )


def resize_linear(small: np.ndarray, factors: Sequence[int], shape: Sequence[int]) -> np.ndarray:
    """Undo :func:`block_reduce` for a smooth field: separable linear interpolation onto the fine grid.

    Fine voxel ``i`` lies at coarse coordinate ``(i - (k - 1) / 2) / k`` along an axis blocked by ``k``;
    values beyond the coarse grid take the nearest edge value.
    """
    out = np.asarray(small, dtype=np.float32)
    for axis, (k, n) in enumerate(zip(factors, shape, strict=True)):
        m = out.shape[axis]
        pos = np.clip((np.arange(n) - (k - 1) / 2) / k, 0, m - 1)
        lo = np.minimum(np.floor(pos).astype(np.intp), max(m - 2, 0))
        hi = np.minimum(lo + 1, m - 1)
        w = (pos - lo).astype(np.float32)
        shape_w = [1] * out.ndim
        shape_w[axis] = n
        w = w.reshape(shape_w)
        out = np.take(out, lo, axis=axis) * (1 - w) + np.take(out, hi, axis=axis) * w
    return out


#: largest corner displacement (mm) between two affines still taken as the same grid
GRID_ATOL_MM = 1e-3


def check_same_grid(
    reference, image, what: str, *, reference_name: str = "'in_file'", atol: float = GRID_ATOL_MM
) -> None:
    """Raise a one-line ValueError unless ``image`` is a 3-D image on the voxel grid of ``reference``.

    Parameters
    ----------
    reference, image : nibabel images
        Same grid: equal first three dimensions (``image`` 3-D) and affines equal within ``atol``.
    what : str
        The start of the message, e.g. ``"'in_mask' must be on the grid of 'in_file'"``.
    reference_name : str
        How the message names ``reference``.
    atol : float
        Tolerance on the affine entries.
    """
    name = image.get_filename() or "the image"
    if len(image.shape) != 3 or tuple(image.shape[:3]) != tuple(reference.shape[:3]):
        raise ValueError(
            f"{what}: {name} has shape {tuple(image.shape)}, {reference_name} has shape "
            f"{tuple(reference.shape[:3])}."
        )
    if not np.allclose(image.affine, reference.affine, atol=atol):
        raise ValueError(
            f"{what}: {name} has shape {tuple(image.shape)} like {reference_name} but a different affine."
        )
