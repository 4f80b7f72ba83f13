"""Voxel-wise cortical thickness from GM/WM memberships (and, optionally, the T1w's GM/WM edge).

Method (:func:`cortical_thickness`)
-----------------------------------
A distance-based thickness in the spirit of CAT12's projection-based thickness (PBT; Dahnke, Yotter and
Gaser 2013), with the hidden sulci reconstructed from the medial axis of the white-matter distance, as PBT
and the "anatomically consistent enhancement" of CRUISE (Han et al. 2004) do:

1. **Boundaries with partial volume.** The inner (GM/WM) boundary is the isosurface ``WM = 0.5`` and the
   outer (GM/CSF) boundary the isosurface ``GM + WM = 0.5`` (CSF, or outside the brain, = 0.5) of the
   partial-volume memberships, both extracted with sub-voxel accuracy by marching cubes (Lorensen and Cline
   1987; scikit-image) and sampled at their vertices and triangle centroids. With the bias-corrected T1w
   (``t1w``), the inner surface's vertices then move along their normals to the T1w's GM/WM intensity edge,
   as FreeSurfer places its white surface (:mod:`smriflow.anat.thickness.boundaries`; Dale, Fischl and
   Sereno 1999), and the distances below are signed. The GM band is the voxels
   between them (``WM < 0.5 < GM + WM``), i.e. where GM is the largest class of a GM/WM or GM/CSF mixture.
2. **Distance to white matter.** For every voxel between the two surfaces (the GM band: ``1.5 < L < 2.5``)
   and its neighbours, the Euclidean distance to the nearest inner-surface sample (``scipy.spatial.cKDTree``)
   and that sample (its "feature point").
3. **Sulcal skeleton.** Where the opposite banks of a sulcus touch at 1 mm, no CSF separates them and the
   outer surface misses the sulcus. Its position is the medial axis of the WM distance inside the GM: two
   neighbouring voxels whose directions to their nearest WM points differ by more than ``skeleton_angle``
   (default 90°), with feature points at least ``min_sulcal_gap`` mm apart (banks closer than that are not
   taken as a sulcus, which keeps the axis out of the sulcal fundus), straddle it. The point of the segment
   joining them that is equidistant from both feature points is added to the outer boundary.
4. **Thickness.** At a GM voxel, thickness = distance to the inner surface + distance to the outer surface
   (isosurface samples and skeleton points): exact for parallel and for concentric (spherical or
   cylindrical) boundaries and, on the central surface, the closest-point thickness that FreeSurfer
   averages (Fischl and Dale 2000). Values are capped at ``max_thickness`` (5 mm, FreeSurfer's default
   maximum).

Deep grey matter (thalamus, basal ganglia: inside FreeSurfer's white surface) is counted as white matter and
cerebellum, brain stem, hippocampus and amygdala as outside, when masks of them are given
(:func:`cortex_context` makes them from a FreeSurfer-style atlas in the subject's space); the thickness map is
zero outside the GM band and outside ``cortex``.

References
----------
Dale AM, Fischl B, Sereno MI (1999). Cortical surface-based analysis. I. Segmentation and surface
reconstruction. NeuroImage 9:179-194.
Dahnke R, Yotter RA, Gaser C (2013). Cortical thickness and central surface estimation. NeuroImage 65:336-348.
Han X, Pham DL, Tosun D, Rettmann ME, Xu C, Prince JL (2004). CRUISE: cortical reconstruction using implicit
surface evolution. NeuroImage 23:997-1012.
Fischl B, Dale AM (2000). Measuring the thickness of the human cerebral cortex from magnetic resonance
images. PNAS 97:11050-11055.
Lorensen WE, Cline HE (1987). Marching cubes: a high resolution 3D surface construction algorithm.
SIGGRAPH 21:163-169.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from smriflow.anat.thickness.boundaries import edge_surface, isosurface, local_means, surface_samples

__all__ = ["cortical_thickness"]


def _check_memberships(gm: np.ndarray, wm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    gm = np.asarray(gm, dtype=np.float32)
    wm = np.asarray(wm, dtype=np.float32)
    if gm.ndim != 3 or gm.shape != wm.shape:
        raise ValueError(f"GM and WM memberships must be 3-D arrays of one shape; {gm.shape} and {wm.shape}.")
    return np.clip(np.nan_to_num(gm), 0, 1), np.clip(np.nan_to_num(wm), 0, 1)


def _surface_samples(level_map: np.ndarray, level: float, spacing: np.ndarray) -> np.ndarray:
    """Vertices and triangle centroids (mm, voxel-index frame) of an isosurface; empty when there is none."""
    return surface_samples(*isosurface(level_map, level, spacing))


def _skeleton_points(
    idx: np.ndarray,
    pts: np.ndarray,
    feat: np.ndarray,
    dist: np.ndarray,
    shape: tuple,
    angle: float,
    gap: float,
) -> np.ndarray:
    """Medial-axis points of the WM distance between 6-neighbours of ``idx`` (see the module docstring)."""
    lookup = np.full(shape, -1, dtype=np.int64)
    lookup[tuple(idx.T)] = np.arange(len(idx))
    unit = (pts - feat) / np.maximum(dist, 1e-6)[:, None]
    cos_max = np.cos(np.deg2rad(angle))
    found = []
    for axis in range(3):
        step = np.zeros(3, dtype=np.int64)
        step[axis] = 1
        other = idx + step
        inside = other[:, axis] < shape[axis]
        first = np.nonzero(inside)[0]
        second = lookup[tuple(other[inside].T)]
        keep = second >= 0
        first, second = first[keep], second[keep]
        a, b = feat[first], feat[second]
        cosine = np.einsum("ij,ij->i", unit[first], unit[second])
        sel = (cosine < cos_max) & (np.linalg.norm(a - b, axis=1) >= gap)
        first, second, a, b = first[sel], second[sel], a[sel], b[sel]
        p, e = pts[first], pts[second] - pts[first]
        # the point p + t e equidistant from a and b (on their bisector plane), kept within the segment
        denom = 2 * np.einsum("ij,ij->i", e, b - a)
        numer = (
            np.einsum("ij,ij->i", b, b) - np.einsum("ij,ij->i", a, a) - 2 * np.einsum("ij,ij->i", p, b - a)
        )
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(denom != 0, numer / denom, 0.5)
        found.append(p + np.clip(t, 0, 1)[:, None] * e)
    return np.concatenate(found) if found else np.empty((0, 3))


def cortical_thickness(
    gm: np.ndarray,
    wm: np.ndarray,
    zooms: Sequence[float] = (1.0, 1.0, 1.0),
    *,
    inner: np.ndarray | None = None,
    outer: np.ndarray | None = None,
    cortex: np.ndarray | None = None,
    max_thickness: float = 5.0,
    skeleton_angle: float = 90.0,
    min_sulcal_gap: float = 2.0,
    t1w: np.ndarray | None = None,
    refine: Sequence[str] = ("inner",),
    edge_sigma: float = 0.0,
    edge_smoothing: int = 10,
    edge_search: float = 1.5,
    workers: int = 1,
) -> np.ndarray:
    """Voxel-wise cortical thickness (mm) from GM and WM memberships (method in the module docstring).

    Parameters
    ----------
    gm, wm : numpy.ndarray
        GM and WM memberships (0-1) on one 3-D grid; the rest of each voxel is CSF or outside the brain.
    zooms : sequence of float
        Voxel size (mm) along the three axes.
    inner : numpy.ndarray of bool, optional
        Non-cortical tissue counted as white matter (deep grey matter, ventricles).
    outer : numpy.ndarray of bool, optional
        Non-cortical grey matter counted as outside the brain (cerebellum, brain stem, hippocampus).
    cortex : numpy.ndarray of bool, optional
        Where thickness is reported (default: the whole GM band).
    max_thickness : float
        Cap (mm) of the reported values.
    skeleton_angle : float
        Minimum angle (degrees) between the directions to white matter of two neighbouring voxels for a
        sulcal skeleton point between them.
    min_sulcal_gap : float
        Minimum distance (mm) between the two banks' white-matter points for a skeleton point.
    t1w : numpy.ndarray, optional
        The bias-corrected T1w on the same grid: the boundaries named in ``refine`` then move to its
        intensity edge, at most ``edge_search`` voxels away (:mod:`smriflow.anat.thickness.boundaries`),
        and a voxel's thickness is the sum of its signed distances to the boundaries (a voxel that a
        refined boundary leaves outside the band still gets the band's width).
    refine : sequence of str
        Which boundaries move to the intensity edge with ``t1w``: ``inner`` (default; GM/WM, as
        FreeSurfer's white surface) and/or ``outer`` (GM/CSF; see docs/thickness.md for why not by default).
    edge_sigma : float
        Scale (voxels) of the Gaussian under the intensity derivative (0: none).
    edge_smoothing : int
        Passes of neighbour averaging of the edge displacements over the surface mesh.
    edge_search : float
        Largest move (voxels) of a boundary vertex along its normal.
    workers : int
        Threads of the nearest-neighbour queries.

    Returns
    -------
    numpy.ndarray
        float32 thickness (mm), 0 outside the GM band (``WM < 0.5 < GM + WM``) and outside ``cortex``.
    """
    gm, wm = _check_memberships(gm, wm)
    spacing = np.asarray([float(z) for z in zooms[:3]])
    if spacing.shape != (3,) or np.any(spacing <= 0):
        raise ValueError(f"'zooms' must be three positive voxel sizes; {tuple(zooms)!r} was provided.")
    if max_thickness <= 0:
        raise ValueError(f"'max_thickness' must be positive; {max_thickness!r} was provided.")
    if inner is not None:
        inner = np.asarray(inner, dtype=bool)
        wm = np.where(inner, np.minimum(wm + gm, 1.0), wm)
        gm = np.where(inner, 0.0, gm)
    if outer is not None:
        gm = np.where(np.asarray(outer, dtype=bool), 0.0, gm)
    brain = (gm + wm).astype(np.float32)
    out = np.zeros(gm.shape, dtype=np.float32)
    band = (wm < 0.5) & (brain > 0.5)
    if cortex is not None:
        wanted = band & np.asarray(cortex, dtype=bool)
    else:
        wanted = band
    if not wanted.any():
        return out
    # work on the bounding box of the band (plus room for the boundaries around it)
    lo = np.maximum(np.argwhere(band).min(0) - 3, 0)
    hi = np.minimum(np.argwhere(band).max(0) + 4, gm.shape)
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
    wm, brain, band, wanted = wm[box], brain[box], band[box], wanted[box]
    inner_samples = _surface_samples(wm, 0.5, spacing)
    outer_samples = _surface_samples(brain, 0.5, spacing)
    if len(inner_samples) == 0 or len(outer_samples) == 0:
        return out
    inner_normals = outer_normals = None
    unknown = set(refine) - {"inner", "outer"}
    if unknown:
        raise ValueError(f"'refine' takes 'inner' and/or 'outer'; {sorted(unknown)!r} was provided.")
    if t1w is not None and refine:
        t1w = np.asarray(t1w, dtype=np.float32)
        if t1w.shape != gm.shape:
            raise ValueError(f"'t1w' {t1w.shape} and the memberships {gm.shape} must share one grid.")
        image = t1w[box]
        mean_gm, mean_wm = local_means(image, [brain - wm, wm], spacing)
        if edge_sigma > 0:
            image = ndimage.gaussian_filter(image, edge_sigma)
        fixed = None
        if inner is not None or outer is not None:
            # boundaries drawn by the atlas's masks (deep GM, hippocampus ...) are not intensity edges
            masks = [np.asarray(m, dtype=bool) for m in (inner, outer) if m is not None]
            fixed = ndimage.binary_dilation(np.logical_or.reduce(masks)[box], iterations=2)
        search = edge_search * float(spacing.min())
        if "inner" in refine:  # the fall from the local WM level to the local GM level
            inner_samples, inner_normals = edge_surface(
                wm, image, spacing, fixed, search, edge_smoothing, mean_gm, mean_wm
            )
        if "outer" in refine:  # the fall below the local GM level (outside the brain is not one tissue)
            outer_samples, outer_normals = edge_surface(
                brain, image, spacing, fixed, search, edge_smoothing, None, mean_gm
            )
    near = ndimage.binary_dilation(band) & (wm < 0.5)
    idx = np.argwhere(near)
    pts = idx * spacing
    dist_wm, nearest = cKDTree(inner_samples).query(pts, workers=workers)
    skeleton = _skeleton_points(
        idx, pts, inner_samples[nearest], dist_wm, band.shape, skeleton_angle, min_sulcal_gap
    )
    boundary = np.concatenate([outer_samples, skeleton])
    in_band = band[tuple(idx.T)] & wanted[tuple(idx.T)]
    dist_csf, nearest_out = cKDTree(boundary).query(pts[in_band], workers=workers)
    dist_wm, nearest = dist_wm[in_band], nearest[in_band]
    p = pts[in_band]
    if inner_normals is not None:
        # signed: negative for a voxel on the far side of a refined boundary (inside WM; outside the brain)
        side = np.einsum("ij,ij->i", p - inner_samples[nearest], inner_normals[nearest])
        dist_wm = np.where(side < 0, -dist_wm, dist_wm)
    if outer_normals is not None:
        on_surface = nearest_out < len(outer_samples)
        k = np.minimum(nearest_out, len(outer_samples) - 1)
        side = np.einsum("ij,ij->i", p - outer_samples[k], outer_normals[k])
        dist_csf = np.where(on_surface & (side > 0), -dist_csf, dist_csf)
    values = np.clip(dist_wm + dist_csf, 0, max_thickness).astype(np.float32)
    crop = np.zeros(band.shape, dtype=np.float32)
    crop[tuple(idx[in_band].T)] = values
    out[box] = crop
    return out
