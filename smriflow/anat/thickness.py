"""Voxel-wise cortical thickness from GM/WM memberships, and regional tables in FreeSurfer's layout.

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
   as FreeSurfer places its white surface (:mod:`smriflow.anat.cortical_boundaries`; Dale, Fischl and
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

Regions (:func:`regional_thickness`)
------------------------------------
Regions are the cortical GM of the atlas in the subject's space: every voxel of the thickness map (GM band,
non-zero thickness) takes the label of the nearest cortical or non-cortical grey-matter structure of the
warped atlas (nearest-neighbour, Euclidean), so that a registration error of a few mm neither drops cortex
that falls on the atlas's WM or CSF nor counts cortex that sits on the atlas's hippocampus as a cortical
region; voxels whose nearest structure is not cortical are not cortex. A region's thickness is the plain
mean over its voxels (partial-volume voxels count where they are in the GM band). The map is made once,
with one atlas (Desikan-Killiany); the tables of another cortical atlas (Destrieux) relabel the same voxels
with its nearest cortical label of the same hemisphere (:func:`relabel_cortex`), so every table of a subject
covers the same cortex and gives the same ``MeanThickness``, as FreeSurfer's do.

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

import re
from collections.abc import Sequence
from pathlib import Path

import nibabel as nb
import numpy as np
import pandas as pd
from scipy import ndimage
from scipy.spatial import cKDTree

from smriflow.anat.cortical_boundaries import edge_surface, isosurface, local_means, surface_samples

__all__ = [
    "FS_PARCELLATIONS",
    "cortex_context",
    "cortex_hemisphere",
    "cortical_thickness",
    "regional_thickness",
    "relabel_cortex",
    "subject_thickness",
    "thickness_image",
]

#: smriflow atlas → FreeSurfer parcellation name (``aparcstats2table --parc``) of its cortical labels.
FS_PARCELLATIONS = {"desikan_killiany": "aparc", "destrieux": "aparc.a2009s"}

#: Non-cortical grey matter (and ventricles) inside FreeSurfer's white surface: counted as white matter.
INNER_STRUCTURES = (
    "Thalamus",
    "Thalamus-Proper",
    "Caudate",
    "Putamen",
    "Pallidum",
    "Accumbens-area",
    "VentralDC",
    "Lateral-Ventricle",
    "Inf-Lat-Vent",
    "choroid-plexus",
)
#: Non-cortical grey matter outside the cortical sheet: counted as outside (like CSF).
OUTER_STRUCTURES = ("Cerebellum-Cortex", "Brain-Stem", "Hippocampus", "Amygdala")
_CORTEX = re.compile(r"^ctx[-_](lh|rh)[-_](.+)$")
_NOT_REGIONS = {"unknown", "Unknown", "Medial_wall", "corpuscallosum"}


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
        intensity edge, at most ``edge_search`` voxels away (:mod:`smriflow.anat.cortical_boundaries`),
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


def _structure_kind(name: str) -> str:
    """``cortex``, ``inner``, ``outer`` or ``other`` for an atlas label name."""
    match = _CORTEX.match(name)
    if match:
        return "other" if match.group(2) in _NOT_REGIONS else "cortex"
    base = re.sub(r"^(Left|Right)-", "", name)
    if base in INNER_STRUCTURES:
        return "inner"
    if base in OUTER_STRUCTURES:
        return "outer"
    return "other"


def cortex_context(
    atlas: np.ndarray, labels: pd.DataFrame, gm: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cortical region, inner and outer masks of the grey matter from a FreeSurfer-style atlas.

    Parameters
    ----------
    atlas : numpy.ndarray
        Integer label image on the grid of ``gm`` (e.g. the warped ``desikan_killiany`` atlas, or FreeSurfer's
        ``aparc+aseg`` in the same space).
    labels : pandas.DataFrame
        Columns ``label`` and ``name`` (FreeSurfer names: ``ctx-lh-<roi>``/``ctx_lh_<roi>``,
        ``Left-Putamen`` …), as :func:`smriflow.data.atlases.atlas_labels` returns them.
    gm : numpy.ndarray
        GM membership; every voxel with GM > 0 takes the label of the nearest cortical, inner or outer
        structure of the atlas (see the module docstring).

    Returns
    -------
    region : numpy.ndarray
        int32: the cortical label of each GM voxel whose nearest structure is cortical, else 0.
    inner, outer : numpy.ndarray of bool
        GM voxels whose nearest structure is deep GM/ventricle, respectively cerebellum, brain stem,
        hippocampus or amygdala.
    """
    atlas = np.rint(np.asarray(atlas)).astype(np.int64)
    if atlas.shape != np.shape(gm):
        raise ValueError(f"The atlas {atlas.shape} and the GM map {np.shape(gm)} must share one grid.")
    kinds = {
        int(lab): _structure_kind(str(name))
        for lab, name in zip(labels["label"], labels["name"], strict=True)
    }
    code = {"cortex": 1, "inner": 2, "outer": 3}
    useful = [lab for lab, kind in kinds.items() if kind in code]
    region = np.zeros(atlas.shape, dtype=np.int32)
    inner = np.zeros(atlas.shape, dtype=bool)
    outer = np.zeros(atlas.shape, dtype=bool)
    seeds = np.isin(atlas, useful)
    grey = np.asarray(gm) > 0
    if not seeds.any() or not grey.any():
        return region, inner, outer
    nearest = ndimage.distance_transform_edt(~seeds, return_distances=False, return_indices=True)
    where = np.nonzero(grey)
    nearest_label = atlas[tuple(n[where] for n in nearest)]
    kind_of = np.zeros(max(int(atlas.max()), *useful) + 1, dtype=np.int8)
    for lab in useful:
        kind_of[lab] = code[kinds[lab]]
    kind = kind_of[nearest_label]
    region[where] = np.where(kind == 1, nearest_label, 0)
    inner[where] = kind == 2
    outer[where] = kind == 3
    return region, inner, outer


