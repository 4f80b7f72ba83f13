"""Segment coarse or anisotropic images on an isotropic ~1 mm grid, and bring the memberships back.

Thick slices (1 × 1 × 3 mm) and coarse voxels (1.3 mm) put several tissues in one voxel, and the
intensity-based classification of :func:`.memberships.segment_tissues` then labels the mixed voxels by their
average, thinning the cortex. As CAT12 and FastSurfer do internally, such an image is resampled (linear; the
brain mask linearly then > 0.5) to an isotropic grid of ``voxel_size`` covering the same field of view, it
is segmented there, and each membership is averaged back onto the input grid (a box of the input voxel's
extent, then linear sampling at the input voxel centres), renormalized to sum to 1 in the input mask. The
derivatives stay on the input grid. Images whose finest voxel side is already coarser than
``max_finest`` mm (deliberately coarse previews, such as the bench's 3 mm quick mode) are segmented on their
own grid: upsampling them costs more than it gives.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy import ndimage

__all__ = ["isotropic_grid_size", "segment_on_isotropic_grid"]


def isotropic_grid_size(
    zooms: Sequence[float], *, voxel_size: float = 1.0, coarse: float = 1.2, max_finest: float = 1.5
) -> float | None:
    """The isotropic voxel size (mm) to segment on, or None to segment on the input grid.

    An image is resampled when its largest voxel side is above ``coarse`` mm or its sides differ by more
    than 20 %, and its finest side is at most ``max_finest`` mm.

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


def _resample(data: np.ndarray, zooms: np.ndarray, size: float, order: int) -> np.ndarray:
    """Resample onto the isotropic grid of ``size`` mm covering the same extent (voxel-centre aligned)."""
    shape = np.maximum(1, np.round(np.asarray(data.shape) * zooms / size)).astype(int)
    coords = [(np.arange(n) + 0.5) * size / z - 0.5 for n, z in zip(shape, zooms, strict=True)]
    grid = np.meshgrid(*coords, indexing="ij", sparse=True)
    full = np.broadcast_arrays(*grid)
    return ndimage.map_coordinates(np.asarray(data, np.float32), full, order=order, mode="nearest")


def _back(prob: np.ndarray, shape: Sequence[int], zooms: np.ndarray, size: float) -> np.ndarray:
    """Average an isotropic map over each input voxel's extent and sample it at the input voxel centres."""
    box = [max(1, int(round(z / size))) for z in zooms]
    smooth = ndimage.uniform_filter(prob, size=box, mode="nearest") if max(box) > 1 else prob
    coords = [(np.arange(n) + 0.5) * z / size - 0.5 for n, z in zip(shape, zooms, strict=True)]
    full = np.broadcast_arrays(*np.meshgrid(*coords, indexing="ij", sparse=True))
    return ndimage.map_coordinates(smooth, full, order=1, mode="nearest")


def segment_on_isotropic_grid(
    segment: Callable[..., tuple[np.ndarray, np.ndarray, dict]],
    data: np.ndarray,
    mask: np.ndarray,
    zooms: Sequence[float],
    size: float,
    *,
    deep_gm: np.ndarray | None = None,
    **options,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Run ``segment(data, mask, zooms, deep_gm=..., **options)`` on an isotropic grid of ``size`` mm.

    Returns the memberships ``(..., 3)`` and labels on the input grid (as ``segment`` returns them) and
    ``segment``'s record with ``segmentation_grid`` (the isotropic voxel size and shape) added.
    """
    z = np.asarray([float(v) for v in zooms[:3]])
    mask = np.asarray(mask, dtype=bool)
    iso_data = _resample(data, z, size, order=1)
    iso_mask = _resample(mask.astype(np.float32), z, size, order=1) > 0.5
    iso_deep = None if deep_gm is None else _resample(deep_gm, z, size, order=1)
    probs, _, record = segment(iso_data, iso_mask, (size, size, size), deep_gm=iso_deep, **options)
    back = np.stack([_back(probs[..., k], mask.shape, z, size) for k in range(probs.shape[-1])], axis=-1)
    back = np.clip(back, 0.0, None)
    total = back.sum(-1, keepdims=True)
    uniform = np.full(back.shape[-1], 1.0 / back.shape[-1], dtype=np.float32)
    back = np.where(total > 1e-6, back / np.maximum(total, 1e-6), uniform).astype(np.float32)
    back[~mask] = 0.0
    dseg = np.where(mask, np.argmax(back, axis=-1) + 1, 0).astype(np.uint8)
    record = dict(record)
    record["segmentation_grid"] = {"voxel_size_mm": size, "shape": [int(n) for n in iso_data.shape]}
    return back, dseg, record
