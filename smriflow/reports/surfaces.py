"""Reportlet: cortical thickness on the pial mesh, lateral and medial views of each hemisphere (nilearn).

:func:`thickness_svg` draws one row per hemisphere and two columns (lateral, medial) with
``nilearn.plotting.plot_surf_stat_map`` on matplotlib's object-oriented API (no pyplot state), and returns
a standalone SVG string. Each view is drawn on its own figure and embedded as a PNG raster (0.2 MB for
fsaverage5 instead of 15 MB of triangles; one view at a time keeps the memory of a full-resolution mesh
low); zero thickness (the medial wall) stays grey. The same inputs give byte-identical SVG (fixed id
salt, no date), like the other reportlets. :func:`subject_thickness_svg` does the reading too, from a
FreeSurfer / FastSurfer / fMRIPrep folder (:func:`smriflow.data.surfaces.find_surfaces`).

For the subject report, :func:`subject_surface_folder` finds a subject's folder in a ``$SUBJECTS_DIR`` or an
fMRIPrep derivatives folder, and :func:`thickness_summary` gives the mean thickness per hemisphere and per
region of an ``aparc`` parcellation.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from smriflow.data.surfaces import (
    Mesh,
    find_surfaces,
    load_annotation,
    load_mesh,
    load_morphometry,
    regional_mean,
)

__all__ = [
    "PARCELLATIONS",
    "cortex_mean",
    "load_thickness",
    "subject_surface_folder",
    "subject_thickness_svg",
    "surface_folder_candidates",
    "thickness_range",
    "thickness_summary",
    "thickness_svg",
]

#: parcellations whose regional mean thickness the report tabulates, first found wins
PARCELLATIONS = ("aparc", "aparc.DKTatlas", "aparc.a2009s")

_SALT = "smriflow"
_VIEWS = ("lateral", "medial")
_DPI = 110  # resolution of the rasterized meshes
_VIEW_IN = (3.6, 2.9)  # size of one view's raster (inches)


def thickness_range(maps: Mapping[str, np.ndarray]) -> tuple[float, float]:
    """Shared colour range of thickness maps: 2nd-98th percentile of the non-zero (cortex) values."""
    values = np.concatenate([np.asarray(m, dtype=np.float64).ravel() for m in maps.values()])
    values = values[np.isfinite(values) & (values > 0)]
    if values.size == 0:
        raise ValueError("thickness: no positive value in any hemisphere.")
    low, high = np.percentile(values, (2, 98))
    return float(low), float(max(high, low + 1e-3))


def _view_raster(
    mesh: Mesh, values: np.ndarray, hemi: str, view: str, *, vmin: float, vmax: float, cmap: str
) -> np.ndarray:
    """One view of the map on the mesh, drawn by nilearn on its own Agg figure, as an RGBA array.

    Each view is drawn and freed before the next: matplotlib keeps one path object per triangle, so a
    full-resolution subject (about 300k triangles per hemisphere) would need over 1 GB if all four views
    lived in one figure; one at a time it stays near a quarter of that.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from nilearn.plotting import plot_surf_stat_map

    fig = Figure(figsize=(_VIEW_IN[0], _VIEW_IN[1]), dpi=_DPI, facecolor="white")
    canvas = FigureCanvasAgg(fig)
    axes = fig.add_axes((0.0, 0.0, 1.0, 1.0), projection="3d")
    plot_surf_stat_map(
        (mesh.coords, mesh.faces),
        np.asarray(values, dtype=np.float64),
        hemi=hemi,
        view=view,
        engine="matplotlib",
        cmap=cmap,
        colorbar=False,
        vmin=vmin,
        vmax=vmax,
        threshold=1e-3,  # zero thickness (medial wall) stays grey
        axes=axes,
        figure=fig,
    )
    canvas.draw()
    rgba = np.asarray(canvas.buffer_rgba())
    drawn = np.argwhere((rgba[..., :3] < 250).any(axis=-1))  # crop the white margin of the 3-D axes
    if not len(drawn):
        return rgba.copy()
    (top, left), (bottom, right) = drawn.min(0), drawn.max(0)
    pad = 4
    return rgba[max(top - pad, 0) : bottom + pad + 1, max(left - pad, 0) : right + pad + 1].copy()


