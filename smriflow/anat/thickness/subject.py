"""A subject's thickness: the map and its regions from images on the T1w grid, its tables and record."""

from __future__ import annotations

from pathlib import Path

import nibabel as nb
import numpy as np
import pandas as pd

from smriflow.anat.thickness.measure import cortical_thickness
from smriflow.anat.thickness.regions import cortex_context, regional_thickness, relabel_cortex

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
