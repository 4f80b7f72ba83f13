"""Tissue boundaries of the cortex placed on the T1w's intensity edges (sub-voxel), for the thickness.

The memberships of a segmentation place the GM/WM and GM/CSF boundaries where the classes' posteriors cross,
which depends on the priors, the spatial regularisation and the classes' variances, not only on the image.
FreeSurfer places its white and pial surfaces on the image itself: every vertex moves along its normal to
the location of the largest intensity gradient within a small search range (Dale, Fischl and Sereno 1999,
*NeuroImage* 9:179-194; Fischl and Dale 2000, *PNAS* 97:11050-11055; ``MRIScomputeBorderValues`` of
``mris_make_surfaces``). :func:`edge_refine` does that for the isosurface samples of a membership map:

1. the direction of each sample is the (downhill) gradient of the smoothed membership map, i.e. from the
   inner tissue (WM; brain) to the outer one (GM; CSF);
2. the T1w is sampled along it every ``step`` mm over ``± (search + 1 voxel)`` (trilinear), and its fall
   per mm taken between consecutive samples (T1w: WM > GM > CSF, intensity falls outwards);
3. the falls are counted only where the profile lies between the local means of the two tissues
   (:func:`local_means`; FreeSurfer bounds its search by ``border_low``/``border_hi`` likewise), so that
   another edge (for the GM/WM boundary: the GM/CSF edge, stronger in a T1w) is not taken;
4. the sample moves to the edge: the centroid of the fall over the run of samples around the steepest fall
   where the fall exceeds half the steepest (``peak_fraction``), when that steepest fall lies inside the
   range; otherwise it stays where the membership put it. The centroid, not the steepest point itself:
   under linear interpolation a partial-volume step falls over the voxel interval or two around it, and
   the centroid of that whole fall is exactly the step's position. Half the peak, not the whole falling
   run: the step's own fall is concentrated there (and, blurred, symmetric about it), whereas the whole
   run also takes in a slow intensity gradient inside a tissue (superficial WM is darker than deep WM),
   which pulls the centroid off the edge into that tissue. The price: where a step falls unevenly over
   two voxel intervals the half-maximum run may hold only one, so a single sample can be off by up to a
   third of a voxel, with no bias over the edge's sub-voxel phase, which varies along the surface and is
   averaged by step 5;
5. the displacements are smoothed over the surface mesh (:func:`smooth_on_mesh`), as FreeSurfer averages
   its target values over neighbouring vertices, so that image noise moves no vertex alone.

Only the intensity *edge* is used, never a target intensity level: a smooth multiplicative bias or a global
rescaling moves no edge; a non-linear change of contrast changes the shape of the fall, and with it the
centroid, by a few hundredths of a mm (``bench/thickness.py --variants``).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

PEAK_FRACTION = 0.5
"""The part of the fall that locates an edge: where it exceeds half its steepest (see :func:`edge_refine`)."""

__all__ = [
    "PEAK_FRACTION",
    "edge_refine",
    "edge_surface",
    "isosurface",
    "local_means",
    "outward_normals",
    "smooth_on_mesh",
    "surface_samples",
]


def local_means(
    image: np.ndarray, memberships: list[np.ndarray], spacing: np.ndarray, fwhm: float = 8.0
) -> list[np.ndarray]:
    """Local mean intensity of each tissue: a Gaussian-weighted mean over its nearly pure voxels.

    Parameters
    ----------
    image : numpy.ndarray
        The T1w.
    memberships : list of numpy.ndarray
        One membership map per tissue (0-1); voxels above 0.9 count.
    spacing : numpy.ndarray
        Voxel size (mm).
    fwhm : float
        Width (mm) of the neighbourhood, wide enough to hold pure voxels of every tissue next to a
        boundary and narrow enough to follow what remains of the bias field.

    Returns
    -------
    list of numpy.ndarray
        float32 maps, one per tissue (the global mean of the tissue where it has no pure voxel nearby).
    """
    sigma = fwhm / 2.3548 / np.asarray(spacing, dtype=float)
    out = []
    for m in memberships:
        pure = (np.asarray(m) > 0.9).astype(np.float32)
        weight = ndimage.gaussian_filter(pure, sigma)
        total = ndimage.gaussian_filter(pure * image, sigma)
        fallback = float(image[pure > 0].mean()) if pure.any() else float(image.mean())
        out.append(np.where(weight > 1e-3, total / np.maximum(weight, 1e-3), fallback).astype(np.float32))
    return out


def outward_normals(level_map: np.ndarray, points: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """Unit vectors (mm frame) down the gradient of ``level_map`` (smoothed, σ 1 voxel) at ``points``.

    Parameters
    ----------
    level_map : numpy.ndarray
        A membership map, high inside the tissue (e.g. WM, or GM + WM).
    points : numpy.ndarray
        ``(n, 3)`` positions in mm (voxel index × ``spacing``).
    spacing : numpy.ndarray
        Voxel size (mm) along the three axes.

    Returns
    -------
    numpy.ndarray
        ``(n, 3)`` float64 unit vectors pointing out of the tissue (zero where the gradient vanishes).
    """
    smooth = ndimage.gaussian_filter(np.asarray(level_map, dtype=np.float32), 1.0)
    coords = (points / spacing).T
    grad = np.empty((len(points), 3))
    for axis in range(3):
        component = np.gradient(smooth, axis=axis) / spacing[axis]
        grad[:, axis] = ndimage.map_coordinates(component, coords, order=1, mode="nearest")
        del component
    norm = np.linalg.norm(grad, axis=1)
    return np.where(norm[:, None] > 1e-6, -grad / np.maximum(norm, 1e-6)[:, None], 0.0)


def edge_refine(
    points: np.ndarray,
    normals: np.ndarray,
    image: np.ndarray,
    spacing: np.ndarray,
    *,
    search: float = 1.0,
    step: float = 0.1,
    bounds: tuple[np.ndarray, np.ndarray] | None = None,
    movable: np.ndarray | None = None,
    peak_fraction: float = PEAK_FRACTION,
) -> np.ndarray:
    """Displacements along their normals that bring boundary samples to the T1w's steepest intensity fall.

    Parameters
    ----------
    points : numpy.ndarray
        ``(n, 3)`` boundary samples in mm (voxel index × ``spacing``).
    normals : numpy.ndarray
        ``(n, 3)`` unit vectors from the brighter tissue to the darker one (:func:`outward_normals`).
    image : numpy.ndarray
        The bias-corrected T1w on the grid of the memberships (WM > GM > CSF).
    spacing : numpy.ndarray
        Voxel size (mm).
    search : float
        Largest move (mm) along the normal; the profile is sampled one voxel farther, so that an edge at
        the end of the range is seen whole.
    step : float
        Sampling step (mm) along the normal.
    bounds : tuple of numpy.ndarray, optional
        ``(low, high)``, ``(n,)`` each: the intensities between which the edge lies (the local means of
        the darker and the brighter tissue, :func:`local_means`); a fall where the profile is outside them
        belongs to another edge (for the GM/WM boundary: the GM/CSF edge, stronger in a T1w) and is not
        counted, as FreeSurfer bounds its search by ``border_low`` and ``border_hi``.
    movable : numpy.ndarray of bool, optional
        ``(n,)``: samples that may move (e.g. not on a boundary drawn by an atlas mask rather than by tissue).
    peak_fraction : float
        The edge is the centroid of the run of samples around the steepest fall where the fall exceeds this
        fraction of the steepest (0.5: the fall's half maximum; 0: the whole falling lobe).

    Returns
    -------
    numpy.ndarray
        ``(n,)`` signed displacements (mm, positive along the normal; 0 where no edge was found): the
        refined positions are ``points + shift[:, None] * normals`` once smoothed (:func:`smooth_on_mesh`).
    """
    if not 0.0 <= peak_fraction < 1.0:
        raise ValueError(f"'peak_fraction' must be in [0, 1). {peak_fraction!r} was provided.")
    points = np.asarray(points, dtype=np.float64)
    if len(points) == 0:
        return np.zeros(0)
    image = np.asarray(image, dtype=np.float32)
    reach = search + float(np.max(spacing))  # sample a voxel beyond the farthest move: the whole edge
    offsets = np.arange(-reach, reach + step / 2, step)
    shift = np.zeros(len(points))
    chunk = 50_000  # samples per pass: ~0.1 GB of profiles
    for start in range(0, len(points), chunk):
        p = points[start : start + chunk]
        n = normals[start : start + chunk]
        pos = p[:, None, :] + offsets[None, :, None] * n[:, None, :]
        coords = (pos / spacing).reshape(-1, 3).T
        profile = ndimage.map_coordinates(image, coords, order=1, mode="nearest").reshape(len(p), -1)
        fall = -np.diff(profile, axis=1) / step  # intensity fall per mm, between consecutive samples
        if bounds is not None:
            mid = 0.5 * (profile[:, 1:] + profile[:, :-1])
            low = bounds[0][start : start + chunk, None]
            high = bounds[1][start : start + chunk, None]
            fall = np.where((mid > low) & (mid < high), fall, 0.0)
        centres = 0.5 * (offsets[1:] + offsets[:-1])
        k = np.argmax(fall, axis=1)
        rows = np.arange(len(p))
        found = (k > 0) & (k < fall.shape[1] - 1) & (fall[rows, k] > 0)
        # the edge: the centroid of the fall around the steepest fall, over the run where it exceeds
        # peak_fraction of the steepest (the steepest point alone is only known to within a voxel)
        cols = np.arange(fall.shape[1])[None, :]
        flat = fall <= np.maximum(peak_fraction * fall[rows, k], 0.0)[:, None]
        left = np.where(flat & (cols < k[:, None]), cols, -1).max(axis=1)
        right = np.where(flat & (cols > k[:, None]), cols, fall.shape[1]).min(axis=1)
        weight = np.where((cols > left[:, None]) & (cols < right[:, None]), fall, 0.0)
        total = weight.sum(axis=1)
        s = (weight * centres[None, :]).sum(axis=1) / np.maximum(total, 1e-12)
        shift[start : start + chunk] = np.where(found & (total > 0), np.clip(s, -search, search), 0.0)
    shift[~np.any(normals != 0, axis=1)] = 0.0
    if movable is not None:
        shift[~np.asarray(movable, dtype=bool)] = 0.0
    return shift


def smooth_on_mesh(values: np.ndarray, faces: np.ndarray, iterations: int) -> np.ndarray:
    """``iterations`` passes of averaging each vertex's value with its mesh neighbours' (and its own).

    The scalar analogue of FreeSurfer's averaging of its target values over the surface (``-nsmooth`` /
    ``vavgs``): displacements found independently at every vertex are noisy, and the distance to a jittered
    surface is biased low (the nearest of many jittered samples is nearer than the surface), so the
    displacement field is smoothed before it moves the surface.
    """
    from scipy import sparse

    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    if n == 0 or iterations <= 0:
        return values.copy()
    i = np.concatenate([faces[:, 0], faces[:, 1], faces[:, 2], faces[:, 1], faces[:, 2], faces[:, 0]])
    j = np.concatenate([faces[:, 1], faces[:, 2], faces[:, 0], faces[:, 0], faces[:, 1], faces[:, 2]])
    adjacency = sparse.coo_matrix((np.ones(len(i)), (i, j)), shape=(n, n)).tocsr()
    adjacency.data[:] = 1.0  # duplicate edges (shared by two faces) count once
    adjacency = adjacency + sparse.identity(n, format="csr")
    degree = np.asarray(adjacency.sum(axis=1)).ravel()
    for _ in range(iterations):
        values = adjacency @ values / degree
    return values


def isosurface(level_map: np.ndarray, level: float, spacing: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (mm, voxel-index frame) and faces of an isosurface; empty when there is none."""
    from skimage.measure import marching_cubes

    if not level_map.min() < level < level_map.max():
        return np.empty((0, 3)), np.empty((0, 3), dtype=np.int64)
    verts, faces, _, _ = marching_cubes(level_map, level, spacing=tuple(spacing))
    return verts.astype(np.float64), faces


