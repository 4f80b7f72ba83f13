"""Noise estimation and adaptive non-local-means denoising before tissue segmentation.

Tissue segmentation classifies voxels by intensity, so noise moves voxels across the GM/WM and CSF/GM
thresholds and inflates the partial-volume classes. :func:`estimate_noise` measures the noise inside the
brain from the white matter, where the true image is nearly flat: the differences of neighbouring WM
voxels along each axis have a spread of ``sqrt(2) σ`` (1.4826 × MAD, robust to the few edges left), and the
estimate is ``σ`` relative to the WM median (the convention of the bench's ``noiseN`` variants: Rician noise
of σ = N % of the WM intensity). :func:`denoise_if_noisy` runs ANTs' DenoiseImage (antspyx
``denoise_image``: adaptive non-local means, Rician noise model; the step sMRIPrep runs) inside the brain
mask only when that estimate is above ``threshold`` and the voxels are at most ``max_voxel_mm`` on every
side, so that clean scans keep their exact intensities and time; the estimate and the decision are returned
as the stage's record. The voxel-size limit: DenoiseImage's patch and search radii are counted in voxels (1
and 2), so on 3 mm voxels it averages over 9–15 mm and made noisy scans worse (docs/anat_preproc.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import ndimage

from smriflow.utils.intensity import kmeans_1d

__all__ = ["DENOISE_MAX_VOXEL_MM", "DENOISE_THRESHOLD", "denoise_if_noisy", "estimate_noise"]

#: Relative noise (σ / WM median) above which the image is denoised: measured on the shared T1w after N4,
#: 0.013 clean, 0.034 with the bench's 3 % Rician noise, 0.062 with 6 % (docs/anat_preproc.md, "Hard scans").
DENOISE_THRESHOLD = 0.025
#: Largest voxel side (mm) at which ``mode="auto"`` denoises: it helped at 1 mm and harmed at 3 mm.
DENOISE_MAX_VOXEL_MM = 1.5


def estimate_noise(data: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """Noise σ of an image, absolute and relative to the white matter's median, measured in the WM.

    Parameters
    ----------
    data : numpy.ndarray
        3-D bias-corrected image.
    mask : numpy.ndarray
        Brain (or head) mask: the WM is its brightest class of a 3-class 1-D k-means, eroded once.

    Returns
    -------
    dict
        ``sigma`` (image units), ``wm_median``, ``relative`` (``sigma / wm_median``) and ``n_pairs``.

    Raises
    ------
    ValueError
        When the mask holds too few white-matter voxels to measure anything.
    """
    data = np.asarray(data, dtype=np.float32)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != data.shape:
        raise ValueError(
            f"estimate_noise: mask shape {mask.shape} differs from the image shape {data.shape}."
        )
    if mask.sum() < 100:
        raise ValueError("estimate_noise: the mask holds fewer than 100 voxels.")
    _, labels = kmeans_1d(data[mask], 3)
    wm = np.zeros(data.shape, dtype=bool)
    wm[mask] = labels == 2
    wm = ndimage.binary_erosion(wm)
    diffs = []
    for axis in range(3):
        both = np.logical_and(
            np.take(wm, range(wm.shape[axis] - 1), axis=axis),
            np.take(wm, range(1, wm.shape[axis]), axis=axis),
        )
        diffs.append(np.diff(data, axis=axis)[both])
    diff = np.concatenate(diffs)
    if diff.size < 50:
        raise ValueError("estimate_noise: too few white-matter voxels to measure the noise.")
    sigma = float(1.4826 * np.median(np.abs(diff - np.median(diff))) / np.sqrt(2.0))
    wm_median = float(np.median(data[wm])) if wm.any() else float("nan")
    return {
        "sigma": sigma,
        "wm_median": wm_median,
        "relative": sigma / wm_median if wm_median > 0 else float("nan"),
        "n_pairs": int(diff.size),
    }


def denoise_if_noisy(
    data: np.ndarray,
    mask: np.ndarray,
    zooms: Sequence[float],
    *,
    threshold: float = DENOISE_THRESHOLD,
    max_voxel_mm: float = DENOISE_MAX_VOXEL_MM,
    mode: str = "auto",
    num_threads: int = 1,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Denoise with ANTs' adaptive non-local means when the estimated noise calls for it.

    Parameters
    ----------
    data : numpy.ndarray
        3-D bias-corrected image.
    mask : numpy.ndarray
        Brain mask (the noise is measured and the image denoised inside it; outside it is unchanged).
    zooms : sequence of float
        Voxel size in mm.
    threshold : float
        Relative noise (:func:`estimate_noise`) above which ``mode="auto"`` denoises.
    max_voxel_mm : float
        ``mode="auto"`` leaves images alone whose largest voxel side is above this (mm).
    mode : {"auto", "always", "never"}
        Denoise when the estimate exceeds ``threshold`` and the voxels are fine enough, always, or never.
    num_threads : int
        ITK threads.

    Returns
    -------
    data : numpy.ndarray
        float32: the denoised image, or the input unchanged when not denoised.
    record : dict
        ``noise`` (:func:`estimate_noise`), ``threshold``, ``max_voxel_mm``, ``voxel_mm`` (the largest voxel
        side), ``mode``, ``noisy`` (the estimate is above ``threshold``), ``denoised`` (bool) and ``reason``
        (why, in words).
    """
    if mode not in ("auto", "always", "never"):
        raise ValueError(f"'mode' must be one of auto, always, never. {mode!r} was provided.")
    data = np.asarray(data, dtype=np.float32)
    mask = np.asarray(mask, dtype=bool)
    noise = estimate_noise(data, mask)
    voxel = max(float(z) for z in zooms[:3])
    noisy = bool(noise["relative"] > threshold)
    level = f"noise {100 * noise['relative']:.1f} %"
    if mode != "auto":
        denoise, reason = mode == "always", f"denoise={mode}"
    elif not noisy:
        denoise, reason = False, f"{level} is not above {100 * threshold:.1f} %"
    elif voxel > max_voxel_mm:
        denoise, reason = False, f"{level} but voxels of {voxel:g} mm (> {max_voxel_mm:g} mm)"
    else:
        denoise, reason = True, f"{level} is above {100 * threshold:.1f} %"
    record = {
        "noise": {key: round(float(value), 6) for key, value in noise.items()},
        "threshold": threshold,
        "max_voxel_mm": max_voxel_mm,
        "voxel_mm": round(voxel, 4),
        "mode": mode,
        "noisy": noisy,
        "denoised": bool(denoise),
        "reason": reason,
    }
    if not denoise:
        return data, record
    from smriflow.utils.antsenv import import_ants

    ants = import_ants(num_threads)
    spacing = tuple(float(z) for z in zooms[:3])
    out = ants.denoise_image(
        ants.from_numpy(data, spacing=spacing),
        mask=ants.from_numpy(mask.astype(np.float32), spacing=spacing),
        noise_model="Rician",
    ).numpy()
    result = data.copy()
    result[mask] = out[mask]
    return result, record
