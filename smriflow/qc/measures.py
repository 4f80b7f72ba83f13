"""The measures behind smriflow's IQMs: MRIQC's image-quality metrics and the processing-quality ones.

Each function computes one metric from arrays (MRIQC's definitions: Esteban et al. 2017, PLoS ONE
12(9):e0184661; MRIQC's ``mriqc/qc/anatomical.py``), plus the masks they are computed in (head, frame,
WM-harmonized intensities) and smriflow's own processing metrics (segmentation entropy, mask components).
:mod:`smriflow.qc.iqms` decides which image each one reads and assembles them; ``docs/iqms.md`` lists every
formula and its difference from MRIQC, if any. Pure numpy/scipy (and statsmodels' MAD); no nipype.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from scipy import ndimage

from smriflow.utils.morphology import bounding_box, connected_components

__all__ = [
    "DIETRICH_FACTOR",
    "TISSUES",
    "cnr",
    "efc",
    "fber",
    "frame_mask",
    "fuzzy_jaccard",
    "fwhm_classic",
    "harmonize",
    "iqm_head_mask",
    "mask_components",
    "rpve",
    "segmentation_entropy",
    "snr",
    "snr_dietrich",
    "summary_stats",
    "volume_fractions",
    "wm2max",
]

#: MRIQC's constant for Dietrich's SNR: sqrt((4 - pi) / 2), rounded as MRIQC rounds it.
DIETRICH_FACTOR = 0.6551364
#: Tissue names in the order of smriflow's probability maps (``t1w_tpms``: GM, WM, CSF) and dseg labels 1-3.
TISSUES = ("gm", "wm", "csf")
_STRUCT_26 = ndimage.generate_binary_structure(3, 2)  # MRIQC's erosion element (18-connectivity)
_MIN_SUMMARY_VOXELS = 1000  # MRIQC: a background region smaller than this gets zero statistics


# -- masks ---------------------------------------------------------------------------------------------------
def iqm_head_mask(raw: np.ndarray, zooms: Sequence[float], brain_mask: np.ndarray) -> np.ndarray:
    """Head mask for the background-based IQMs: :func:`smriflow.utils.morphology.head_mask` ∪ the brain mask.

    The head is found on the conformed raw T1w as for N4 (Otsu's threshold on a 2 mm block average,
    halved to keep bone and CSF, closing, largest component, hole filling); the brain mask is added so
    that no brain voxel is ever counted as background.

    Parameters
    ----------
    raw : numpy.ndarray
        Conformed (RAS) T1w, not bias-corrected.
    zooms : sequence of float
        Voxel size in mm.
    brain_mask : numpy.ndarray
        Brain mask on the same grid.

    Returns
    -------
    numpy.ndarray
        Boolean head mask.
    """
    from smriflow.utils.morphology import head_mask

    return head_mask(raw, zooms) | (np.asarray(brain_mask) > 0)


def frame_mask(raw: np.ndarray, min_voxels: int = 500) -> np.ndarray:
    """Zero-filled frame: voxels ``<= 0`` 6-connected to the grid border (rotation or defacing padding).

    Like MRIQC's ``RotationMask`` (which also opens the mask and keeps its two largest components), the
    frame is excluded from the background (``fber``, ``summary_bg_*``) and from ``efc``; a frame smaller
    than ``min_voxels`` is ignored. A background quantized to zeros is a frame too, as in MRIQC.

    Parameters
    ----------
    raw : numpy.ndarray
        Conformed raw T1w.
    min_voxels : int
        Smallest frame that counts.

    Returns
    -------
    numpy.ndarray
        Boolean mask.
    """
    labels, _ = ndimage.label(np.asarray(raw) <= 0)
    faces = [labels[0], labels[-1], labels[:, 0], labels[:, -1], labels[:, :, 0], labels[:, :, -1]]
    border = np.unique(np.concatenate([face.ravel() for face in faces]))
    keep = np.zeros(int(labels.max()) + 1, dtype=bool)
    keep[border[border > 0]] = True
    frame = keep[labels]
    if frame.sum() < min_voxels:
        return np.zeros(frame.shape, dtype=bool)
    return frame


def harmonize(data: np.ndarray, wm_prob: np.ndarray, *, threshold: float = 0.9) -> np.ndarray:
    """Scale the image so that the median of the white matter is 1000 (MRIQC's ``Harmonize``).

    The WM region is ``wm_prob > threshold`` eroded once (18-connected element); when the erosion
    leaves it empty (very coarse images) the region is used without erosion.

    Returns
    -------
    numpy.ndarray
        float64 image; negative values and NaNs set to 0 (as MRIQC's ``StructuralQC`` does next).
    """
    wm = np.asarray(wm_prob) > threshold
    eroded = ndimage.binary_erosion(wm, structure=_STRUCT_26)
    region = eroded if eroded.any() else wm
    if not region.any():
        raise ValueError(f"harmonize: no white-matter voxel has a probability above {threshold}.")
    data = np.nan_to_num(np.array(data, dtype=np.float64), copy=False)  # one float64 copy, then in place
    median = float(np.median(data[region]))
    if median <= 0:
        raise ValueError(f"harmonize: the white-matter median is {median:g}; expected a positive value.")
    data *= 1000.0 / median  # in place: nan_to_num returned a new array
    data[data < 0] = 0
    return data


# -- MRIQC's IQMs ------------------------------------------------------------------------------------------
def summary_stats(
    data: np.ndarray, regions: Mapping[str, np.ndarray], *, erode: bool, threshold: float = 0.85
) -> dict[str, dict[str, float]]:
    """Mean, median, stdv, MAD, kurtosis, 5th/95th percentiles and voxel count of each region.

    Each region is ``map > threshold`` (a probability map, or a binary mask for the background), eroded
    once with an 18-connected element when ``erode`` is true (MRIQC erodes when every voxel side is below
    1.9 mm). ``mad`` is statsmodels' normalized MAD (median of ``|x - median|`` / 0.6745); ``k`` is
    scipy's Fisher kurtosis (biased). A background region of fewer than 1000 voxels gets zeros (and its
    count), as in MRIQC.

    Parameters
    ----------
    data : numpy.ndarray
        Harmonized image.
    regions : mapping
        Name (``bg``, ``csf``, ``gm``, ``wm``) → probability map or mask on the grid of ``data``.
    erode : bool
        Erode each region once.
    threshold : float
        Region = values above it.

    Returns
    -------
    dict
        Name → {mean, median, stdv, mad, k, p05, p95, n}.
    """
    from scipy.stats import kurtosis
    from statsmodels.robust.scale import mad

    out: dict[str, dict[str, float]] = {}
    for name, prob in regions.items():
        mask = np.asarray(prob) > threshold
        if erode:
            mask = ndimage.binary_erosion(mask, structure=_STRUCT_26)
        values = np.asarray(data)[mask].astype(np.float64)
        n = float(values.size)
        if (name == "bg" and n < _MIN_SUMMARY_VOXELS) or n < 2:
            out[name] = dict.fromkeys(("mean", "median", "stdv", "mad", "k", "p05", "p95"), 0.0)
            out[name]["n"] = n
            continue
        p05, p95 = np.percentile(values, [5, 95])
        out[name] = {
            "mean": float(values.mean()),
            "median": float(np.median(values)),
            "stdv": float(values.std()),
            "mad": float(mad(values)),
            "k": float(kurtosis(values)),
            "p05": float(p05),
            "p95": float(p95),
            "n": n,
        }
    return out


def snr(mu_fg: float, sigma_fg: float, n: float) -> float:
    """SNR of a tissue: ``mu / (sigma * sqrt(n / (n - 1)))`` (MRIQC ``snr``; ``mu`` is the median)."""
    return float(mu_fg / (sigma_fg * math.sqrt(n / (n - 1))))


def snr_dietrich(mu_fg: float, mad_air: float, sigma_air: float) -> float:
    """Dietrich's SNR ``0.6551364 * mu / MAD_air`` (eq. A.12 of Dietrich 2007, as MRIQC computes it).

    When the background MAD is at most 1 (e.g. a background quantized to zeros), the background
    standard deviation is used instead, and -1 is returned when that is below 1e-3 (MRIQC's rules).
    """
    if mad_air > 1.0:
        return float(DIETRICH_FACTOR * mu_fg / mad_air)
    return float(DIETRICH_FACTOR * mu_fg / sigma_air) if sigma_air > 1e-3 else -1.0


def cnr(mu_wm: float, mu_gm: float, sigma_air: float, sigma_wm: float, sigma_gm: float) -> float:
    """Contrast-to-noise ratio ``|mu_WM - mu_GM| / sqrt(sigma_air² + sigma_WM² + sigma_GM²)``."""
    return float(abs(mu_wm - mu_gm) / math.sqrt(sigma_air**2 + sigma_gm**2 + sigma_wm**2))


def fber(data: np.ndarray, head: np.ndarray, frame: np.ndarray | None = None) -> float:
    """Foreground-background energy ratio ``median(|x|², head) / median(|x|², air)``.

    Air is everything outside ``head`` and outside the zero-filled ``frame``. Returns -1 when the
    background energy is below 1e-3 (a background of zeros, e.g. a skull-stripped or thresholded image).
    """
    data = np.asarray(data)
    head = np.asarray(head) > 0
    air = ~head if frame is None else ~head & ~np.asarray(frame, dtype=bool)
    fg = np.median(np.abs(data[head]) ** 2)
    bg = np.median(np.abs(data[air]) ** 2) if air.any() else 0.0
    if bg < 1.0e-3:
        return -1.0
    return float(fg / bg)


def efc(data: np.ndarray, frame: np.ndarray | None = None) -> float:
    """Entropy focus criterion (Atkinson 1997), normalized by its maximum as MRIQC does.

    ``E = -sum (x/b) ln((x + 1e-16)/b)`` with ``b = sqrt(sum x²)`` over the voxels outside ``frame``,
    divided by ``E_max = sqrt(N) ln(1/sqrt(N))`` (its value for a constant image): 1 for a constant
    image, towards 0 when the energy gathers in few voxels.
    """
    values = np.asarray(data, dtype=np.float64)
    if frame is not None:
        values = values[~np.asarray(frame, dtype=bool)]
    values = values.ravel()
    n = values.size
    efc_max = n * (1.0 / math.sqrt(n)) * math.log(1.0 / math.sqrt(n))
    b_max = math.sqrt(float((values**2).sum()))
    return float((1.0 / efc_max) * np.sum((values / b_max) * np.log((values + 1e-16) / b_max)))


def wm2max(data: np.ndarray, mu_wm: float, *, overwrite_input: bool = False) -> float:
    """White-matter-to-maximum ratio ``median_WM / P99.95(all voxels)``.

    With ``overwrite_input`` the percentile partially sorts ``data`` in place instead of a copy (the same
    value; for a caller that does not use ``data`` afterwards).
    """
    values = np.asarray(data).reshape(-1)
    return float(mu_wm / np.percentile(values, 99.95, overwrite_input=overwrite_input))


def volume_fractions(pvms: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Intracranial volume fractions ``sum(p_k) / sum_k sum(p_k)`` of each tissue map (``icvs_*``)."""
    sums = {name: float(np.asarray(pvm, dtype=np.float64).sum()) for name, pvm in pvms.items()}
    total = sum(sums.values())
    return {name: value / total for name, value in sums.items()}


def rpve(pvms: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Residual partial-volume error of each tissue map, computed exactly as MRIQC's ``rpve``.

    The map is clipped to [0, 1]; ``N`` is the number of voxels with ``p > 0``; values below the 2nd or
    above the 98th percentile of the positive values are set to 0; then
    ``rPVE = (sum_{p > 0.5} p + sum_{p <= 0.5} (1 - p)) / N``. As in MRIQC, the second sum runs over
    *every* voxel of the grid with ``p <= 0.5`` (zeros included, each counting 1), so the value depends
    on the field of view and is usually well above 1; compare it only between images of one protocol.
    """
    out = {}
    for name, pvm in pvms.items():
        p = np.asarray(pvm)
        positive = np.clip(p[p > 0].astype(np.float64), 0.0, 1.0)
        total = positive.size
        if total == 0:
            out[name] = 0.0
            continue
        lo, hi = np.percentile(positive, [2, 98])
        kept = positive[(positive >= lo) & (positive <= hi)]
        # every other voxel of the grid (zero, or set to zero by the percentile cut) counts 1 - 0
        error = kept[kept > 0.5].sum() + (1.0 - kept[kept <= 0.5]).sum() + (p.size - kept.size)
        out[name] = float(error / total)
    return out


def fuzzy_jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Fuzzy Jaccard overlap ``sum min(a, b) / sum max(a, b)`` of two probability maps (``tpm_overlap_*``)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    b = np.asarray(b, dtype=np.float64).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"fuzzy_jaccard: the maps' sizes differ: {a.size} and {b.size}.")
    den = np.maximum(a, b).sum()
    return float(np.minimum(a, b).sum() / den) if den > 0 else 0.0


def fwhm_classic(data: np.ndarray, mask: np.ndarray) -> tuple[float, float, float]:
    """Smoothness per axis, in voxels, with the classic first-difference estimator (Forman et al. 1995).

    For each axis, over neighbour pairs that both lie in ``mask``: ``rho = 1 - var(x_{i+1} - x_i) /
    (2 var(x))`` (sample variances; ``var(x)`` over the mask) is the lag-1 autocorrelation, and for a
    Gaussian autocorrelation ``FWHM = sqrt(-2 ln 2 / ln rho)`` voxels. This is the estimator of AFNI's
    ``3dFWHMx -ShowMeClassicFWHM`` that MRIQC calls (MRIQC then divides AFNI's mm by the voxel size).
    An axis where ``rho`` is not in (0, 1) gets -1.

    Returns
    -------
    tuple of float
        FWHM along the x, y and z array axes, in voxels.
    """
    mask = np.asarray(mask) > 0
    box = bounding_box(mask)
    data, mask = np.asarray(data)[box].astype(np.float64), mask[box]
    var = float(data[mask].var(ddof=1))
    out = []
    for axis in range(3):
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        lo[axis] = slice(None, -1)
        hi[axis] = slice(1, None)
        pairs = mask[tuple(lo)] & mask[tuple(hi)]
        diffs = (data[tuple(hi)] - data[tuple(lo)])[pairs]
        rho = 1.0 - float(diffs.var(ddof=1)) / (2.0 * var) if diffs.size > 1 and var > 0 else 0.0
        out.append(math.sqrt(-2.0 * math.log(2.0) / math.log(rho)) if 0.0 < rho < 1.0 else -1.0)
    return out[0], out[1], out[2]


# -- processing-quality metrics ------------------------------------------------------------------------------
def segmentation_entropy(tpms: Sequence[np.ndarray], mask: np.ndarray) -> float:
    """Mean normalized Shannon entropy ``-sum_k p_k ln p_k / ln K`` of the tissue memberships in the mask.

    0 when every brain voxel belongs to one class with certainty, 1 when every voxel is split equally
    among the ``K`` classes. Memberships are renormalized to sum to 1 in each voxel.
    """
    sel = np.asarray(mask) > 0
    if not sel.any():
        return 0.0
    p = np.stack([np.asarray(t, dtype=np.float64)[sel] for t in tpms])
    p = np.clip(p, 0.0, None)
    total = p.sum(0)
    p = np.divide(p, total, out=np.zeros_like(p), where=total > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -np.where(p > 0, p * np.log(p), 0.0).sum(0)
    return float(h.mean() / math.log(len(tpms)))


def mask_components(mask: np.ndarray) -> tuple[int, float]:
    """Number of 26-connected components of a mask and the fraction of its voxels in the largest one.

    Returns ``(0, 0.0)`` for an empty mask.
    """
    sel = np.asarray(mask) > 0
    _, sizes = connected_components(sel[bounding_box(sel)], full=True)
    if sizes.size == 0:
        return 0, 0.0
    return int(sizes.size), float(sizes.max() / sizes.sum())
