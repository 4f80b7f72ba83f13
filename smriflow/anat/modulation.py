r"""Jacobian determinants of spatial mappings and Jacobian modulation of warped tissue maps.

Convention
----------
Registration to a template estimates the mapping :math:`T` that takes a point :math:`x` of the *template* to
the point :math:`T(x)` of the *subject* (ANTs' "forward" transforms: the ones used to resample the subject
into the template, ``warped(x) = subject(T(x))``). Its Jacobian determinant

.. math:: J(x) = \det \nabla T(x)

is the native volume that one unit of template volume stands for: :math:`J > 1` where the subject is larger
than the template (its tissue is compressed onto the template), :math:`J < 1` where it is smaller. The
change of variables :math:`y = T(x)` gives

.. math:: \int_{subject} p(y)\,dy = \int_{template} p(T(x))\,J(x)\,dx,

so the *modulated* map ``warped * J`` integrates, over the template grid, to the native volume of the tissue:
``modulated.sum() * template_voxel_volume == (native.sum() * native_voxel_volume)`` up to interpolation
error. This is SPM's "preserve amounts" modulation. smriflow computes :math:`J` from the *complete* mapping
(affine and nonlinear parts), so modulated maps keep the head-size effect (use TIV as a covariate, or divide
by it, in group models).

FSL's ``fnirt --jout`` map has the same direction (J < 1 where the subject is smaller than the template,
i.e. where it is expanded onto it; ``fslvbm`` multiplies by it), but covers only the nonlinear part of the
mapping, so it does not carry head size.

The determinant is computed here with NumPy from a dense displacement field (ITK/ANTs convention: the
displacement ``u(p) = T(p) - p`` of each grid point ``p``, in LPS physical coordinates, in mm), which is exact
for affine mappings on the whole grid, including its border (ANTs' ``CreateJacobianDeterminantImage`` is off
on the two outermost voxel layers).
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nb
import numpy as np

from smriflow.utils.grids import check_same_grid
from smriflow.utils.niftiio import load_image

__all__ = [
    "LOG_JACOBIAN_FLOOR",
    "displacement_jacobian",
    "log_jacobian_image",
    "modulate",
    "volume_mm3",
]

#: Determinants are clipped to at least this value before the logarithm (folded or degenerate voxels).
LOG_JACOBIAN_FLOOR = 1e-6

_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])


def _field_array(field: nb.Nifti1Image) -> np.ndarray:
    """Return the displacement vectors of an ITK displacement-field NIfTI as an ``(X, Y, Z, 3)`` array."""
    data = np.asanyarray(field.dataobj)
    if data.ndim == 5 and data.shape[3] == 1 and data.shape[4] == 3:
        data = data[:, :, :, 0, :]
    if data.ndim != 4 or data.shape[3] != 3:
        raise ValueError(
            "'field' must be a 3-D displacement field of shape (X, Y, Z, 1, 3) or (X, Y, Z, 3). "
            f"Shape {data.shape} was provided."
        )
    return data.astype(np.float32, copy=False)


def displacement_jacobian(field: nb.Nifti1Image | str | Path) -> np.ndarray:
    r"""Return the Jacobian determinant of ``p -> p + u(p)`` on the grid of a displacement field.

    Parameters
    ----------
    field : nibabel.Nifti1Image, str or pathlib.Path
        ITK/ANTs displacement field (vectors in LPS physical mm, NIfTI intent "vector"), e.g. the output of
        ``ants.apply_transforms(..., compose=prefix)`` on a template grid.

    Returns
    -------
    numpy.ndarray
        ``float32`` array of the field's spatial shape: :math:`\det(I + \partial u / \partial p)`.

    Notes
    -----
    Derivatives are taken with :func:`numpy.gradient` (second-order central differences inside, first-order
    one-sided on the border) along the voxel axes and converted to physical derivatives with the inverse of
    the grid's voxel-to-LPS matrix, so any voxel size, orientation and axis flip is handled.
    """
    img = load_image(field)
    disp = _field_array(img)
    to_lps = _RAS_TO_LPS @ img.affine[:3, :3]
    inv = np.linalg.inv(to_lps).astype(np.float32)
    # grad[..., a, b] = d u_a / d i_b (voxel axes), then d u_a / d p_c = sum_b grad[..., a, b] * inv[b, c]
    jac = np.empty(disp.shape[:3] + (3, 3), dtype=np.float32)
    for a in range(3):
        grads = np.gradient(disp[..., a], axis=(0, 1, 2))
        jac[..., a, :] = np.stack(grads, axis=-1) @ inv
        del grads
    jac += np.eye(3, dtype=np.float32)
    return np.linalg.det(jac).astype(np.float32)


def log_jacobian_image(
    field: nb.Nifti1Image | str | Path,
    reference: nb.Nifti1Image | str | Path,
    *,
    linear_det: float = 1.0,
) -> nb.Nifti1Image:
    r"""Return the natural log of the Jacobian determinant of a displacement field, on a reference grid.

    Parameters
    ----------
    field : nibabel.Nifti1Image, str or pathlib.Path
        Displacement field (see :func:`displacement_jacobian`) sampled on the grid of ``reference``.
    reference : nibabel.Nifti1Image, str or pathlib.Path
        Image whose header (affine, sform/qform codes) the output takes.
    linear_det : float
        Determinant of a linear map :math:`A` applied *after* the field (:math:`T = A \circ W`, ITK's
        order for a composite [affine, field]); the result is then :math:`\log(\det A \cdot J_W)`.

    Returns
    -------
    nibabel.Nifti1Image
        ``float32`` :math:`\log J`, with :math:`J` clipped below at :data:`LOG_JACOBIAN_FLOOR`.
    """
    ref = load_image(reference)
    fld = load_image(field)
    check_same_grid(
        fld,
        ref,
        "'field' must be sampled on the grid of 'reference'. "
        f"Field shape {fld.shape[:3]} and reference shape {ref.shape[:3]} (or their affines) differ.",
    )
    det = displacement_jacobian(fld) * np.float32(abs(linear_det))
    logj = np.log(np.maximum(det, LOG_JACOBIAN_FLOOR)).astype(np.float32)
    out = nb.Nifti1Image(logj, ref.affine, ref.header)
    out.set_data_dtype(np.float32)
    return out


def modulate(
    warped: nb.Nifti1Image | str | Path, log_jacobian: nb.Nifti1Image | str | Path
) -> nb.Nifti1Image:
    r"""Multiply a map warped into template space by the Jacobian determinant of the mapping.

    Parameters
    ----------
    warped : nibabel.Nifti1Image, str or pathlib.Path
        Tissue probability (or any density) resampled from the subject into the template.
    log_jacobian : nibabel.Nifti1Image, str or pathlib.Path
        :math:`\log J` on the same grid (see the module docstring for the direction of :math:`J`).

    Returns
    -------
    nibabel.Nifti1Image
        ``float32`` ``warped * exp(log_jacobian)``, with the header of ``warped``. Its integral over the
        template grid (:func:`volume_mm3`) equals the native volume of the tissue.

    Raises
    ------
    ValueError
        When the two images are not on the same grid.
    """
    wimg = load_image(warped)
    jimg = load_image(log_jacobian)
    check_same_grid(
        wimg,
        jimg,
        "'warped' and 'log_jacobian' must be on the same grid. "
        f"Shapes {wimg.shape[:3]} and {jimg.shape[:3]} (or their affines) differ.",
    )
    data = np.asanyarray(wimg.dataobj).astype(np.float32) * np.exp(
        np.asanyarray(jimg.dataobj, dtype=np.float32)
    )
    out = nb.Nifti1Image(data.astype(np.float32), wimg.affine, wimg.header)
    out.set_data_dtype(np.float32)
    return out


def volume_mm3(img: nb.Nifti1Image | str | Path, mask: np.ndarray | None = None) -> float:
    """Return the integral of an image in mm³: the sum of its values times the voxel volume.

    Parameters
    ----------
    img : nibabel.Nifti1Image, str or pathlib.Path
        Probability, partial-volume, density or binary image.
    mask : numpy.ndarray of bool, optional
        Sum only inside this mask (same shape as the image).

    Returns
    -------
    float
        Volume in mm³, from the header's voxel size (never a raw voxel count).
    """
    im = load_image(img)
    data = np.asanyarray(im.dataobj).astype(np.float64)
    if mask is not None:
        data = data[np.asarray(mask, dtype=bool)]
    voxel = float(abs(np.linalg.det(im.affine[:3, :3])))
    return float(data.sum() * voxel)
