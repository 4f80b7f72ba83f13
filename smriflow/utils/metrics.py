"""Overlap metrics and the FreeSurfer ``aseg`` tissue-class mapping used to score segmentations."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

__all__ = ["FS_TISSUE_LABELS", "cjv", "cjv_from_stats", "dice", "fs_tissue_classes", "ncc"]

#: FreeSurfer aseg labels per tissue class (issue 3 and ``notes/anat-baseline.md``).
#: GM: cerebral cortex, cerebellar cortex, thalamus, caudate, putamen, pallidum, hippocampus, amygdala,
#: accumbens, ventral DC (left/right). WM: cerebral and cerebellar white matter, brainstem, WM
#: hypointensities, optic chiasm, corpus callosum. CSF: lateral, inferior-lateral, 3rd, 4th and 5th
#: ventricles and CSF (label 24). aseg labels only the ventricles' CSF (~10-20 ml), so CSF overlap is not
#: meaningful.
FS_TISSUE_LABELS: Mapping[str, tuple[int, ...]] = {
    "GM": (3, 42, 8, 47, 10, 49, 11, 50, 12, 51, 13, 52, 17, 53, 18, 54, 26, 58, 28, 60),
    "WM": (2, 41, 7, 46, 16, 77, 85, 251, 252, 253, 254, 255),
    "CSF": (4, 5, 14, 15, 43, 44, 24, 72),
}


def fs_tissue_classes(aseg: np.ndarray) -> dict[str, np.ndarray]:
    """Map a FreeSurfer ``aseg`` label volume to boolean GM/WM/CSF masks (:data:`FS_TISSUE_LABELS`).

    Parameters
    ----------
    aseg : numpy.ndarray
        Integer label volume (e.g. ``aseg.mgz`` data).

    Returns
    -------
    dict of str to numpy.ndarray
        ``{"GM": mask, "WM": mask, "CSF": mask}``, disjoint boolean arrays shaped like ``aseg``.
    """
    labels = np.asarray(aseg)
    if not np.issubdtype(labels.dtype, np.integer):
        rounded = np.rint(labels)
        if not np.array_equal(rounded, labels):
            raise ValueError("'aseg' must hold integer labels. Non-integer values were provided.")
        labels = rounded.astype(np.int32)
    return {name: np.isin(labels, codes) for name, codes in FS_TISSUE_LABELS.items()}


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice overlap ``2|A∩B| / (|A| + |B|)`` of two masks (nonzero = inside).

    Parameters
    ----------
    a, b : numpy.ndarray
        Arrays of the same shape.

    Returns
    -------
    float
        In [0, 1]; 1.0 when both masks are empty (they agree).
    """
    a = np.asarray(a) != 0
    b = np.asarray(b) != 0
    if a.shape != b.shape:
        raise ValueError(f"dice: the masks' shapes differ: {a.shape} and {b.shape}.")
    total = int(a.sum()) + int(b.sum())
    if total == 0:
        return 1.0
    return 2.0 * int(np.logical_and(a, b).sum()) / total


def cjv_from_stats(mu_wm: float, mu_gm: float, sigma_wm: float, sigma_gm: float) -> float:
    """Coefficient of joint variation ``(sigma_WM + sigma_GM) / |mu_WM - mu_GM|`` from tissue statistics.

    :func:`cjv` passes means and standard deviations; the IQM of :mod:`smriflow.qc.iqms` passes medians and
    MADs, as MRIQC does.
    """
    return float((sigma_wm + sigma_gm) / abs(mu_wm - mu_gm))


def cjv(image: np.ndarray, gm: np.ndarray, wm: np.ndarray) -> float:
    """Coefficient of joint variation ``(sd_GM + sd_WM) / |mean_WM - mean_GM|`` (lower: less bias/noise).

    Parameters
    ----------
    image : numpy.ndarray
        Intensities.
    gm, wm : numpy.ndarray
        Boolean masks of grey and white matter on the grid of ``image``.

    Returns
    -------
    float
    """
    image = np.asarray(image, dtype=np.float64)
    g, w = image[np.asarray(gm, dtype=bool)], image[np.asarray(wm, dtype=bool)]
    if g.size < 2 or w.size < 2:
        raise ValueError("cjv: the GM and WM masks need at least 2 voxels each.")
    return cjv_from_stats(w.mean(), g.mean(), w.std(), g.std())


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
