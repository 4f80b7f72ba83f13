"""Extra contrasts: Atropos on T2w/FLAIR with the T1w-only memberships as priors (step 5)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import nibabel as nb
import numpy as np

from smriflow.anat.tissue_segmentation.deep_gm import apply_deep_gm_prior
from smriflow.anat.tissue_segmentation.memberships import segment_tissues
from smriflow.utils.morphology import bounding_box

__all__ = ["NO_EXTRA_CHANNEL_WARNING", "atropos_posteriors", "segment_tissues_multichannel"]

NO_EXTRA_CHANNEL_WARNING = "multichannel=true but no T2w or FLAIR: segmented from the T1w only"


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