def thickness_image(
    gm_probseg: nb.Nifti1Image | str | Path,
    wm_probseg: nb.Nifti1Image | str | Path,
    atlas_dseg: nb.Nifti1Image | str | Path | None = None,
    labels: pd.DataFrame | None = None,
    t1w: nb.Nifti1Image | str | Path | None = None,
    **kwargs,
) -> tuple[nb.Nifti1Image, nb.Nifti1Image | None]:
    """The thickness map of a subject, and its cortical region image, from images on the T1w grid.

    Parameters
    ----------
    gm_probseg, wm_probseg : nibabel.Nifti1Image, str or Path
        GM and WM memberships (``anat_preproc``'s ``label-GM_probseg`` and ``label-WM_probseg``).
    atlas_dseg : nibabel.Nifti1Image, str or Path, optional
        A FreeSurfer-style atlas on the same grid (``atlas-desikankilliany_dseg``), with its ``labels``:
        deep GM then counts as WM, cerebellum/brain stem/hippocampus/amygdala as outside, and the map is
        restricted to the cortex (:func:`cortex_context`).
    t1w : nibabel.Nifti1Image, str or Path, optional
        The bias-corrected T1w on the same grid (``desc-preproc_T1w``): the GM/WM boundary then moves to its
        intensity edge (``t1w`` of :func:`cortical_thickness`).
    **kwargs
        Passed to :func:`cortical_thickness` (``max_thickness``, ``workers`` …).

    Returns
    -------
    thickness : nibabel.Nifti1Image
        float32 thickness (mm), 0 outside the cortex.
    region : nibabel.Nifti1Image or None
        The cortical label of every voxel of the map (None without an atlas).
    """
    gm_img = nb.load(str(gm_probseg)) if isinstance(gm_probseg, str | Path) else gm_probseg
    wm_img = nb.load(str(wm_probseg)) if isinstance(wm_probseg, str | Path) else wm_probseg
    if gm_img.shape[:3] != wm_img.shape[:3] or not np.allclose(gm_img.affine, wm_img.affine, atol=1e-3):
        raise ValueError("'gm_probseg' and 'wm_probseg' must be on the same grid.")
    gm = gm_img.get_fdata(dtype=np.float32)
    wm = wm_img.get_fdata(dtype=np.float32)
    zooms = nb.affines.voxel_sizes(gm_img.affine)
    if t1w is not None:
        t1w_img = nb.load(str(t1w)) if isinstance(t1w, str | Path) else t1w
        if t1w_img.shape[:3] != gm_img.shape[:3] or not np.allclose(t1w_img.affine, gm_img.affine, atol=1e-3):
            raise ValueError(f"'t1w' {t1w_img.shape} is not on the grid of 'gm_probseg' {gm.shape}.")
        kwargs["t1w"] = np.asarray(t1w_img.dataobj, dtype=np.float32).reshape(gm.shape)
    region_img = None
    if atlas_dseg is not None:
        if labels is None:
            raise ValueError("'labels' (the atlas's label table) is needed with 'atlas_dseg'.")
        atlas_img = nb.load(str(atlas_dseg)) if isinstance(atlas_dseg, str | Path) else atlas_dseg
        if atlas_img.shape[:3] != gm_img.shape[:3]:
            raise ValueError(f"'atlas_dseg' {atlas_img.shape} is not on the grid of 'gm_probseg' {gm.shape}.")
        region, inner, outer = cortex_context(np.asanyarray(atlas_img.dataobj), labels, gm)
        thick = cortical_thickness(gm, wm, zooms, inner=inner, outer=outer, cortex=region > 0, **kwargs)
        region = np.where(thick > 0, region, 0).astype(np.int32)
        region_img = nb.Nifti1Image(region, gm_img.affine, gm_img.header)
        region_img.set_data_dtype(np.int32)
    else:
        thick = cortical_thickness(gm, wm, zooms, **kwargs)
    thick_img = nb.Nifti1Image(thick, gm_img.affine, gm_img.header)
    thick_img.set_data_dtype(np.float32)
    return thick_img, region_img


