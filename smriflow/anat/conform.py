"""Validate an anatomical image and reorient it to RAS without resampling.

Every refusal is a one-line :class:`ValueError` that names the file and the problem, so a user can fix the
input without reading a traceback. What was done to an accepted image is returned as a JSON-serializable
record for the derivative's sidecar.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nibabel as nb
import numpy as np

from smriflow.utils.niftiio import load_image
from smriflow.utils.text import one_line

__all__ = [
    "check_t1w_contrast",
    "conform_image",
    "load_conformed",
    "make_nonnegative",
    "shear_degrees",
    "validate_image",
]

# Largest disagreement tolerated between qform and sform, in mm, over the corners of the field of view.
_AFFINE_TOLERANCE_MM = 1e-2
# Largest departure from perpendicular voxel axes tolerated (degrees): ITK, and so ANTs, cannot represent a
# shear and would silently read such an image with another geometry (the qform) than nibabel.
_SHEAR_TOLERANCE_DEG = 0.01
# A field of view whose thinnest extent is under this fraction of its largest one is a slab, not a head.
_SLAB_RATIO = 0.25
# Voxels whose largest side is at least this many times the smallest are reported as anisotropic.
_ANISOTROPY_WARNING = 2.0
# Contrast check: a sphere of this radius (mm) centred this far (mm) below the top of the head holds deep
# white matter, deep grey matter and the lateral ventricles; it is classified at ~this voxel size (mm).
_CONTRAST_RADIUS_MM = 35.0
_CONTRAST_DEPTH_MM = 65.0
_CONTRAST_RESOLUTION_MM = 3.0
# A T1w has more voxels in its brightest class (WM) than in its darkest (CSF) there (ratio 2.2-3.5 measured on
# the shared T1w with and without ±50 % bias); a T2w the opposite (0.33 on a T2-like copy).
_CONTRAST_MIN_RATIO = 1.0


def _corner_distance(aff_a: np.ndarray, aff_b: np.ndarray, shape: tuple[int, ...]) -> float:
    """Largest distance (mm) between where two affines put the corners of the voxel grid."""
    corners = np.array(np.meshgrid(*[[0, n - 1] for n in shape[:3]], indexing="ij")).reshape(3, -1)
    corners = np.vstack([corners, np.ones(corners.shape[1])])
    return float(np.abs((aff_a @ corners)[:3] - (aff_b @ corners)[:3]).max())


def _choose_affine(img: nb.spatialimages.SpatialImage, path: Path) -> tuple[np.ndarray, str]:
    """Return the affine to trust and where it came from ('sform', 'qform', 'qform+sform' or 'header')."""
    if not isinstance(img, nb.Nifti1Image | nb.Nifti2Image):
        return img.affine, "header"  # MGH and others carry one orientation only
    header = img.header
    qform, qcode = header.get_qform(coded=True)
    sform, scode = header.get_sform(coded=True)
    qcode, scode = int(qcode or 0), int(scode or 0)
    if qcode == 0 and scode == 0:
        raise ValueError(f"{path}: qform and sform are both unset (codes 0), the orientation is unknown.")
    if qcode and scode:
        dist = _corner_distance(qform, sform, img.shape)
        if dist > _AFFINE_TOLERANCE_MM:
            raise ValueError(
                f"{path}: qform and sform disagree by up to {dist:.3g} mm over the field of view; "
                "fix the header (e.g. copy one onto the other) so the orientation is unambiguous."
            )
        return sform, "qform+sform"
    return (sform, "sform") if scode else (qform, "qform")


def validate_image(
    in_file: str | Path, *, take_first_volume: bool = False
) -> tuple[nb.Nifti1Image, dict[str, Any]]:
    """Check an anatomical image and return it (data unchanged, native orientation) with a record.

    Parameters
    ----------
    in_file : str or Path
        A 3-D NIfTI-1/2 or MGH image.
    take_first_volume : bool
        If True, a 4-D image is reduced to its first volume with a :class:`UserWarning`; otherwise it is
        refused.

    Returns
    -------
    img : nibabel.Nifti1Image
        The validated 3-D image with the trusted affine in both qform and sform.
    record : dict
        ``shape``, ``zooms``, ``dtype``, ``affine_source``, ``took_first_volume``, ``n_volumes``,
        ``anisotropy`` (largest over smallest voxel side) and ``warnings`` (list of str).

    Raises
    ------
    ValueError
        One line naming the file and the problem: missing or unreadable file, not 3-D, NaN/Inf values,
        empty or constant image, missing or inconsistent qform/sform, singular, sheared or non-finite
        affine, a slab-shaped field of view.

    Warns
    -----
    UserWarning
        For anisotropic voxels (largest side at least twice the smallest); the text is also in the
        record's ``warnings``.
    """
    path = Path(in_file)
    img = load_image(path)
    shape = tuple(int(n) for n in img.shape)
    # trailing singleton axes (e.g. a 4-D file with one volume) are not extra dimensions
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    n_volumes = 1
    took_first = False
    notes: list[str] = []  # warnings, also kept in the record (file names only: the record is provenance)
    if len(shape) < 3 or min(shape[:3]) < 2:
        raise ValueError(f"{path}: image is 2-D (shape {tuple(img.shape)}); a 3-D volume is required.")
    if len(shape) > 4:
        raise ValueError(
            f"{path}: image is {len(shape)}-D (shape {tuple(img.shape)}); a 3-D volume is required."
        )
    if len(shape) == 4:
        n_volumes = shape[3]
        if not take_first_volume:
            raise ValueError(
                f"{path}: image is 4-D with {n_volumes} volumes (shape {shape}); a 3-D volume is required "
                "(set take_first_volume=True to use the first one)."
            )
        notes.append(f"{path.name}: image is 4-D with {n_volumes} volumes; using the first one.")
        warnings.warn(f"{path}: image is 4-D with {n_volumes} volumes; using the first one.", UserWarning)
        took_first = True
    try:
        proxy = img.dataobj
        data = np.asanyarray(proxy[..., 0] if took_first else proxy).reshape(shape[:3])
    except Exception as exc:
        raise ValueError(f"{path}: image data cannot be read ({one_line(exc)}).") from exc
    if not np.issubdtype(data.dtype, np.number) or np.iscomplexobj(data):
        raise ValueError(f"{path}: voxel type {data.dtype} is not a real number type.")
    if np.issubdtype(data.dtype, np.floating):
        bad = int(np.count_nonzero(~np.isfinite(data)))
        if bad:
            raise ValueError(f"{path}: image has {bad} NaN/Inf voxels.")
    if not np.any(data):
        raise ValueError(f"{path}: image is empty (all voxels are 0).")
    low, high = data.min(), data.max()
    if low == high:
        raise ValueError(f"{path}: image is constant (every voxel is {low}).")

    affine, source = _choose_affine(img, path)
    if not np.all(np.isfinite(affine)):
        raise ValueError(f"{path}: affine has NaN/Inf entries.")
    if abs(np.linalg.det(affine[:3, :3])) < 1e-6:
        raise ValueError(f"{path}: affine is singular (zero voxel size or collapsed axes).")
    shear = shear_degrees(affine)
    if shear > _SHEAR_TOLERANCE_DEG:
        raise ValueError(
            f"{path}: affine is sheared (voxel axes {shear:.3g} degrees from perpendicular), which ITK/ANTs "
            "cannot represent; resample the image to a grid with perpendicular axes first."
        )
    zooms = np.sqrt((affine[:3, :3] ** 2).sum(0))
    extent = zooms * np.asarray(shape[:3])
    if extent.min() < _SLAB_RATIO * extent.max():
        sizes = " x ".join(f"{value:.3g}" for value in extent)
        raise ValueError(
            f"{path}: field of view is a slab ({sizes} mm; the thinnest side is under "
            f"{_SLAB_RATIO:g} of the largest); a whole-head image is required."
        )
    anisotropy = float(zooms.max() / zooms.min())
    if anisotropy >= _ANISOTROPY_WARNING:
        sizes = " x ".join(f"{value:.3g}" for value in zooms)
        problem = (
            f"voxels are anisotropic ({sizes} mm, ratio {anisotropy:.3g}); tissue segmentation and "
            "normalization are less accurate than on isotropic ~1 mm data."
        )
        notes.append(f"{path.name}: {problem}")
        warnings.warn(f"{path}: {problem}", UserWarning, stacklevel=2)

    out = nb.Nifti1Image(data, affine)
    if isinstance(img, nb.Nifti1Image | nb.Nifti2Image):
        out.header.set_xyzt_units(*img.header.get_xyzt_units())
        code = int(img.header["sform_code"]) or int(img.header["qform_code"])
    else:
        out.header.set_xyzt_units("mm")
        code = 1  # scanner-based
    out.set_qform(affine, code=code)
    out.set_sform(affine, code=code)
    record = {
        "source_file": path.name,
        "shape": list(shape[:3]),
        "zooms": [round(float(z), 6) for z in zooms],
        "dtype": str(data.dtype),
        "affine_source": source,
        "n_volumes": n_volumes,
        "took_first_volume": took_first,
        "anisotropy": round(anisotropy, 3),
        "warnings": notes,
    }
    return out, record


def shear_degrees(affine: np.ndarray) -> float:
    """Largest departure from 90 degrees between two voxel axes of ``affine`` (0 for rotations and flips).

    Examples
    --------
    >>> shear_degrees(np.diag([1.0, 1.0, 5.0, 1.0]))
    0.0
    >>> round(shear_degrees(np.array([[1, 0.1, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]])), 2)
    5.71
    """
    axes = np.asarray(affine, dtype=float)[:3, :3]
    axes = axes / np.linalg.norm(axes, axis=0)
    cosines = np.clip(np.abs(axes.T @ axes)[np.triu_indices(3, 1)], 0.0, 1.0)
    return float(np.degrees(np.arcsin(cosines.max())))


def load_conformed(
    in_file: str | Path, *, take_first_volume: bool = False
) -> tuple[nb.Nifti1Image, dict[str, Any]]:
    """Validate ``in_file`` and reorient it to RAS by axis flips and permutations only (no resampling).

    Parameters
    ----------
    in_file : str or Path
        Anatomical image.
    take_first_volume : bool
        See :func:`validate_image`.

    Returns
    -------
    img : nibabel.Nifti1Image
        RAS image on the native voxel grid (same voxels, reordered).
    record : dict
        :func:`validate_image`'s record plus ``orientation`` (axis codes of the input),
        ``reoriented_from`` (those codes, or None when the input was already RAS) and ``oblique``.
    """
    img, record = validate_image(in_file, take_first_volume=take_first_volume)
    codes = "".join(nb.aff2axcodes(img.affine))
    canonical = nb.as_closest_canonical(img)
    code = int(img.header["sform_code"])
    canonical.set_qform(canonical.affine, code=code)
    canonical.set_sform(canonical.affine, code=code)
    record["orientation"] = codes
    record["reoriented_from"] = None if codes == "RAS" else codes
    record["oblique"] = bool(nb.affines.obliquity(img.affine).max() > 1e-3)
    record["shape"] = list(canonical.shape)
    record["zooms"] = [round(float(z), 6) for z in canonical.header.get_zooms()[:3]]
    return canonical, record


def make_nonnegative(data: np.ndarray, *, zero_fill_fraction: float = 0.1) -> tuple[np.ndarray, float]:
    """Shift an image with negative intensities (z-scored, normalized) so that its minimum is 0.

    N4 and the intensity statistics of the later stages assume a non-negative, MR-like image. When voxels
    that are exactly 0 make at least ``zero_fill_fraction`` of the image (a zero-filled background, as
    a skull-stripped then z-scored image has), they stay 0 so that the background stays the darkest value.

    Returns
    -------
    data : numpy.ndarray
        float32 shifted image (the input, unchanged, when it has no negative value).
    shift : float
        What was added (0.0 when nothing was done).
    """
    low = float(np.min(data))
    if low >= 0:
        return data, 0.0
    zero = np.asarray(data) == 0
    out = np.asarray(data, dtype=np.float32) - np.float32(low)
    if zero.mean() >= zero_fill_fraction:
        out[zero] = 0.0
    return out, -low


def check_t1w_contrast(data: np.ndarray, zooms: Sequence[float]) -> dict[str, Any]:
    """Measure whether an image has T1w contrast (white matter brighter than CSF), before any processing.

    The image is block-averaged to ~3 mm and its head found (:func:`smriflow.utils.morphology.head_mask`);
    a sphere of 35 mm radius centred 65 mm below the top of the head (left-right and front-back: the
    centre of the head's top 100 mm) holds deep white matter, deep grey matter and the lateral ventricles,
    and no scalp or fat. Its intensities are split into 3 classes (1-D k-means): on a T1w the brightest
    class (WM) is the largest, 2-3.5 times the darkest (CSF); on a T2w or FLAIR-like image the order of
    the classes is reversed and the ratio is about 1/3. A smooth bias of ±50 % moves it by < 1.

    Parameters
    ----------
    data : numpy.ndarray
        3-D image in RAS orientation (:func:`load_conformed`), non-negative.
    zooms : sequence of float
        Voxel size in mm.

    Returns
    -------
    dict
        ``bright_dark_ratio`` (voxels of the brightest class over the darkest), ``class_means``,
        ``t1w_like`` (ratio >= 1). A field of view under 70 mm, or a head without such a sphere, is not
        measured (ratio None, ``t1w_like`` True).
    """
    from smriflow.utils.grids import block_reduce
    from smriflow.utils.intensity import kmeans_1d
    from smriflow.utils.morphology import head_mask

    unchecked = {"bright_dark_ratio": None, "class_means": None, "t1w_like": True}
    if min(float(z) * n for z, n in zip(zooms[:3], np.shape(data), strict=True)) < 2 * _CONTRAST_RADIUS_MM:
        return unchecked  # not a head-sized field of view: nothing to measure
    factors = [max(1, round(_CONTRAST_RESOLUTION_MM / float(z))) for z in zooms[:3]]
    small = block_reduce(np.asarray(data, dtype=np.float32), factors)
    size = np.array([float(z) * k for z, k in zip(zooms[:3], factors, strict=True)])
    head = head_mask(small, size, resolution=float(size.min()))
    idx = np.argwhere(head)
    height = idx[:, 2] * size[2]
    top = height.max()
    centre = idx[height > top - 100.0].mean(0)
    centre[2] = (top - _CONTRAST_DEPTH_MM) / size[2]
    grid = np.indices(small.shape, sparse=True)
    r2 = sum(((g - c) * z) ** 2 for g, c, z in zip(grid, centre, size, strict=True))
    region = (r2 < _CONTRAST_RADIUS_MM**2) & head
    if region.sum() < 30:
        return unchecked
    centers, labels = kmeans_1d(small[region], 3)
    counts = np.bincount(labels, minlength=3)
    ratio = float(counts[2] / max(counts[0], 1))
    return {
        "bright_dark_ratio": round(ratio, 3),
        "class_means": [round(float(c), 4) for c in centers],
        "t1w_like": ratio >= _CONTRAST_MIN_RATIO,
    }


def conform_image(
    in_file: str | Path,
    out_file: str | Path,
    *,
    take_first_volume: bool = False,
    allow_contrast_mismatch: bool = False,
) -> dict[str, Any]:
    """Validate, reorient to RAS, check the intensities and save; return the record of what was done.

    Beyond :func:`load_conformed`: negative intensities (a z-scored or normalized image) are shifted to a
    minimum of 0 with a warning (:func:`make_nonnegative`; record ``intensity_shift``), and the contrast is
    checked (:func:`check_t1w_contrast`; record ``contrast``): an image whose CSF is brighter than its white
    matter is refused unless ``allow_contrast_mismatch``, which makes it a warning.

    Parameters
    ----------
    in_file : str or Path
        Anatomical image.
    out_file : str or Path
        Where to write the RAS image (NIfTI; gzipped if the name ends in ``.gz``).
    take_first_volume : bool
        See :func:`validate_image`.
    allow_contrast_mismatch : bool
        Process an image that does not look like a T1w (with a warning) instead of refusing it.

    Returns
    -------
    dict
        The record of :func:`load_conformed` plus ``intensity_shift`` and ``contrast``, JSON-serializable.

    Raises
    ------
    ValueError
        Those of :func:`validate_image`, and one line when the contrast is not a T1w's.
    """
    path = Path(in_file)
    img, record = load_conformed(in_file, take_first_volume=take_first_volume)
    data = np.asanyarray(img.dataobj)
    data, shift = make_nonnegative(data)
    record["intensity_shift"] = round(shift, 6)
    if shift:
        problem = (
            f"intensities go down to {-shift:.4g} (a z-scored or normalized image?); shifted by {shift:.4g} "
            "so that the minimum is 0"
        )
        record["warnings"].append(f"{path.name}: {problem}.")
        warnings.warn(f"{path}: {problem}.", UserWarning, stacklevel=2)
        img = nb.Nifti1Image(data, img.affine, img.header)
        img.header.set_data_dtype(np.float32)
    contrast = check_t1w_contrast(data, img.header.get_zooms()[:3])
    record["contrast"] = contrast
    if not contrast["t1w_like"]:
        problem = (
            "CSF brighter than white matter: is this a T1w? (in the centre of the head the brightest "
            f"intensity class is {contrast['bright_dark_ratio']:.2g} times the size of the darkest; a T1w "
            "has > 1)"
        )
        if not allow_contrast_mismatch:
            raise ValueError(f"{path}: {problem}; set allow_contrast_mismatch=true to process it anyway.")
        record["warnings"].append(f"{path.name}: {problem}; processed as allow_contrast_mismatch asks.")
        warnings.warn(f"{path}: {problem}.", UserWarning, stacklevel=2)
    nb.save(img, str(out_file))
    return record
