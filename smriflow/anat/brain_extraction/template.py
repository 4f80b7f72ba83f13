"""Brain extraction of a head T1w with a skull-stripped template and the subject's own intensities.

Method (``ants``, the default), on a bias-corrected T1w:

1. **Crude brain mask** at ~2 mm (:func:`crude_brain_mask`): 3-class k-means of the head; voxels brighter
   than the CSF/GM midpoint (and not brighter than fat) are eroded 4 mm to cut them from the scalp, the
   largest component is kept, dilated back within the tissue and closed. It only has to be good enough to
   skull-strip the subject for registration (the template nilearn ships has no skull).
2. **Affine registration** (antspyx, 2 mm, global correlation) of the crude-masked subject (moving) to the
   template brain (fixed, with its brain mask dilated 4 mm as the metric mask). Optionally (``use_syn``) a
   SyN-only stage follows. The subject-to-template transforms are kept: spatial normalization can start
   from them.
3. The template **brain mask** is pulled back onto the native grid (linear interpolation) as a prior.
4. **Refinement** (:func:`refine_brain_mask`): brain tissue = voxels brighter than ``tissue_threshold``
   times the white-matter peak, within ``band_mm`` of the prior (> 0.5); opened by 1 voxel, largest
   component, closed with a ``closing_mm`` ball (fills sulci), holes filled, dilated ``dilation_mm``. This
   reproduces the extent of FreeSurfer's ``brainmask.mgz``, which includes the CSF around the brain. Coarse
   or anisotropic voxels are refined on an isotropic 1 mm grid, so that the radii hold in mm.

Measured on the shared 256³ T1w (1 thread): Dice 0.983 vs ``brainmask.mgz > 0`` with the affine only in
~7 s, 0.982 with SyN in ~15 s; the notes' affine + SyN + threshold recipe gave 0.974-0.977 in ~21 s.
With a fixed seed the result is bit-identical run to run for a given ``num_threads`` (the global-correlation
metric reduces deterministically across threads; Mattes MI does not).
Morphology uses Euclidean distance transforms (radii in mm, any voxel size) on the cropped brain region.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nb
import numpy as np
from scipy import ndimage

from smriflow.data.templates import DEFAULT_TEMPLATE
from smriflow.utils.grids import block_reduce, from_isotropic_grid, isotropic_grid_size, to_isotropic_grid
from smriflow.utils.intensity import kmeans_1d
from smriflow.utils.morphology import bounding_box, dilate_mm, erode_mm, head_mask, largest_component
from smriflow.utils.seed import DEFAULT_SEED

__all__ = [
    "BrainExtractionResult",
    "brain_extraction",
    "crude_brain_mask",
    "refine_brain_mask",
    "template_images",
    "warp_template_mask",
    "white_matter_peak",
]


@dataclass
class BrainExtractionResult:
    """What :func:`brain_extraction` computed (arrays on the input grid, transforms as files)."""

    mask: np.ndarray
    prior: np.ndarray
    affine_xfm: str
    warp_xfm: str | None = None
    inverse_warp_xfm: str | None = None
    info: dict = field(default_factory=dict)


def white_matter_peak(values: np.ndarray) -> float:
    """Mode of the upper half of a T1w brain-intensity sample (the white-matter peak)."""
    values = np.asarray(values, dtype=np.float64).ravel()
    upper = values[values >= np.median(values)]
    hist, edges = np.histogram(upper, bins=128)
    hist = ndimage.gaussian_filter1d(hist.astype(np.float64), 2)
    i = int(np.argmax(hist))
    return float((edges[i] + edges[i + 1]) / 2)


def crude_brain_mask(data: np.ndarray, zooms: Sequence[float], head: np.ndarray | None = None) -> np.ndarray:
    """Rough brain mask of a bias-corrected head T1w, on the same grid (see step 1 of the module doc).

    Parameters
    ----------
    data : numpy.ndarray
        3-D T1w, best at ~2 mm.
    zooms : sequence of float
        Voxel size in mm.
    head : numpy.ndarray or None
        Head mask; computed with :func:`smriflow.utils.morphology.head_mask` when None.

    Returns
    -------
    numpy.ndarray
        Boolean mask.
    """
    zooms = [float(z) for z in zooms[:3]]
    if head is None:
        head = head_mask(data, zooms, resolution=min(zooms))
    centers, labels = kmeans_1d(data[head], 3)
    bright = labels == 2
    wm_sd = float(np.std(data[head][bright])) if bright.any() else 0.0
    low, high = (centers[0] + centers[1]) / 2, centers[2] + 3 * wm_sd
    tissue = head & (data > low) & (data < high)
    core = largest_component(erode_mm(tissue, 4.0, zooms))
    if not core.any():
        raise ValueError("crude_brain_mask: no brain-like tissue found (is this a T1w head image?).")
    mask = dilate_mm(core, 4.0, zooms) & tissue
    mask = erode_mm(dilate_mm(mask, 4.0, zooms), 4.0, zooms)
    return ndimage.binary_fill_holes(mask)


def refine_brain_mask(
    data: np.ndarray,
    zooms: Sequence[float],
    prior: np.ndarray,
    *,
    tissue_threshold: float = 0.42,
    band_mm: float = 2.0,
    closing_mm: float = 3.0,
    dilation_mm: float = 2.0,
) -> np.ndarray:
    """Fit a prior brain mask to the subject's brain tissue (step 4 of the module doc).

    Parameters
    ----------
    data : numpy.ndarray
        Bias-corrected T1w.
    zooms : sequence of float
        Voxel size in mm.
    prior : numpy.ndarray
        Brain probability (or mask) on the same grid; > 0.5 is brain.
    tissue_threshold : float
        Brain tissue is brighter than this fraction of the white-matter peak (CSF/GM boundary).
    band_mm : float
        Tissue is searched within this distance of the prior.
    closing_mm : float
        Radius of the closing that fills sulci.
    dilation_mm : float
        Final dilation (FreeSurfer's mask includes the CSF around the brain).

    Returns
    -------
    numpy.ndarray
        Boolean mask on the grid of ``data``.

    Notes
    -----
    The radii are in mm, but on a coarse grid a ball can only grow by whole voxels: a 2 mm dilation adds
    one 1.3 mm voxel, and on 1 × 1 × 3 mm voxels every radius was raised to 3 mm, so the mask shrank or grew
    with the voxel size. An image that :func:`smriflow.utils.grids.isotropic_grid_size` calls coarse or
    anisotropic is therefore refined on an isotropic 1 mm grid over the prior's box (image and prior
    resampled linearly), and an input voxel is brain when at least half of it is brain on that grid.
    """
    zooms = [float(z) for z in zooms[:3]]
    size = isotropic_grid_size(zooms)
    options = {
        "tissue_threshold": tissue_threshold,
        "band_mm": band_mm,
        "closing_mm": closing_mm,
        "dilation_mm": dilation_mm,
    }
    if size is None:
        return _refine_on_grid(data, zooms, prior, **options)
    core = np.asarray(prior) > 0.5
    if not core.any():
        raise ValueError("refine_brain_mask: the prior brain mask is empty.")
    pad = [int(np.ceil((band_mm + closing_mm + dilation_mm + 2 * size) / z)) for z in zooms]
    box = bounding_box(core, pad)
    shape = core[box].shape
    fine = to_isotropic_grid(np.asarray(data[box], dtype=np.float32), zooms, size, order=1)
    fine_prior = to_isotropic_grid(np.asarray(prior[box], dtype=np.float32), zooms, size, order=1)
    fine_mask = _refine_on_grid(fine, (size, size, size), fine_prior, **options)
    out = np.zeros(core.shape, dtype=bool)
    out[box] = from_isotropic_grid(fine_mask.astype(np.float32), shape, zooms, size) >= 0.5
    return out


def _refine_on_grid(
    data: np.ndarray,
    zooms: Sequence[float],
    prior: np.ndarray,
    *,
    tissue_threshold: float,
    band_mm: float,
    closing_mm: float,
    dilation_mm: float,
) -> np.ndarray:
    """:func:`refine_brain_mask` on the data's own grid (radii of at least one voxel)."""
    zooms = [float(z) for z in zooms[:3]]
    core = np.asarray(prior) > 0.5
    if not core.any():
        raise ValueError("refine_brain_mask: the prior brain mask is empty.")
    # radii below one voxel would do nothing on coarse grids: use at least one voxel
    voxel = max(zooms)
    band_mm, closing_mm = max(band_mm, voxel), max(closing_mm, voxel)
    dilation_mm = max(dilation_mm, voxel) if dilation_mm > 0 else 0.0
    pad = int(np.ceil((band_mm + closing_mm + dilation_mm) / min(zooms))) + 2
    idx = np.argwhere(core)
    lo = np.maximum(idx.min(0) - pad, 0)
    hi = np.minimum(idx.max(0) + pad + 1, core.shape)
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
    sub, core_box = np.asarray(data[box], dtype=np.float32), core[box]
    inner = erode_mm(core_box, 2 * max(zooms), zooms)  # away from the boundary's partial volume
    threshold = tissue_threshold * white_matter_peak(sub[inner] if inner.sum() >= 100 else sub[core_box])
    tissue = (sub > threshold) & dilate_mm(core_box, band_mm, zooms)
    tissue = largest_component(ndimage.binary_opening(tissue))
    if not tissue.any():
        raise ValueError("refine_brain_mask: no brain tissue above the intensity threshold near the prior.")
    # pad by the closing radius so the closing is not clipped by the box
    margin = int(np.ceil(closing_mm / min(zooms))) + 1
    padded = np.pad(tissue, margin)
    closed = erode_mm(dilate_mm(padded, closing_mm, zooms), closing_mm, zooms)[
        margin:-margin, margin:-margin, margin:-margin
    ]
    closed = dilate_mm(ndimage.binary_fill_holes(closed | tissue), dilation_mm, zooms)
    out = np.zeros(core.shape, dtype=bool)
    out[box] = closed
    return out