def cortex_hemisphere(region: np.ndarray, labels: pd.DataFrame) -> np.ndarray:
    """The hemisphere of every cortical voxel of a region image: 1 left, 2 right, 0 elsewhere."""
    region = np.asarray(region).astype(np.int64)
    hemi = np.zeros(region.shape, dtype=np.int8)
    for lab, name in zip(labels["label"], labels["name"], strict=True):
        match = _CORTEX.match(str(name))
        if match:
            hemi[region == int(lab)] = 1 if match.group(1) == "lh" else 2
    return hemi


def relabel_cortex(
    region: np.ndarray, labels: pd.DataFrame, atlas: np.ndarray, atlas_labels: pd.DataFrame
) -> np.ndarray:
    """The cortex of a region image relabelled with another cortical atlas, hemisphere by hemisphere.

    Every voxel of ``region`` (the cortex of a thickness map, e.g. made with the Desikan-Killiany atlas) takes
    the nearest cortical label of ``atlas`` (e.g. the warped Destrieux atlas) of the same hemisphere, so that
    the tables of all atlases cover the same voxels and agree on the mean thickness per hemisphere.

    Parameters
    ----------
    region : numpy.ndarray
        Cortical labels of the thickness map (:func:`thickness_image`), with their ``labels`` table.
    labels : pandas.DataFrame
        ``label, name`` of ``region``.
    atlas : numpy.ndarray
        The other atlas on the same grid, with its ``atlas_labels`` table.
    atlas_labels : pandas.DataFrame
        ``label, name`` of ``atlas``.

    Returns
    -------
    numpy.ndarray
        int32 labels of ``atlas`` on the voxels of ``region`` (0 elsewhere, and where ``atlas`` has no
        cortical label of that hemisphere).
    """
    atlas = np.rint(np.asarray(atlas)).astype(np.int64)
    hemi = cortex_hemisphere(region, labels)
    if atlas.shape != hemi.shape:
        raise ValueError(f"The atlas {atlas.shape} and the region image {hemi.shape} must share one grid.")
    out = np.zeros(atlas.shape, dtype=np.int32)
    for code, side in ((1, "lh"), (2, "rh")):
        cortical = [
            int(lab)
            for lab, name in zip(atlas_labels["label"], atlas_labels["name"], strict=True)
            if (m := _CORTEX.match(str(name))) and m.group(1) == side and m.group(2) not in _NOT_REGIONS
        ]
        seeds = np.isin(atlas, cortical)
        where = np.nonzero(hemi == code)
        if not seeds.any() or not len(where[0]):
            continue
        nearest = ndimage.distance_transform_edt(~seeds, return_distances=False, return_indices=True)
        out[where] = atlas[tuple(n[where] for n in nearest)]
    return out


