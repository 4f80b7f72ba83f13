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

from smriflow.utils.grids import from_isotropic_grid, isotropic_grid_size, to_isotropic_grid

__all__ = ["isotropic_grid_size", "segment_on_isotropic_grid"]


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
    iso_data = to_isotropic_grid(data, z, size, order=1)
    iso_mask = to_isotropic_grid(mask.astype(np.float32), z, size, order=1) > 0.5
    iso_deep = None if deep_gm is None else to_isotropic_grid(deep_gm, z, size, order=1)
    probs, _, record = segment(iso_data, iso_mask, (size, size, size), deep_gm=iso_deep, **options)
    back = np.stack(
        [from_isotropic_grid(probs[..., k], mask.shape, z, size) for k in range(probs.shape[-1])], axis=-1
    )
    back = np.clip(back, 0.0, None)
    total = back.sum(-1, keepdims=True)
    uniform = np.full(back.shape[-1], 1.0 / back.shape[-1], dtype=np.float32)
    back = np.where(total > 1e-6, back / np.maximum(total, 1e-6), uniform).astype(np.float32)
    back[~mask] = 0.0
    dseg = np.where(mask, np.argmax(back, axis=-1) + 1, 0).astype(np.uint8)
    record = dict(record)
    record["segmentation_grid"] = {"voxel_size_mm": size, "shape": [int(n) for n in iso_data.shape]}
    return back, dseg, record