def _grid_2mm(img: nb.Nifti1Image) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Block-average an image to ~2 mm; return the data, its affine and the block factors."""
    zooms = img.header.get_zooms()[:3]
    factors = [max(1, round(2.0 / float(z))) for z in zooms]
    small = block_reduce(np.asarray(img.dataobj, dtype=np.float32), factors)
    affine = img.affine.copy()
    affine[:3, :3] = img.affine[:3, :3] * np.asarray(factors)
    affine[:3, 3] = img.affine[:3, :3] @ ((np.asarray(factors) - 1) / 2) + img.affine[:3, 3]
    return small, affine, factors


def template_images(template: str, ants) -> tuple:
    """The 2 mm template brain (fixed image) and its brain mask dilated 4 mm (metric mask), as ANTsImages."""
    from smriflow.data.templates import get_template
    from smriflow.utils.antsio import to_ants

    tpl = nb.load(get_template(template, resolution=2))
    tpl_mask = nb.load(get_template(template, resolution=2, suffix="mask"))
    fixed = to_ants(np.asarray(tpl.dataobj), tpl.affine, ants)
    tpl_zooms = tpl.header.get_zooms()[:3]
    fixed_mask = to_ants(dilate_mm(np.asarray(tpl_mask.dataobj) > 0, 4.0, tpl_zooms), tpl_mask.affine, ants)
    return fixed, fixed_mask


def warp_template_mask(
    shape: Sequence[int],
    affine: np.ndarray,
    lo: Sequence[int],
    hi: Sequence[int],
    to_subject: list[str],
    invert: list[bool],
    template: str,
    ants,
) -> np.ndarray:
    """Pull the 1 mm template brain mask back into the voxel box ``[lo, hi)`` of a native grid (step 3).

    Returns the brain probability (float32, 0-1) on the full grid ``shape``; zero outside the box.
    """
    from smriflow.data.templates import get_template
    from smriflow.utils.antsio import to_ants

    lo, hi = np.asarray(lo), np.asarray(hi)
    box_affine = affine.copy()
    box_affine[:3, 3] = affine[:3, :3] @ lo + affine[:3, 3]
    box_shape = tuple(int(x) for x in hi - lo)
    tpl_mask1 = nb.load(get_template(template, resolution=1, suffix="mask"))
    warped = ants.apply_transforms(
        to_ants(np.zeros(box_shape, np.float32), box_affine, ants),
        to_ants(np.asarray(tpl_mask1.dataobj, dtype=np.float32), tpl_mask1.affine, ants),
        to_subject,
        whichtoinvert=invert,
        interpolator="linear",
    ).numpy()
    prior = np.zeros(tuple(shape), dtype=np.float32)
    prior[tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))] = np.clip(warped, 0, 1)
    return prior


def brain_extraction(
    img: nb.Nifti1Image,
    *,
    template: str = DEFAULT_TEMPLATE,
    use_syn: bool = False,
    refine: bool = True,
    tissue_threshold: float = 0.42,
    work_dir: str | Path | None = None,
    num_threads: int = 1,
    seed: int = DEFAULT_SEED,
    affine_metric: str = "GC",
) -> BrainExtractionResult:
    """Brain mask of a bias-corrected T1w (method in the module docstring).

    Parameters
    ----------
    img : nibabel.Nifti1Image
        Bias-corrected head T1w (any orientation).
    template : str
        Template whose ``desc-brain`` T1w and mask are used
        (see :func:`smriflow.data.templates.get_template`).
    use_syn : bool
        Add a SyN-only stage (Mattes metric) after the affine: ~7 s more, no better on our data (Dice 0.982
        vs 0.983), and with more than one thread not bit-identical run to run.
    refine : bool
        Refine the warped template mask on the subject's intensities; if False the prior > 0.5 is returned.
    tissue_threshold : float
        See :func:`refine_brain_mask`.
    work_dir : str, Path or None
        Folder for the registration outputs (one sub-folder per registration); temporary when None.
    num_threads : int
        ITK threads; for a given count (and seed) the affine-only result is bit-identical run to run.
    seed : int
        Registration random seed.
    affine_metric : str
        Metric of the affine stage: ``"GC"`` (global correlation; bit-identical results for a given thread
        count) or ``"mattes"`` (mutual information; varies slightly run to run with more than one thread).

    Returns
    -------
    BrainExtractionResult
        Mask and prior on the input grid, subject-to-template transforms (ANTs files).
    """
    from smriflow.utils.antsenv import import_ants
    from smriflow.utils.antsio import ants_seed, registration_dir, to_ants

    ants = import_ants(num_threads)
    data = np.asarray(img.dataobj, dtype=np.float32)
    zooms = [float(z) for z in img.header.get_zooms()[:3]]

    small, small_affine, _ = _grid_2mm(nb.Nifti1Image(data, img.affine))
    small_zooms = np.sqrt((small_affine[:3, :3] ** 2).sum(0))
    crude = crude_brain_mask(small, small_zooms)
    moving = to_ants(small * dilate_mm(crude, 6.0, small_zooms), small_affine, ants)

    fixed, fixed_mask = template_images(template, ants)

    with ants_seed(ants, seed):
        aff = ants.registration(
            fixed,
            moving,
            "Affine",
            mask=fixed_mask,
            aff_metric=affine_metric,
            outprefix=registration_dir(work_dir, "affine"),
        )
        affine_xfm = aff["fwdtransforms"][0]
        to_subject, invert = [affine_xfm], [True]
        warp = inv_warp = None
        if use_syn:
            syn = ants.registration(
                fixed,
                moving,
                "SyNOnly",
                initial_transform=affine_xfm,
                mask=fixed_mask,
                outprefix=registration_dir(work_dir, "syn"),
            )
            warp = next(f for f in syn["fwdtransforms"] if f.endswith("Warp.nii.gz"))
            inv_warp = next(f for f in syn["invtransforms"] if f.endswith("InverseWarp.nii.gz"))
            to_subject, invert = [affine_xfm, inv_warp], [True, False]

    # pull the 1 mm template brain mask back onto the head's bounding box of the native grid
    idx = np.argwhere(head_mask(data, zooms))
    prior = warp_template_mask(
        data.shape, img.affine, idx.min(0), idx.max(0) + 1, to_subject, invert, template, ants
    )

    if refine:
        mask = refine_brain_mask(data, zooms, prior, tissue_threshold=tissue_threshold)
    else:
        mask = prior > 0.5
    info = {
        "method": "ants",
        "template": template,
        "use_syn": bool(use_syn),
        "refine": bool(refine),
        "brain_volume_ml": float(mask.sum() * np.prod(zooms) / 1000),
    }
    return BrainExtractionResult(mask, prior, affine_xfm, warp, inv_warp, info)