def thickness_svg(
    hemispheres: Mapping[str, tuple[Mesh, np.ndarray]],
    *,
    vmin: float | None = None,
    vmax: float | None = None,
    cmap: str = "viridis",
    title: str | None = "Cortical thickness (mm)",
) -> str:
    """Draw thickness on the pial mesh, lateral and medial views, one row per hemisphere.

    Parameters
    ----------
    hemispheres : mapping
        ``{"left": (mesh, thickness), "right": (mesh, thickness)}`` (either may be absent).
    vmin, vmax : float, optional
        Colour range (default :func:`thickness_range` of all hemispheres).
    cmap : str
        Matplotlib colormap.
    title : str or None
        Figure title.

    Returns
    -------
    str
        A standalone SVG document.
    """
    from matplotlib import rc_context
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    unknown = sorted(set(hemispheres) - {"left", "right"})
    if unknown or not hemispheres:
        raise ValueError(
            f"'hemispheres' keys must be 'left' and/or 'right'. {sorted(hemispheres)} was provided."
        )
    for hemi, (mesh, values) in hemispheres.items():
        size = np.asarray(values).size
        if np.asarray(values).shape != (mesh.n_vertices,):
            raise ValueError(f"{hemi} thickness has {size} values for a mesh of {mesh.n_vertices} vertices.")
    if vmin is None or vmax is None:
        low, high = thickness_range({h: v for h, (_, v) in hemispheres.items()})
        vmin = low if vmin is None else vmin
        vmax = high if vmax is None else vmax
    order = [h for h in ("left", "right") if h in hemispheres]
    with rc_context({"svg.hashsalt": _SALT}):
        fig = Figure(figsize=(8.0, 3.2 * len(order) + 0.6), facecolor="white")
        for row, hemi in enumerate(order):
            mesh, values = hemispheres[hemi]
            for col, view in enumerate(_VIEWS):
                axes = fig.add_subplot(len(order), 2, 2 * row + col + 1)
                raster = _view_raster(mesh, values, hemi, view, vmin=vmin, vmax=vmax, cmap=cmap)
                axes.imshow(raster, interpolation="none")  # embedded as it is, one PNG per view
                axes.set_axis_off()
                axes.set_title(f"{hemi} {view}", fontsize=9)
        bar = fig.add_axes((0.3, 0.04, 0.4, 0.02))
        fig.colorbar(ScalarMappable(Normalize(vmin, vmax), cmap), cax=bar, orientation="horizontal")
        bar.set_xlabel("mm", fontsize=8)
        if title:
            fig.suptitle(title, fontsize=11)
        buffer = io.StringIO()
        fig.savefig(buffer, format="svg", dpi=_DPI, metadata={"Date": None})
    return buffer.getvalue()


def load_thickness(folder: str | Path, *, mesh: str = "pial") -> dict[str, tuple[Mesh, np.ndarray]]:
    """The ``mesh`` and thickness map of each hemisphere of one subject's folder that has both.

    Returns
    -------
    dict
        ``{"left": (Mesh, thickness), "right": (...)}``, in the order left, right.

    Raises
    ------
    FileNotFoundError
        When the folder has no ``mesh`` with a thickness map for either hemisphere.
    ValueError
        When a file cannot be read, or a map does not fit its mesh.
    """
    found = find_surfaces(folder)
    hemispheres = {}
    for hemi in ("left", "right"):
        files = found.get(hemi, {})
        if mesh in files and "thickness" in files:
            surface = load_mesh(files[mesh])
            hemispheres[hemi] = (surface, load_morphometry(files["thickness"], surface.n_vertices))
    if not hemispheres:
        raise FileNotFoundError(f"{folder}: no hemisphere has both a {mesh} mesh and a thickness map.")
    return hemispheres


