"""Validate an anatomical image and reorient it to RAS without resampling.

Every refusal is a one-line :class:`ValueError` that names the file and the problem, so a user can fix the
input without reading a traceback. What was done to an accepted image is returned as a JSON-serializable
record for the derivative's sidecar.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import nibabel as nb
import numpy as np

from smriflow.utils.niftiio import load_image
from smriflow.utils.text import one_line

__all__ = ["conform_image", "load_conformed", "shear_degrees", "validate_image"]

# Largest disagreement tolerated between qform and sform, in mm, over the corners of the field of view.
_AFFINE_TOLERANCE_MM = 1e-2
# Largest departure from perpendicular voxel axes tolerated (degrees): ITK, and so ANTs, cannot represent a
# shear and would silently read such an image with another geometry (the qform) than nibabel.
_SHEAR_TOLERANCE_DEG = 0.01
# A field of view whose thinnest extent is under this fraction of its largest one is a slab, not a head.
_SLAB_RATIO = 0.25
# Voxels whose largest side is at least this many times the smallest are reported as anisotropic.
_ANISOTROPY_WARNING = 2.0


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


def conform_image(
    in_file: str | Path, out_file: str | Path, *, take_first_volume: bool = False
) -> dict[str, Any]:
    """Validate, reorient to RAS and save; return the record of what was done.

    Parameters
    ----------
    in_file : str or Path
        Anatomical image.
    out_file : str or Path
        Where to write the RAS image (NIfTI; gzipped if the name ends in ``.gz``).
    take_first_volume : bool
        See :func:`validate_image`.

    Returns
    -------
    dict
        The record of :func:`load_conformed`, JSON-serializable.
    """
    img, record = load_conformed(in_file, take_first_volume=take_first_volume)
    nb.save(img, str(out_file))
    return record
