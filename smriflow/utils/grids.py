"""Voxel grids: whether two images share one, block averages and their inverse for smooth fields, and the
isotropic ~1 mm grid that coarse or anisotropic images are processed on."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import ndimage

__all__ = [
    "GRID_ATOL",
    "block_reduce",
    "check_same_grid",
    "from_isotropic_grid",
    "grid_mismatch",
    "isotropic_grid_size",
    "resize_linear",
    "same_grid",
    "to_isotropic_grid",
]

#: Largest difference (mm, per entry of the voxel-to-world affine; numpy's relative 1e-5 on top) between two
#: images said to share a grid. The loosest of the tolerances smriflow used before there was one check
#: (1e-3, 1e-4 and exact shapes), so that every pair of images accepted then is accepted now; it is far
#: below any real difference of grid (a voxel is ~1 mm) and above the rounding of affines stored as float32.
GRID_ATOL = 1e-3


def same_grid(a: Any, b: Any, *, atol: float = GRID_ATOL) -> bool:
    """Whether two images (anything with ``shape`` and ``affine``, e.g. nibabel images) share a voxel grid.

    The first three axes' sizes must be equal and the affines equal within ``atol`` mm (see
    :data:`GRID_ATOL`); only headers are read.
    """
    return tuple(a.shape[:3]) == tuple(b.shape[:3]) and bool(np.allclose(a.affine, b.affine, atol=atol))


def check_same_grid(a: Any, b: Any, message: str) -> None:
    """Raise ``ValueError(message)`` unless ``a`` and ``b`` share a voxel grid (:func:`same_grid`).

    ``message`` is the caller's one-line error, naming the file or option at fault.
    """
    if not same_grid(a, b):
        raise ValueError(message)


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


def grid_mismatch(reference: Any, image: Any, what: str, *, reference_name: str = "'in_file'") -> str:
    """The one-line message for ``image`` not on the grid of ``reference``: what differs, shape or affine.

    ``what`` starts the message (``"'in_mask' must be on the grid of 'in_file'"``); use it with
    :func:`check_same_grid`, which also requires nothing of the number of axes: check ``len(image.shape)``
    first where a 3-D image is required.
    """
    name = image.get_filename() or "the image"
    if len(image.shape) != 3 or tuple(image.shape[:3]) != tuple(reference.shape[:3]):
        return (
            f"{what}: {name} has shape {tuple(image.shape)}, {reference_name} has shape "
            f"{tuple(reference.shape[:3])}."
        )
    return f"{what}: {name} has shape {tuple(image.shape)} like {reference_name} but a different affine."


def isotropic_grid_size(
    zooms: Sequence[float], *, voxel_size: float = 1.0, coarse: float = 1.2, max_finest: float = 1.5
) -> float | None:
    """The isotropic voxel size (mm) to process a coarse or anisotropic image on, or None for its own grid.

    An image is resampled when its largest voxel side is above ``coarse`` mm or its sides differ by more
    than 20 %, and its finest side is at most ``max_finest`` mm (deliberately coarse previews, such as
    3 mm test copies, stay on their own grid: upsampling them costs more than it gives).

    Examples
    --------
    >>> isotropic_grid_size((1.0, 1.0, 1.0)) is None
    True
    >>> isotropic_grid_size((1.0, 1.0, 3.0)), isotropic_grid_size((1.3, 1.3, 1.3))
    (1.0, 1.0)
    >>> isotropic_grid_size((3.0, 3.0, 3.0)) is None
    True
    """
    z = np.asarray([float(v) for v in zooms[:3]])
    if z.min() > max_finest or (z.max() <= coarse and z.max() / z.min() <= 1.2):
        return None
    return float(voxel_size)


def to_isotropic_grid(data: np.ndarray, zooms: Sequence[float], size: float, order: int) -> np.ndarray:
    """Resample an array onto the isotropic grid of ``size`` mm covering the same extent.

    The new grid has ``round(n * zoom / size)`` voxels per axis; voxel centres are aligned so that both
    grids' outer faces coincide when the extent is a multiple of ``size``. Spline ``order`` (0 nearest,
    1 linear); beyond the edge the nearest value is taken. :func:`from_isotropic_grid` goes back.
    """
    z = np.asarray([float(v) for v in zooms[:3]])
    shape = np.maximum(1, np.round(np.asarray(data.shape) * z / size)).astype(int)
    coords = [(np.arange(n) + 0.5) * size / zz - 0.5 for n, zz in zip(shape, z, strict=True)]
    full = np.broadcast_arrays(*np.meshgrid(*coords, indexing="ij", sparse=True))
    return ndimage.map_coordinates(np.asarray(data, np.float32), full, order=order, mode="nearest")


def from_isotropic_grid(
    values: np.ndarray, shape: Sequence[int], zooms: Sequence[float], size: float
) -> np.ndarray:
    """Bring a map from :func:`to_isotropic_grid`'s grid back onto the grid of ``shape`` and ``zooms``.

    The map is averaged over each input voxel's extent (a box of ``round(zoom / size)`` isotropic voxels per
    axis) and sampled linearly at the input voxel centres: a membership or a 0/1 mask becomes the fraction
    of each input voxel it covers.
    """
    z = np.asarray([float(v) for v in zooms[:3]])
    box = [max(1, int(round(zz / size))) for zz in z]
    smooth = ndimage.uniform_filter(values, size=box, mode="nearest") if max(box) > 1 else values
    coords = [(np.arange(n) + 0.5) * zz / size - 0.5 for n, zz in zip(shape, z, strict=True)]
    full = np.broadcast_arrays(*np.meshgrid(*coords, indexing="ij", sparse=True))
    return ndimage.map_coordinates(smooth, full, order=1, mode="nearest")
