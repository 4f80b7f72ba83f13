"""Brain extraction with deepbet (a pre-trained CNN; optional extra ``smriflow[deepbet]``).

deepbet 1.0.2 (Fisch et al., 2024) ships its two TorchScript models (a 128³ bounding-box net and a 256³
mask net, ~17 MB) inside its wheel and loads them from disk: nothing is downloaded at run time (checked
with the network unreachable). It needs PyTorch; install a CPU build first so pip does not pull CUDA::

    pip install torch==2.13.0
    pip install "smriflow[deepbet]"

deepbet reorients the image to RAS in memory, predicts there and returns the mask on the input's own voxel
grid and orientation: :func:`deepbet_mask` returns it on the grid of its input (in ``anat_preproc`` the
conformed, RAS image), no resampling. It always runs on the CPU.

Measured on the shared 256³ T1w (sub-0002, 2 vCPU): Dice 0.979 vs FreeSurfer ``brainmask.mgz > 0``; see
:class:`smriflow.interfaces.brain_extraction.BrainExtraction` for the comparison with the ``ants`` method.
"""

from __future__ import annotations

import warnings

import nibabel as nb
import numpy as np

__all__ = ["deepbet_mask", "import_deepbet"]

_INSTALL = (
    "deepbet is not installed: pip install torch==2.13.0 (a CPU build) first, "
    'then pip install "smriflow[deepbet]"'
)


def import_deepbet():
    """Return the ``deepbet`` module, or raise ImportError with the install command."""
    try:
        import deepbet
    except ImportError as exc:
        raise ImportError(_INSTALL) from exc
    return deepbet


def deepbet_mask(
    img: nb.spatialimages.SpatialImage,
    *,
    threshold: float = 0.5,
    n_dilate: int = 0,
    num_threads: int | None = None,
) -> tuple[np.ndarray, dict]:
    """Brain mask of a T1w with deepbet, on the grid of ``img``.

    Parameters
    ----------
    img : nibabel image
        3-D T1w with skull (any orientation; bias-corrected or not).
    threshold : float
        Probability above which a voxel is brain (deepbet's default 0.5).
    n_dilate : int
        Layers (voxels, 6-connected) to dilate the mask by; negative erodes (deepbet's ``n_dilate``).
    num_threads : int or None
        PyTorch intra-op threads; left as PyTorch set them (``OMP_NUM_THREADS``) when None. For a given
        count the mask is identical run to run.

    Returns
    -------
    mask : numpy.ndarray
        Boolean mask on the grid of ``img``.
    info : dict
        ``deepbet_threshold`` and ``deepbet_dilate``, for the brain-extraction record.

    Raises
    ------
    ImportError
        When deepbet (or PyTorch) is not installed.
    ValueError
        When the image is not 3-D or deepbet finds no brain.
    """
    deepbet = import_deepbet()
    import torch

    if num_threads is not None:
        torch.set_num_threads(max(1, int(num_threads)))
    name = img.get_filename() or "the image"
    if len(img.shape) != 3:
        raise ValueError(f"deepbet_mask: expected a 3-D image, {name} has shape {img.shape}.")
    data = np.asarray(img.dataobj, dtype=np.float32)
    # deepbet reads the voxels through get_fdata: hand it exactly the float32 array we mask
    with warnings.catch_warnings():  # deepbet's models are TorchScript; torch 2.13 deprecates jit.load
        warnings.filterwarnings("ignore", message=".*torch.jit.load", category=DeprecationWarning)
        bet = deepbet.BrainExtraction(no_gpu=True)
    try:
        _, mask_img, _ = bet.run(
            nb.Nifti1Image(data, img.affine), threshold=float(threshold), n_dilate=int(n_dilate)
        )
    except (AssertionError, ValueError) as exc:  # no foreground for its bounding box / no component
        raise ValueError(f"deepbet_mask: deepbet found no brain in {name} ({exc}).") from exc
    mask = np.asarray(mask_img.dataobj) > 0
    if mask.shape != data.shape or not np.allclose(mask_img.affine, img.affine):
        raise ValueError("deepbet_mask: deepbet returned a mask off the input grid.")  # pragma: no cover
    if not mask.any():
        raise ValueError(f"deepbet_mask: deepbet found no brain in {name}.")
    return mask, {"deepbet_threshold": float(threshold), "deepbet_dilate": int(n_dilate)}