def regional_thickness(
    thickness: np.ndarray, region: np.ndarray, labels: pd.DataFrame, atlas: str, subject: str
) -> dict[str, pd.DataFrame]:
    """Mean thickness per cortical region and hemisphere, as ``aparcstats2table`` writes it.

    Parameters
    ----------
    thickness : numpy.ndarray
        The thickness map (mm, 0 outside cortex).
    region : numpy.ndarray
        Cortical labels on the same grid (:func:`cortex_context` / :func:`thickness_image`).
    labels : pandas.DataFrame
        The atlas's ``label, name`` table; the cortical rows (``ctx-lh-<roi>``, ``ctx_lh_<roi>``) are the
        regions, in table order.
    atlas : str
        ``desikan_killiany`` or ``destrieux`` (FreeSurfer's ``aparc`` and ``aparc.a2009s``).
    subject : str
        The row's subject ID (``sub-0002``).

    Returns
    -------
    dict
        ``{'lh': frame, 'rh': frame}``: one row (index = ``subject``, named ``<hemi>.<parc>.thickness`` as
        FreeSurfer's first header cell), columns ``<hemi>_<roi>_thickness`` in table order (Destrieux names
        with ``&`` as FreeSurfer's stats files write them) and ``<hemi>_MeanThickness_thickness`` (mean over
        the hemisphere's cortex). A region without a voxel is NaN. Write them with
        :func:`smriflow.stats.freesurfer.write_wide_table`.
    """
    if atlas not in FS_PARCELLATIONS:
        raise ValueError(
            f"Regional thickness needs a FreeSurfer cortical atlas ({', '.join(FS_PARCELLATIONS)}); "
            f"{atlas!r} was provided."
        )
    thickness = np.asarray(thickness, dtype=np.float64)
    region = np.asarray(region).astype(np.int64)
    if thickness.shape != region.shape:
        raise ValueError(f"'thickness' {thickness.shape} and 'region' {region.shape} must share one grid.")
    parc = FS_PARCELLATIONS[atlas]
    inside = (thickness > 0) & (region > 0)
    size = int(max(region.max(initial=0), labels["label"].max())) + 1
    sums = np.bincount(region[inside], weights=thickness[inside], minlength=size)
    counts = np.bincount(region[inside], minlength=size)
    tables = {}
    for hemi in ("lh", "rh"):
        values: dict[str, float] = {}
        hemi_labels = []
        for lab, name in zip(labels["label"], labels["name"], strict=True):
            match = _CORTEX.match(str(name))
            if not match or match.group(1) != hemi or match.group(2) in _NOT_REGIONS:
                continue
            roi = match.group(2).replace("_and_", "&") if parc == "aparc.a2009s" else match.group(2)
            lab = int(lab)
            hemi_labels.append(lab)
            values[f"{hemi}_{roi}_thickness"] = sums[lab] / counts[lab] if counts[lab] else np.nan
        total = counts[hemi_labels].sum()
        values[f"{hemi}_MeanThickness_thickness"] = sums[hemi_labels].sum() / total if total else np.nan
        frame = pd.DataFrame([values], index=pd.Index([subject], name=f"{hemi}.{parc}.thickness"))
        tables[hemi] = frame.astype(float)
    return tables


