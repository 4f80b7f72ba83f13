"""The cortex of a subject and its regions, from a FreeSurfer-style atlas in the subject's space.

Regions (:func:`regional_thickness`)
------------------------------------
Regions are the cortical GM of the atlas in the subject's space: every voxel of the thickness map (GM band,
non-zero thickness) takes the label of the nearest cortical or non-cortical grey-matter structure of the
warped atlas (nearest-neighbour, Euclidean), so that a registration error of a few mm neither drops cortex
that falls on the atlas's WM or CSF nor counts cortex that sits on the atlas's hippocampus as a cortical
region; voxels whose nearest structure is not cortical are not cortex. A region's thickness is the mean over
its voxels weighted by the cortical surface each voxel stands for (:func:`area_weights`), as FreeSurfer
averages over its surface: a column of cortex of thickness *t* holds *t* / voxel size voxels, so a plain voxel
mean would count thick cortex more (partial-volume voxels count where they are in the GM band). The map is
made once, with one atlas (Desikan-Killiany); the tables of another cortical atlas (Destrieux) relabel the
same voxels with its nearest cortical label of the same hemisphere (:func:`relabel_cortex`), so every table
of a subject covers the same cortex and gives the same ``MeanThickness``, as FreeSurfer's do.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
from scipy import ndimage

from smriflow.utils.intensity import local_mean

__all__ = [
    "AREA_SIGMA_MM",
    "FS_PARCELLATIONS",
    "INNER_STRUCTURES",
    "OUTER_STRUCTURES",
    "area_weights",
    "cortex_context",
    "cortex_hemisphere",
    "regional_thickness",
    "relabel_cortex",
]

#: Gaussian sigma (mm) of the neighbourhood whose mean thickness stands for a voxel's column in
#: :func:`area_weights` (docs/thickness.md: 2-4 mm give the same agreement with FreeSurfer).
AREA_SIGMA_MM = 3.0

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


def area_weights(thickness: np.ndarray, zooms, sigma_mm: float = AREA_SIGMA_MM) -> np.ndarray:
    """The cortical surface (mm²) each voxel of a thickness map stands for: its volume over its thickness.

    A column of cortex of thickness *t* under a patch of surface of area *A* holds *A t* of volume, so a voxel
    of volume *v* stands for *v / t* of surface, and the surface-weighted mean of a region (FreeSurfer's) is
    ``sum(t v / t) / sum(v / t)``. The column's thickness is taken as the Gaussian-weighted mean of the map
    around the voxel (``sigma_mm``, over cortical voxels only) rather than the voxel's own value: single
    values near sulcal fundi and partial-volume edges are noisy, and 1 / *t* would give the thinnest of them
    the most weight.

    Parameters
    ----------
    thickness : numpy.ndarray
        The thickness map (mm, 0 outside cortex).
    zooms : sequence of float
        Voxel size (mm).
    sigma_mm : float
        Width of the neighbourhood.

    Returns
    -------
    numpy.ndarray
        float32 surface area (mm²) per voxel, 0 outside cortex.
    """
    if sigma_mm <= 0:
        raise ValueError(f"'sigma_mm' must be positive. {sigma_mm!r} was provided.")
    thickness = np.asarray(thickness, dtype=np.float32)
    cortex = thickness > 0
    local, _ = local_mean(thickness, cortex, sigma_mm, zooms)  # zero outside the grid: no cortex there
    volume = np.float32(np.prod([float(z) for z in zooms[:3]]))
    return np.where(cortex, volume / np.maximum(local, 1e-3), 0).astype(np.float32)


def regional_thickness(
    thickness: np.ndarray,
    region: np.ndarray,
    labels: pd.DataFrame,
    atlas: str,
    subject: str,
    weights: np.ndarray | None = None,
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
    weights : numpy.ndarray or None
        Each voxel's weight in its region's mean: :func:`area_weights` for FreeSurfer's surface-weighted means
        (what :func:`~smriflow.anat.thickness.subject.subject_thickness` writes); None: every voxel alike.

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
    if weights is not None and np.shape(weights) != thickness.shape:
        raise ValueError(
            f"'weights' {np.shape(weights)} must be on the grid of 'thickness' {thickness.shape}."
        )
    parc = FS_PARCELLATIONS[atlas]
    inside = (thickness > 0) & (region > 0)
    size = int(max(region.max(initial=0), labels["label"].max())) + 1
    w = np.ones(int(inside.sum())) if weights is None else np.asarray(weights, dtype=np.float64)[inside]
    sums = np.bincount(region[inside], weights=w * thickness[inside], minlength=size)
    counts = np.bincount(region[inside], weights=w, minlength=size)
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
