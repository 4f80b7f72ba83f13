"""Image files in and out: the one loader, the one writer "like a reference image", file-name stems.

Every module of smriflow that takes an image as a path or as a loaded nibabel image goes through
:func:`load_image` (a missing or unreadable file is a one-line ``ValueError`` naming it); every array
written on the grid of another image goes through :func:`image_like` / :func:`save_like`; every output name
built from an input's name goes through :func:`split_ext` / :func:`strip_ext`.
"""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nb
import numpy as np

from smriflow.utils.text import one_line

__all__ = ["ImageLike", "image_like", "load_image", "save_like", "split_ext", "strip_ext"]

#: An image given as a file name or already loaded.
ImageLike = str | os.PathLike | nb.spatialimages.SpatialImage

_EXTENSIONS = (".nii.gz", ".nii", ".mgz", ".mgh")


def load_image(
    image: ImageLike, *, ndim: int | None = None, read: bool = False
) -> nb.spatialimages.SpatialImage:
    """Return ``image`` loaded with nibabel (a path) or as it is (an image already loaded).

    Parameters
    ----------
    image : path or nibabel image
        The image.
    ndim : int, optional
        The number of dimensions the image must have (e.g. 3).
    read : bool
        Read the voxels now (as float32), so that a truncated file fails here rather than later.

    Raises
    ------
    ValueError
        One line naming the file: it does not exist, is not a readable NIfTI/MGH image, its data cannot be
        read (with ``read``), or it has another number of dimensions than ``ndim``.
    """
    if isinstance(image, nb.spatialimages.SpatialImage):
        img, name = image, "image"
    else:
        path = Path(image)
        name = str(path)
        if not path.is_file():
            raise ValueError(f"{path}: file does not exist.")
        try:
            img = nb.load(path)
        except Exception as exc:
            raise ValueError(f"{path}: not a readable NIfTI/MGH image ({one_line(exc)}).") from exc
        if not isinstance(img, nb.spatialimages.SpatialImage):  # pragma: no cover - nb.load returns images
            raise ValueError(f"{path}: not a volumetric image ({type(img).__name__}).")
    if ndim is not None and len(img.shape) != ndim:
        raise ValueError(f"{name}: expected a {ndim}-D image, got {len(img.shape)}-D with shape {img.shape}")
    if read:
        try:
            img.get_fdata(dtype=np.float32)
        except Exception as exc:
            raise ValueError(f"{name}: image data cannot be read ({one_line(exc)}).") from None
    return img


def split_ext(path: str | os.PathLike) -> tuple[str, str]:
    """File name split into stem and extension (``a/sub-01_T1w.nii.gz`` -> ``("sub-01_T1w", ".nii.gz")``).

    The image extensions ``.nii.gz``, ``.nii``, ``.mgz`` and ``.mgh`` are recognised whole; any other name
    loses its last suffix (``sub-01_stats.json`` -> ``("sub-01_stats", ".json")``).
    """
    name = Path(path).name
    for ext in _EXTENSIONS:
        if name.endswith(ext):
            return name[: -len(ext)], ext
    plain = Path(name)
    return plain.stem, plain.suffix


def strip_ext(path: str | os.PathLike) -> str:
    """File name without its extension (``sub-01_T1w.nii.gz`` -> ``sub-01_T1w``); see :func:`split_ext`."""
    return split_ext(path)[0]


def image_like(
    data: np.ndarray, reference: nb.spatialimages.SpatialImage, dtype=None, *, copy_header: bool = False
) -> nb.Nifti1Image:
    """A NIfTI-1 image of ``data`` on the grid of ``reference``.

    Parameters
    ----------
    data : numpy.ndarray
        Array on the grid of ``reference`` (extra trailing axes allowed).
    reference : nibabel image
        Image whose grid is taken.
    dtype : numpy dtype, optional
        On-disk type; the array's type when None. No scaling is applied.
    copy_header : bool
        False: a new header with the affine, the orientation codes (sform, else qform, else 1) and the
        spatial unit of ``reference``. True: a copy of ``reference``'s header (description, intent, codes
        and all), given the new data type.

    Raises
    ------
    ValueError
        When the array's first three axes do not match the reference's.
    """
    data = np.asarray(data)
    if dtype is not None:
        data = data.astype(dtype, copy=False)
    if data.shape[:3] != tuple(reference.shape[:3]):
        raise ValueError(
            f"save_like: array shape {data.shape} does not match the reference {reference.shape}."
        )
    if copy_header:
        header = reference.header.copy()
        header.set_data_dtype(data.dtype)
        img = nb.Nifti1Image(data, reference.affine, header)
        img.header.set_slope_inter(1.0, 0.0)
        return img
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
    return img


def save_like(
    data: np.ndarray,
    reference: nb.spatialimages.SpatialImage,
    path: str | os.PathLike,
    dtype=None,
    *,
    copy_header: bool = False,
) -> str:
    """Write :func:`image_like` of the same arguments to ``path``; return ``path`` as a string."""
    image_like(data, reference, dtype, copy_header=copy_header).to_filename(str(path))
    return str(path)
