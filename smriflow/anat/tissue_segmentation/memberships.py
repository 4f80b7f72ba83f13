"""T1w-only memberships: locally adaptive, partial-volume-aware GM/WM/CSF classification (steps 1-3)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from smriflow.anat.tissue_segmentation.deep_gm import apply_deep_gm_prior
from smriflow.utils.intensity import kmeans_1d, local_mean
from smriflow.utils.morphology import bounding_box

__all__ = ["CLASSES", "segment_tissues"]

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