#: Thickness (mm) outside which :func:`subject_thickness` counts a cortical voxel's value as implausible.
PLAUSIBLE_MM = (1.0, 4.5)


def subject_thickness(
    gm_probseg: nb.Nifti1Image | str | Path,
    wm_probseg: nb.Nifti1Image | str | Path,
    atlases: dict[str, nb.Nifti1Image | str | Path],
    subject: str,
    **kwargs,
) -> tuple[nb.Nifti1Image, nb.Nifti1Image, dict[str, dict[str, pd.DataFrame]], dict]:
    """Everything ``anat_preproc`` keeps of a subject's thickness: the maps, the tables and a record.

    Parameters
    ----------
    gm_probseg, wm_probseg : nibabel.Nifti1Image, str or Path
        GM and WM memberships on the T1w grid.
    atlases : dict
        ``{'desikan_killiany': dseg, 'destrieux': dseg}`` on the same grid (Destrieux optional): the map's
        cortex and regions come from Desikan-Killiany, Destrieux relabels the same voxels
        (:func:`relabel_cortex`).
    subject : str
        The tables' row name (``sub-0002``).
    **kwargs
        Passed to :func:`thickness_image`.

    Returns
    -------
    thickness, region : nibabel.Nifti1Image
        The thickness map (mm) and its Desikan-Killiany cortical labels.
    tables : dict
        ``{atlas: {'lh': frame, 'rh': frame}}`` (:func:`regional_thickness`).
    record : dict
        ``mean_mm`` per hemisphere, ``voxels``, ``iqms`` (``thickness_mean_{lh,rh}``,
        ``thickness_frac_{below,above}``: the share of the cortex's voxels outside :data:`PLAUSIBLE_MM`) and
        ``regions`` (the Desikan-Killiany means, ``{hemi: {roi: mm}}``).
    """
    from smriflow.data.atlases import atlas_labels

    if "desikan_killiany" not in atlases:
        raise ValueError("'atlases' must hold the warped 'desikan_killiany' atlas (it defines the cortex).")
    dk_labels = atlas_labels("desikan_killiany")
    thick_img, region_img = thickness_image(
        gm_probseg, wm_probseg, atlases["desikan_killiany"], dk_labels, **kwargs
    )
    thick = np.asarray(thick_img.dataobj, dtype=np.float64)
    region = np.asarray(region_img.dataobj)
    tables = {"desikan_killiany": regional_thickness(thick, region, dk_labels, "desikan_killiany", subject)}
    for name, dseg in atlases.items():
        if name == "desikan_killiany":
            continue
        other = nb.load(str(dseg)) if isinstance(dseg, str | Path) else dseg
        other_labels = atlas_labels(name)
        relabelled = relabel_cortex(region, dk_labels, np.asanyarray(other.dataobj), other_labels)
        tables[name] = regional_thickness(thick, relabelled, other_labels, name, subject)
    values = thick[thick > 0]
    low, high = PLAUSIBLE_MM
    dk = tables["desikan_killiany"]
    mean = {h: float(dk[h].iloc[0][f"{h}_MeanThickness_thickness"]) for h in ("lh", "rh")}
    iqms = {f"thickness_mean_{h}": mean[h] for h in ("lh", "rh")}
    iqms["thickness_frac_below"] = float(np.mean(values < low)) if values.size else float("nan")
    iqms["thickness_frac_above"] = float(np.mean(values > high)) if values.size else float("nan")
    regions = {
        h: {
            col[len(h) + 1 : -len("_thickness")]: float(v)
            for col, v in frame.iloc[0].items()
            if "MeanThickness" not in col
        }
        for h, frame in dk.items()
    }
    record = {
        "subject": subject,
        "atlases": sorted(atlases),
        "voxels": int(values.size),
        "mean_mm": mean,
        "plausible_mm": list(PLAUSIBLE_MM),
        "iqms": iqms,
        "regions": regions,
    }
    return thick_img, region_img, tables, record
