"""Image-quality metrics (IQMs) of a T1w image and processing-quality metrics of its preprocessing.

The IQMs follow MRIQC's definitions (Esteban et al. 2017, PLoS ONE 12(9):e0184661; MRIQC's
``mriqc/qc/anatomical.py`` and its ``StructuralQC`` interface); the processing metrics (volumes,
registration similarity, segmentation entropy, mask connectivity) are smriflow's own. Every formula,
the image it is computed on and its difference from MRIQC, if any, are listed in ``docs/iqms.md``.

Which image each metric uses (as MRIQC does, unless noted):

* **conformed raw T1w** (RAS, not bias-corrected): the head mask, the zero-filled frame and ``fwhm_*``.
* **N4-corrected T1w, harmonized** (multiplied so that the median of the eroded ``WM > 0.9`` region is
  1000, negative values set to 0): ``summary_*``, ``snr*``, ``cnr``, ``cjv``, ``efc``, ``fber``,
  ``wm2max``.
* **N4 bias field**: ``inu_*`` (inside the tissue labels).
* **tissue probability maps** (native): ``icvs_*``, ``rpve_*``, volumes, ``seg_entropy``; warped to the
  template: ``tpm_overlap_*`` and ``reg_dice``.
* **T1w in template space**: ``reg_ncc``.

Pure numpy/scipy/nibabel (and statsmodels' MAD); no nipype.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import nibabel as nb
import numpy as np
from scipy import ndimage

from smriflow.data.templates import DEFAULT_TEMPLATE
from smriflow.utils.grids import check_same_grid, same_grid
from smriflow.utils.metrics import cjv_from_stats
from smriflow.utils.morphology import bounding_box, connected_components
from smriflow.utils.niftiio import load_image

__all__ = [
    "DIETRICH_FACTOR",
    "TISSUES",
    "cnr",
    "compute_iqms",
    "efc",
    "fber",
    "frame_mask",
    "fuzzy_jaccard",
    "fwhm_classic",
    "harmonize",
    "iqm_head_mask",
    "mask_components",
    "ncc",
    "rpve",
    "segmentation_entropy",
    "snr",
    "snr_dietrich",
    "summary_stats",
    "volume_fractions",
    "wm2max",
    "read_iqms",
    "write_iqms",
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
    data = np.nan_to_num(np.asarray(data, dtype=np.float64))
    median = float(np.median(data[region]))
    if median <= 0:
        raise ValueError(f"harmonize: the white-matter median is {median:g}; expected a positive value.")
    out = data * (1000.0 / median)
    out[out < 0] = 0
    return out


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


def wm2max(data: np.ndarray, mu_wm: float) -> float:
    """White-matter-to-maximum ratio ``median_WM / P99.95(all voxels)``."""
    return float(mu_wm / np.percentile(np.asarray(data).reshape(-1), 99.95))


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
def ncc(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Normalized cross-correlation (Pearson's r) of two images, inside ``mask`` when given."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"ncc: the images' shapes differ: {a.shape} and {b.shape}.")
    if mask is not None:
        sel = np.asarray(mask) > 0
        a, b = a[sel], b[sel]
    a = a - a.mean()
    b = b - b.mean()
    den = math.sqrt(float((a * a).sum()) * float((b * b).sum()))
    return float((a * b).sum() / den) if den > 0 else 0.0


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


# -- all of them -----------------------------------------------------------------------------------------
def _data(img: nb.spatialimages.SpatialImage) -> np.ndarray:
    return np.asarray(img.dataobj, dtype=np.float32)


def _template_on(grid: Any, template: str, suffix: str, label: str | None = None) -> np.ndarray:
    """Template image (``desc-brain`` T1w or mask, or a probseg) on the grid of ``grid``."""
    from smriflow.data.templates import get_template

    zoom = float(np.mean(grid.header.get_zooms()[:3]))
    resolution = 1 if zoom < 1.5 else 2
    path = get_template(template, resolution=resolution, suffix=suffix, label=label)
    img = nb.load(str(path))
    if same_grid(img, grid):
        return _data(img)
    from nilearn.image import resample_to_img

    order = "nearest" if suffix == "mask" else "continuous"
    resampled = resample_to_img(img, grid, interpolation=order, force_resample=True, copy_header=True)
    return _data(resampled)


#: The metrics of the harmonized N4-corrected image (one group: they need its white-matter median).
INTENSITY_IQMS: tuple[str, ...] = (
    *(
        f"summary_{region}_{key}"
        for region in ("bg", "csf", "gm", "wm")
        for key in ("mean", "median", "stdv", "mad", "k", "p05", "p95", "n")
    ),
    *(f"{kind}_{name}" for kind in ("snr", "snrd") for name in ("csf", "wm", "gm")),
    "snr_total",
    "snrd_total",
    "cnr",
    "cjv",
    "fber",
    "efc",
    "wm2max",
)
FWHM_IQMS = ("fwhm_x", "fwhm_y", "fwhm_z", "fwhm_avg")


def _guarded(out: dict[str, float], notes: dict[str, str], names: Sequence[str], compute: Any) -> None:
    """Put ``compute()``'s metrics in ``out``; when it fails arithmetically, NaN for ``names`` and a note."""
    try:
        values = compute()
    except (ArithmeticError, ValueError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        for name in names:
            out[name] = math.nan
            notes[name] = f"undefined on this input: {type(exc).__name__}: {reason}"[:200]
        return
    out.update(values)


def _intensity_iqms(
    out: dict[str, float],
    notes: dict[str, str],
    preproc: np.ndarray,
    pvms: Mapping[str, np.ndarray],
    head: np.ndarray,
    frame: np.ndarray,
    air: np.ndarray,
    *,
    erode: bool,
) -> None:
    """The metrics of :data:`INTENSITY_IQMS`, each NaN with a note when undefined on this image."""
    computed: dict[str, Any] = {}

    def prepare() -> dict[str, float]:
        computed["data"] = harmonize(preproc, pvms["wm"])
        regions = {"bg": air.astype(np.float32), "csf": pvms["csf"], "gm": pvms["gm"], "wm": pvms["wm"]}
        computed["stats"] = summary_stats(computed["data"], regions, erode=erode)
        return {
            f"summary_{region}_{key}": value
            for region, values in computed["stats"].items()
            for key, value in values.items()
        }

    _guarded(out, notes, [n for n in INTENSITY_IQMS if n.startswith("summary_")], prepare)
    if "stats" not in computed:
        _guarded(out, notes, [n for n in INTENSITY_IQMS if not n.startswith("summary_")], prepare)
        return
    data, stats = computed["data"], computed["stats"]
    wm, gm, bg = stats["wm"], stats["gm"], stats["bg"]
    for name in TISSUES:
        st = stats[name]
        _guarded(
            out,
            notes,
            [f"snr_{name}"],
            lambda st=st, name=name: {f"snr_{name}": snr(st["median"], st["stdv"], st["n"])},
        )
        _guarded(
            out,
            notes,
            [f"snrd_{name}"],
            lambda st=st, name=name: {f"snrd_{name}": snr_dietrich(st["median"], bg["mad"], bg["stdv"])},
        )
    out["snr_total"] = float(np.mean([out[f"snr_{name}"] for name in ("csf", "wm", "gm")]))
    out["snrd_total"] = float(np.mean([out[f"snrd_{name}"] for name in ("csf", "wm", "gm")]))
    scalars = {
        "cnr": lambda: cnr(wm["median"], gm["median"], bg["stdv"], wm["stdv"], gm["stdv"]),
        "cjv": lambda: cjv_from_stats(wm["median"], gm["median"], wm["mad"], gm["mad"]),  # MRIQC: medians
        "fber": lambda: fber(data, head, frame),
        "efc": lambda: efc(data, frame),
        "wm2max": lambda: wm2max(data, wm["median"]),
    }
    for name, compute in scalars.items():
        _guarded(out, notes, [name], lambda name=name, compute=compute: {name: compute()})


def _inu(bias: np.ndarray, dseg: np.ndarray) -> dict[str, float]:
    values = bias[dseg > 0].astype(np.float64)
    if values.size == 0:
        raise ValueError("no labelled tissue voxel")
    p05, p95 = np.percentile(values, [5, 95])
    return {"inu_range": float(abs(p95 - p05)), "inu_med": float(np.median(values))}


def _fwhm(raw: np.ndarray, brain: np.ndarray) -> dict[str, float]:
    fx, fy, fz = fwhm_classic(raw, brain)
    return {"fwhm_x": fx, "fwhm_y": fy, "fwhm_z": fz, "fwhm_avg": float(np.mean([fx, fy, fz]))}


def _fractions(pvms: Mapping[str, np.ndarray]) -> dict[str, float]:
    out = {f"icvs_{name}": value for name, value in volume_fractions(pvms).items()}
    out.update({f"rpve_{name}": value for name, value in rpve(pvms).items()})
    return out


def compute_iqms(
    t1w: str | os.PathLike,
    t1w_preproc: str | os.PathLike,
    bias: str | os.PathLike,
    mask: str | os.PathLike,
    dseg: str | os.PathLike,
    tpms: Sequence[str | os.PathLike],
    std_t1w: str | os.PathLike,
    std_tpms: Sequence[str | os.PathLike],
    template: str = DEFAULT_TEMPLATE,
    notes: dict[str, str] | None = None,
) -> dict[str, float]:
    """Compute every IQM and processing-quality metric of one T1w (see ``docs/iqms.md``).

    Parameters
    ----------
    t1w : path
        Conformed raw T1w (RAS; ``ConformImage.out_file``).
    t1w_preproc : path
        N4-corrected T1w on the same grid.
    bias : path
        N4 bias field on the same grid.
    mask : path
        Brain mask.
    dseg : path
        Tissue labels (1 GM, 2 WM, 3 CSF).
    tpms : sequence of path
        GM, WM and CSF probability maps, in this order.
    std_t1w : path
        T1w resampled into the template.
    std_tpms : sequence of path
        GM, WM and CSF probability maps resampled into the template.
    template : str
        Template of the normalization (for its T1w, brain mask and probability maps).
    notes : dict or None
        Filled with metric name → one-line reason for every metric that is undefined on this input
        (e.g. a zero spread, a non-positive white-matter median of a z-scored image): such a metric is NaN
        instead of an exception that would fail the subject.

    Returns
    -------
    dict
        Metric name → float (NaN where undefined), sorted by name.
    """
    if len(tpms) != 3 or len(std_tpms) != 3:
        raise ValueError(
            f"compute_iqms: 'tpms' and 'std_tpms' must list 3 files (GM, WM, CSF); "
            f"got {len(tpms)} and {len(std_tpms)}."
        )
    raw_img = load_image(t1w)
    zooms = tuple(float(z) for z in raw_img.header.get_zooms()[:3])
    raw = _data(raw_img)
    images = {"t1w_preproc": t1w_preproc, "bias": bias, "mask": mask, "dseg": dseg}
    loaded = {key: load_image(path) for key, path in images.items()}
    loaded.update({f"tpm_{name}": load_image(path) for name, path in zip(TISSUES, tpms, strict=True)})
    for key, img in loaded.items():
        check_same_grid(
            raw_img,
            img,
            f"compute_iqms: '{key}' is not on the grid of the T1w ({img.shape[:3]} vs {raw_img.shape[:3]}).",
        )
    brain = _data(loaded["mask"]) > 0
    dseg_data = np.rint(_data(loaded["dseg"])).astype(np.int16)
    pvms = {name: np.clip(_data(loaded[f"tpm_{name}"]), 0.0, 1.0) for name in TISSUES}
    if brain.sum() == 0:
        raise ValueError(f"compute_iqms: the brain mask {mask} is empty.")

    head = iqm_head_mask(raw, zooms, brain)
    frame = frame_mask(raw) & ~head
    air = ~head & ~frame
    out: dict[str, float] = {}
    notes = {} if notes is None else notes
    erode = all(z < 1.9 for z in zooms)
    _intensity_iqms(out, notes, _data(loaded["t1w_preproc"]), pvms, head, frame, air, erode=erode)

    _guarded(out, notes, ("inu_range", "inu_med"), lambda: _inu(_data(loaded["bias"]), dseg_data))
    _guarded(out, notes, FWHM_IQMS, lambda: _fwhm(raw, brain))
    _guarded(out, notes, [f"{k}_{n}" for k in ("icvs", "rpve") for n in TISSUES], lambda: _fractions(pvms))

    # processing quality
    from smriflow.data.atlases import tissue_volumes

    in_memory = {  # the arrays already read: nibabel would decompress the files again
        name: nb.Nifti1Image(pvms[name], raw_img.affine, loaded[f"tpm_{name}"].header) for name in TISSUES
    }
    mask_img = nb.Nifti1Image(brain.astype(np.uint8), raw_img.affine, loaded["mask"].header)
    volumes = tissue_volumes(*(in_memory[name] for name in TISSUES), mask_img)
    out["volume_brain_cm3"] = volumes["brain_volume_mm3"] / 1000.0
    out["volume_tiv_cm3"] = volumes["tiv_mm3"] / 1000.0
    out["volume_mask_cm3"] = volumes["mask_volume_mm3"] / 1000.0
    n_components, largest = mask_components(brain)
    out["mask_n_components"] = float(n_components)
    out["mask_lcc_fraction"] = largest
    _guarded(
        out,
        notes,
        ("seg_entropy",),
        lambda: {"seg_entropy": segmentation_entropy([pvms[name] for name in TISSUES], brain)},
    )

    std_img = load_image(std_t1w)
    std_tpm_imgs = [load_image(path) for path in std_tpms]
    for name, img in zip(TISSUES, std_tpm_imgs, strict=True):
        check_same_grid(
            img,
            std_img,
            f"compute_iqms: the {name.upper()} map in template space is not on the grid of 'std_t1w'.",
        )
    tpl_mask = _template_on(std_img, template, "mask") > 0
    tpl_t1w = _template_on(std_img, template, "T1w")
    out["reg_ncc"] = ncc(_data(std_img), tpl_t1w, tpl_mask)
    std_pvms = [np.clip(_data(img), 0.0, 1.0) for img in std_tpm_imgs]
    from smriflow.utils.metrics import dice

    out["reg_dice"] = dice(np.sum(std_pvms, axis=0) >= 0.5, tpl_mask)
    for name, std_pvm in zip(TISSUES, std_pvms, strict=True):
        tpl = _template_on(std_img, template, "probseg", label=name.upper())
        out[f"tpm_overlap_{name}"] = fuzzy_jaccard(std_pvm, np.clip(tpl, 0.0, 1.0))
    for key, value in out.items():
        if not math.isfinite(float(value)) and key not in notes:
            notes[key] = "undefined on this input (not a finite number)"
            out[key] = math.nan
    return {key: float(out[key]) for key in sorted(out)}


def write_iqms(
    iqms: Mapping[str, float], path: str | os.PathLike, notes: Mapping[str, str] | None = None
) -> str:
    """Write the metrics as a JSON object (sorted keys, floats, 2-space indent); return the path.

    JSON has no NaN: an undefined metric is written as ``null``, and the object then has a ``notes`` key
    (metric name → why it is undefined, from :func:`compute_iqms`'s ``notes``). Readers take ``null`` as
    NaN and skip ``notes`` (:func:`read_iqms`).
    """
    values: dict[str, Any] = {
        key: (float(iqms[key]) if math.isfinite(float(iqms[key])) else None) for key in sorted(iqms)
    }
    undefined = sorted(key for key, value in values.items() if value is None)
    if undefined:
        notes = dict(notes or {})
        values["notes"] = {key: notes.get(key, "undefined on this input") for key in undefined}
    text = json.dumps(values, indent=2, allow_nan=False) + "\n"
    Path(path).write_text(text, encoding="utf-8")
    return str(path)


def read_iqms(path: str | os.PathLike) -> tuple[dict[str, float], dict[str, str]]:
    """Read a file of :func:`write_iqms`: (metric name → float, NaN for ``null``; notes).

    Raises
    ------
    ValueError
        One line naming the file when it is not such a JSON object.
    """
    try:
        values = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: cannot read the IQMs ({exc})") from None
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected a JSON object of numbers (IQM name -> value)")
    notes = values.pop("notes", {})
    if not isinstance(notes, dict) or not all(
        value is None or (isinstance(value, int | float) and not isinstance(value, bool))
        for value in values.values()
    ):
        raise ValueError(f"{path}: expected a JSON object of numbers (IQM name -> value)")
    return (
        {str(k): math.nan if v is None else float(v) for k, v in values.items()},
        {str(k): str(v) for k, v in notes.items()},
    )
