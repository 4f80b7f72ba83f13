"""A subject's thickness: the map and its regions from images on the T1w grid, its tables and record."""

from __future__ import annotations

from pathlib import Path

import nibabel as nb
import numpy as np
import pandas as pd

from smriflow.anat.thickness.boundaries import PEAK_FRACTION
from smriflow.anat.thickness.measure import cortical_thickness
from smriflow.anat.thickness.regions import (
    AREA_SIGMA_MM,
    area_weights,
    cortex_context,
    regional_thickness,
    relabel_cortex,
)
from smriflow.utils.grids import check_same_grid, same_grid
from smriflow.utils.morphology import bounding_box
from smriflow.utils.niftiio import load_image

__all__ = ["PLAUSIBLE_MM", "subject_thickness", "thickness_image"]


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
    gm_img = load_image(gm_probseg)
    wm_img = load_image(wm_probseg)
    check_same_grid(gm_img, wm_img, "'gm_probseg' and 'wm_probseg' must be on the same grid.")
    gm = gm_img.get_fdata(dtype=np.float32)
    wm = wm_img.get_fdata(dtype=np.float32)
    zooms = nb.affines.voxel_sizes(gm_img.affine)
    if t1w is not None:
        t1w_img = load_image(t1w)
        check_same_grid(
            t1w_img, gm_img, f"'t1w' {t1w_img.shape} is not on the grid of 'gm_probseg' {gm.shape}."
        )
        kwargs["t1w"] = np.asarray(t1w_img.dataobj, dtype=np.float32).reshape(gm.shape)
    region_img = None
    if atlas_dseg is not None:
        if labels is None:
            raise ValueError("'labels' (the atlas's label table) is needed with 'atlas_dseg'.")
        atlas_img = load_image(atlas_dseg)
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


PLAUSIBLE_MM = (1.0, 4.5)
#: Voxels around the brain and atlases kept by :func:`_brain_box` (more than the 4 that
#: :func:`cortical_thickness` keeps around the GM band).
_BOX_MARGIN = 5


def _brain_box(support: list[nb.Nifti1Image], others: list[nb.Nifti1Image]) -> tuple[slice, ...] | None:
    """The box of every nonzero voxel of ``support`` (memberships and atlases) plus a margin, or None.

    Every seed of the atlases' nearest-label searches and every voxel of the GM band lies in it (and the
    T1w, among ``others``, is read only around the band), so the thickness, regions and tables computed in
    the box are those of the whole grid; outside it the maps are 0. It keeps a fine T1w's memory down (a
    0.6 mm head is mostly air). None when the grids differ (the full-grid checks then name the image).
    """
    shape = support[0].shape[:3]
    if not all(same_grid(img, support[0]) for img in support + others):
        return None
    inside = np.zeros(shape, dtype=bool)
    for img in support:
        inside |= np.asanyarray(img.dataobj).reshape(shape) != 0
    return bounding_box(inside, _BOX_MARGIN)


def _pasted(cropped: nb.Nifti1Image, like: nb.Nifti1Image, box: tuple[slice, ...]) -> nb.Nifti1Image:
    """``cropped`` put back at ``box`` of a zero image on the grid of ``like``."""
    data = np.asanyarray(cropped.dataobj)
    full = np.zeros(like.shape[:3], dtype=data.dtype)
    full[box] = data
    out = nb.Nifti1Image(full, like.affine, like.header)
    out.set_data_dtype(data.dtype)
    return out


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
        ``regions`` (the Desikan-Killiany means, ``{hemi: {roi: mm}}``) and ``averaging`` (how the tables
        weigh the voxels: by the surface they stand for, :func:`~.regions.area_weights`) and
        ``gm_wm_boundary`` (where the GM/WM boundary is placed: on the T1w's edge when ``t1w`` is given,
        :func:`~.boundaries.edge_refine`).
    """
    from smriflow.data.atlases import atlas_labels

    if "desikan_killiany" not in atlases:
        raise ValueError("'atlases' must hold the warped 'desikan_killiany' atlas (it defines the cortex).")
    gm_img, wm_img = load_image(gm_probseg), load_image(wm_probseg)
    atlas_imgs = {name: load_image(dseg) for name, dseg in atlases.items()}
    t1w = kwargs.pop("t1w", None)
    t1w_img = None if t1w is None else load_image(t1w)
    box = _brain_box([gm_img, wm_img, *atlas_imgs.values()], [] if t1w_img is None else [t1w_img])
    if box is not None:  # work on the brain's box; the maps are pasted back onto the full grid below
        full_grid = gm_img
        gm_img, wm_img = gm_img.slicer[box], wm_img.slicer[box]
        atlas_imgs = {name: img.slicer[box] for name, img in atlas_imgs.items()}
        t1w_img = None if t1w_img is None else t1w_img.slicer[box]
    dk_labels = atlas_labels("desikan_killiany")
    thick_img, region_img = thickness_image(
        gm_img, wm_img, atlas_imgs["desikan_killiany"], dk_labels, t1w=t1w_img, **kwargs
    )
    thick = np.asarray(thick_img.dataobj, dtype=np.float64)
    region = np.asarray(region_img.dataobj)
    area = area_weights(thick, nb.affines.voxel_sizes(thick_img.affine))
    tables = {
        "desikan_killiany": regional_thickness(thick, region, dk_labels, "desikan_killiany", subject, area)
    }
    for name, other in atlas_imgs.items():
        if name == "desikan_killiany":
            continue
        other_labels = atlas_labels(name)
        relabelled = relabel_cortex(region, dk_labels, np.asanyarray(other.dataobj), other_labels)
        tables[name] = regional_thickness(thick, relabelled, other_labels, name, subject, area)
    if box is not None:
        thick_img, region_img = _pasted(thick_img, full_grid, box), _pasted(region_img, full_grid, box)
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
        "averaging": f"surface-weighted (area_weights, sigma {AREA_SIGMA_MM:g} mm)",
        "gm_wm_boundary": (
            "memberships (WM = 0.5)"
            if t1w_img is None
            else f"T1w edge (centroid of the fall above {PEAK_FRACTION:g} of its steepest)"
        ),
        "iqms": iqms,
        "regions": regions,
    }
    return thick_img, region_img, tables, record
