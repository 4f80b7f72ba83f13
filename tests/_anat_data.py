"""Helpers for tests on the real image: a 3 mm copy of the shared T1w, FreeSurfer references, block means."""

from __future__ import annotations

from pathlib import Path

import nibabel as nb
import numpy as np

T1W = "bids/sub-0002/anat/sub-0002_T1w.nii.gz"
FREESURFER = "aomic/derivatives/freesurfer/sub-0002/mri"


def downsample(
    img: nb.spatialimages.SpatialImage, factor: int = 3, *, labels: bool = False
) -> nb.Nifti1Image:
    """Block-average (or, for labels, take the block's centre voxel) by ``factor`` on the image's own grid."""
    from smriflow.utils.grids import block_reduce

    data = np.asarray(img.dataobj)
    if labels:
        c = factor // 2
        n = [s // factor for s in data.shape]
        small = data[c : n[0] * factor : factor, c : n[1] * factor : factor, c : n[2] * factor : factor]
    else:
        small = block_reduce(data.astype(np.float32), (factor,) * 3)
    affine = img.affine.copy()
    affine[:3, :3] *= factor
    affine[:3, 3] = img.affine[:3, :3] @ ([(factor - 1) / 2] * 3) + img.affine[:3, 3]
    out = nb.Nifti1Image(small, affine)
    out.set_qform(affine, 1)
    out.set_sform(affine, 1)
    return out


def t1w_3mm(shared_data: Path, folder: Path) -> str:
    """Write the shared T1w at 3 mm (85³, LIA as the original) and return its path."""
    path = folder / "sub-0002_T1w.nii.gz"
    downsample(nb.load(shared_data / T1W)).to_filename(str(path))
    return str(path)


def reference_3mm(shared_data: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    """FreeSurfer volume ``name`` (e.g. ``aseg.mgz``) on the 3 mm grid of :func:`t1w_3mm`; data and affine.

    The shared T1w and FreeSurfer's volumes share one voxel grid, so taking the same voxels aligns them.
    """
    img = downsample(nb.load(shared_data / FREESURFER / name), labels=True)
    return np.asarray(img.dataobj), img.affine


def block_mean(data: np.ndarray, affine: np.ndarray, factor: int) -> tuple[np.ndarray, np.ndarray]:
    """Average factor³ blocks (partial volumes are preserved) and return the coarse data and affine."""
    n = [s // factor * factor for s in data.shape]
    blocks = data[: n[0], : n[1], : n[2]].reshape(n[0] // factor, factor, n[1] // factor, factor, -1, factor)
    coarse = blocks.mean(axis=(1, 3, 5), dtype=np.float64).astype(np.float32)
    step = np.diag([factor, factor, factor, 1.0])
    step[:3, 3] = (factor - 1) / 2
    return coarse, affine @ step
