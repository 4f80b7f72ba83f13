"""Small, generic image operations (smoothing, thresholding, masking, summary statistics).

Each function reads and writes NIfTI files with nibabel, keeps the input's affine and header, and is
deterministic. They back the in-house interfaces of :mod:`smriflow.interfaces.image`.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nb
import numpy as np
from scipy import ndimage

from smriflow.utils.grids import check_same_grid
from smriflow.utils.morphology import largest_component
from smriflow.utils.niftiio import image_like, load_image

FWHM_TO_SIGMA = 1.0 / np.sqrt(8.0 * np.log(2.0))


def _save(data: np.ndarray, like: nb.Nifti1Image, out_file: str | Path, dtype) -> Path:
    """``data`` with ``like``'s header, its orientation codes re-derived from the header (as always here)."""
    img = image_like(data, like, dtype, copy_header=True)
    img.set_qform(*like.get_qform(coded=True))
    img.set_sform(*like.get_sform(coded=True))
    img.to_filename(str(out_file))
    return Path(out_file)


def smooth_image(in_file: str | Path, fwhm: float, out_file: str | Path) -> Path:
    """Gaussian smoothing with a kernel of ``fwhm`` millimetres (per-axis sigma from the voxel size).

    Parameters
    ----------
    in_file : path
        3-D image.
    fwhm : float
        Full width at half maximum in mm; 0 copies the image unchanged.
    out_file : path
        Where to write the result (float32).
    """
    if fwhm < 0:
        raise ValueError(f"'fwhm' must be >= 0 mm. {fwhm!r} was provided.")
    img = load_image(in_file, ndim=3, read=True)
    data = img.get_fdata(dtype=np.float32)
    if fwhm > 0:
        sigma_vox = fwhm * FWHM_TO_SIGMA / np.asarray(img.header.get_zooms()[:3], dtype=float)
        data = ndimage.gaussian_filter(data, sigma=sigma_vox, mode="nearest")
    return _save(data, img, out_file, dtype=np.float32)


def threshold_mask(in_file: str | Path, percentile: float, out_file: str | Path) -> Path:
    """Binary mask of the voxels above the ``percentile``-th percentile of the non-zero voxels.

    Keeps the largest connected component, so isolated bright specks do not enter the mask.

    Raises
    ------
    ValueError
        When the image has no non-zero voxel, or the mask comes out empty.
    """
    if not 0 <= percentile < 100:
        raise ValueError(f"'percentile' must be in [0, 100). {percentile!r} was provided.")
    img = load_image(in_file, ndim=3, read=True)
    data = img.get_fdata(dtype=np.float32)
    nonzero = data[data != 0]
    if nonzero.size == 0:
        raise ValueError(f"{in_file}: the image is all zeros, so no mask can be made")
    mask = data > np.percentile(nonzero, percentile)
    if not mask.any():
        raise ValueError(f"{in_file}: no voxel is above the {percentile} percentile; the mask is empty")
    mask = largest_component(mask)
    return _save(mask, img, out_file, dtype=np.uint8)


def apply_mask(in_file: str | Path, mask_file: str | Path, out_file: str | Path) -> Path:
    """Zero the voxels outside ``mask_file`` (same grid required)."""
    img, mask = load_image(in_file, ndim=3, read=True), load_image(mask_file, ndim=3, read=True)
    check_same_grid(
        mask,
        img,
        f"{mask_file}: the mask's grid {mask.shape} does not match the image's {img.shape} ({in_file})",
    )
    mask_data = np.asanyarray(mask.dataobj) > 0
    if not mask_data.any():
        raise ValueError(f"{mask_file}: the mask is empty")
    data = img.get_fdata(dtype=np.float32) * mask_data
    return _save(data, img, out_file, dtype=np.float32)


def masked_statistics(in_file: str | Path, mask_file: str | Path, out_file: str | Path) -> Path:
    """Write a JSON summary of the image inside the mask: voxels, volume (mm³), mean, std, median."""
    img, mask = load_image(in_file, ndim=3, read=True), load_image(mask_file, ndim=3, read=True)
    inside = np.asanyarray(mask.dataobj) > 0
    if not inside.any():
        raise ValueError(f"{mask_file}: the mask is empty")
    values = img.get_fdata(dtype=np.float64)[inside]
    voxel_mm3 = float(np.prod(img.header.get_zooms()[:3]))
    stats = {
        "voxels": int(inside.sum()),
        "volume_mm3": round(float(inside.sum()) * voxel_mm3, 6),
        "mean": round(float(values.mean()), 6),
        "std": round(float(values.std()), 6),
        "median": round(float(np.median(values)), 6),
    }
    Path(out_file).write_text(json.dumps(stats, indent=2, sort_keys=True) + "\n")
    return Path(out_file)
