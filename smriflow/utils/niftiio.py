"""Small helpers to name and write NIfTI outputs like a reference image."""

from __future__ import annotations

from pathlib import Path

import nibabel as nb
import numpy as np

__all__ = ["save_like", "strip_ext"]

_EXTENSIONS = (".nii.gz", ".nii", ".mgz", ".mgh")


def strip_ext(path: str | Path) -> str:
    """File name without its image extension (``sub-01_T1w.nii.gz`` -> ``sub-01_T1w``)."""
    name = Path(path).name
    for ext in _EXTENSIONS:
        if name.endswith(ext):
            return name[: -len(ext)]
    return Path(name).stem


def save_like(
    data: np.ndarray, reference: nb.spatialimages.SpatialImage, path: str | Path, dtype=None
) -> str:
    """Write ``data`` as NIfTI-1 with the affine (and qform/sform codes) of ``reference``.

    Parameters
    ----------
    data : numpy.ndarray
        Array on the grid of ``reference`` (extra trailing axes allowed).
    reference : nibabel image
        Image whose affine and orientation codes are copied.
    path : str or Path
        Output file.
    dtype : numpy dtype, optional
        On-disk type; the array's type when None. No scaling is applied.

    Returns
    -------
    str
        ``path``.
    """
    data = np.asarray(data)
    if dtype is not None:
        data = data.astype(dtype, copy=False)
    if data.shape[:3] != tuple(reference.shape[:3]):
        raise ValueError(
            f"save_like: array shape {data.shape} does not match the reference {reference.shape}."
        )
    img = nb.Nifti1Image(data, reference.affine)
    code = 1
    if isinstance(reference, nb.Nifti1Image | nb.Nifti2Image):
        code = int(reference.header["sform_code"]) or int(reference.header["qform_code"]) or 1
        img.header.set_xyzt_units(*reference.header.get_xyzt_units())
    else:
        img.header.set_xyzt_units("mm")
    img.set_qform(reference.affine, code=code)
    img.set_sform(reference.affine, code=code)
    img.set_data_dtype(data.dtype)
    img.header.set_slope_inter(1.0, 0.0)
    img.to_filename(str(path))
    return str(path)