def subject_thickness_svg(folder: str | Path, *, mesh: str = "pial", **kwargs) -> str:
    """:func:`thickness_svg` of one subject's FreeSurfer / FastSurfer / fMRIPrep folder.

    Raises
    ------
    FileNotFoundError
        When the folder has no ``mesh`` with a thickness map for either hemisphere.
    """
    return thickness_svg(load_thickness(folder, mesh=mesh), **kwargs)


def surface_folder_candidates(surfaces_dir: str | Path, subject: str, session: str = "") -> list[Path]:
    """Where a subject's surfaces may be in ``surfaces_dir``, in the order they are tried.

    With a session: ``sub-<l>_ses-<s>`` (a FreeSurfer subject per session) and ``sub-<l>/ses-<s>``
    (fMRIPrep); then ``sub-<l>`` (FreeSurfer, FastSurfer, fMRIPrep) and ``<l>`` (FreeSurfer, no prefix).
    """
    root = Path(surfaces_dir)
    subject = subject.removeprefix("sub-")
    session = (session or "").removeprefix("ses-")
    names = [f"sub-{subject}_ses-{session}", f"sub-{subject}/ses-{session}"] if session else []
    return [root / name for name in [*names, f"sub-{subject}", subject]]


def subject_surface_folder(
    surfaces_dir: str | Path, subject: str, session: str = "", *, mesh: str = "pial"
) -> Path | None:
    """The first of :func:`surface_folder_candidates` with a ``mesh`` and a thickness map, else None."""
    for folder in surface_folder_candidates(surfaces_dir, subject, session):
        if not folder.is_dir():
            continue
        try:
            found = find_surfaces(folder)
        except FileNotFoundError:
            continue
        if any(mesh in files and "thickness" in files for files in found.values()):
            return folder
    return None


def cortex_mean(thickness: np.ndarray) -> float:
    """Mean thickness over the cortex: the finite values above 0 (the medial wall is 0 in FreeSurfer's maps).

    NaN when there is no such value.
    """
    values = np.asarray(thickness, dtype=np.float64)
    values = values[np.isfinite(values) & (values > 0)]
    return float(values.mean()) if values.size else float("nan")


def thickness_summary(
    folder: str | Path, hemispheres: Mapping[str, tuple[Mesh, np.ndarray]]
) -> tuple[dict[str, dict[str, float]], str, dict[str, dict[str, float]]]:
    """Mean thickness per hemisphere, and per region of the first of :data:`PARCELLATIONS` found.

    Parameters
    ----------
    folder : str or Path
        The subject's folder (where the parcellations are looked for).
    hemispheres : mapping
        What :func:`load_thickness` returns.

    Returns
    -------
    per_hemisphere : dict
        ``{hemi: {"vertices": n, "cortex_vertices": n, "mean": mm}}`` (:func:`cortex_mean`).
    parcellation : str
        The parcellation's name ("" when none of a hemisphere shown is found).
    regions : dict
        ``{hemi: {region: mean thickness}}`` (:func:`smriflow.data.surfaces.regional_mean`).
    """
    per_hemisphere = {}
    for hemi, (mesh, values) in hemispheres.items():
        values = np.asarray(values, dtype=np.float64)
        per_hemisphere[hemi] = {
            "vertices": mesh.n_vertices,
            "cortex_vertices": int(np.count_nonzero(np.isfinite(values) & (values > 0))),
            "mean": cortex_mean(values),
        }
    found = find_surfaces(folder)
    for name in PARCELLATIONS:
        key = f"annot:{name}"
        if any(key in found.get(hemi, {}) for hemi in hemispheres):
            regions = {}
            for hemi, (mesh, values) in hemispheres.items():
                if key in found.get(hemi, {}):
                    annotation = load_annotation(found[hemi][key], mesh.n_vertices)
                    regions[hemi] = regional_mean(values, annotation)
            return per_hemisphere, name, regions
    return per_hemisphere, "", {}