def surface_samples(verts: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """A surface's vertices and triangle centroids."""
    return np.concatenate([verts, verts[faces].mean(axis=1)])


def edge_surface(
    level_map: np.ndarray,
    t1w: np.ndarray,
    spacing: np.ndarray,
    fixed: np.ndarray | None,
    search: float,
    iterations: int,
    low: np.ndarray | None,
    high: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Samples of the ``level_map = 0.5`` surface moved to the T1w's intensity edge, and their normals.

    Parameters
    ----------
    level_map : numpy.ndarray
        Membership map high inside the tissue (WM for the GM/WM boundary, GM + WM for the pial one).
    t1w : numpy.ndarray
        The bias-corrected T1w on the same grid.
    spacing : numpy.ndarray
        Voxel size (mm).
    fixed : numpy.ndarray of bool or None
        Voxels whose boundary does not move (drawn by an atlas mask, not by tissue).
    search : float
        Largest move (mm).
    iterations : int
        Passes of :func:`smooth_on_mesh` over the moves.
    low, high : numpy.ndarray
        Local means of the darker and the brighter tissue (``low`` None: no lower bound).

    Returns
    -------
    samples, normals : numpy.ndarray
        ``(m, 3)`` the moved vertices and triangle centroids (mm), and their outward unit normals.
    """
    verts, faces = isosurface(level_map, 0.5, spacing)
    normals = outward_normals(level_map, verts, spacing)
    movable = None
    if fixed is not None:
        voxel = np.clip(np.rint(verts / spacing).astype(np.int64), 0, np.array(fixed.shape) - 1)
        movable = ~fixed[tuple(voxel.T)]
    coords = (verts / spacing).T
    hi = ndimage.map_coordinates(high, coords, order=1, mode="nearest")
    lo = np.full(len(verts), -np.inf) if low is None else ndimage.map_coordinates(low, coords, order=1)
    shift = edge_refine(verts, normals, t1w, spacing, search=search, bounds=(lo, hi), movable=movable)
    shift = smooth_on_mesh(shift, faces, iterations)
    moved = verts + shift[:, None] * normals
    centroid_normals = normals[faces].sum(axis=1)
    centroid_normals /= np.maximum(np.linalg.norm(centroid_normals, axis=1), 1e-6)[:, None]
    return surface_samples(moved, faces), np.concatenate([normals, centroid_normals])
