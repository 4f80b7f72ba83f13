"""Intensity statistics of a sample or an image: Otsu's threshold, 1-D k-means, local means."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

__all__ = ["kmeans_1d", "local_mean", "otsu"]


def otsu(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of a 1-D sample (256-bin histogram by default)."""
    hist, edges = np.histogram(values, bins=bins)
    centers = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist, dtype=np.float64)
    w1 = w0[-1] - w0
    s0 = np.cumsum(hist * centers)
    m0 = s0 / np.maximum(w0, 1)
    m1 = (s0[-1] - s0) / np.maximum(w1, 1)
    return float(centers[np.argmax(w0 * w1 * (m0 - m1) ** 2)])


def kmeans_1d(values: np.ndarray, k: int = 3, *, n_iter: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic 1-D k-means (Lloyd) started at evenly spaced percentiles.

    Parameters
    ----------
    values : numpy.ndarray
        Sample (any shape, flattened).
    k : int
        Number of clusters.
    n_iter : int
        Maximum iterations.

    Returns
    -------
    centers : numpy.ndarray
        Sorted cluster means (float64).
    labels : numpy.ndarray
        Index of the nearest center for each value.
    """
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size < k:
        raise ValueError(f"kmeans_1d: {values.size} values cannot make {k} clusters.")
    centers = np.percentile(values, np.linspace(100 / (2 * k), 100 - 100 / (2 * k), k))
    labels = np.zeros(values.size, dtype=np.intp)
    for _ in range(n_iter):
        edges = (centers[1:] + centers[:-1]) / 2
        labels = np.searchsorted(edges, values)
        sums = np.bincount(labels, weights=values, minlength=k)
        counts = np.bincount(labels, minlength=k)
        new = np.where(counts > 0, sums / np.maximum(counts, 1), centers)
        if np.allclose(new, centers):
            break
        centers = np.sort(new)
    return centers, labels


def local_mean(
    values: np.ndarray, select: np.ndarray, sigma_mm: float, zooms: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian-weighted mean of ``values`` over the voxels in ``select``, and the weight sum.

    Returns
    -------
    mean : numpy.ndarray
        float32; meaningless where ``weight`` is ~0.
    weight : numpy.ndarray
        float32 smoothed indicator of ``select``.
    """
    sigma = [sigma_mm / float(z) for z in zooms[:3]]
    sel = np.asarray(select, dtype=np.float32)
    num = ndimage.gaussian_filter(np.asarray(values, dtype=np.float32) * sel, sigma, mode="constant")
    den = ndimage.gaussian_filter(sel, sigma, mode="constant")
    return num / np.maximum(den, np.float32(1e-6)), den
