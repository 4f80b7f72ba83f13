"""Reportlet: cortical thickness on the pial mesh, lateral and medial views of each hemisphere (nilearn).

:func:`thickness_svg` draws one row per hemisphere and two columns (lateral, medial) with
``nilearn.plotting.plot_surf_stat_map`` on matplotlib's object-oriented API (no pyplot state), and returns
a standalone SVG string. The meshes are rasterized inside it (0.2 MB for fsaverage5 instead of 15 MB of
triangles); zero thickness (the medial wall) stays grey. The same inputs give byte-identical SVG (fixed id
salt, no date), like the other reportlets. :func:`subject_thickness_svg` does the reading too, from a
FreeSurfer / FastSurfer / fMRIPrep folder (:func:`smriflow.utils.surfaces.find_surfaces`).
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from smriflow.utils.surfaces import Mesh, find_surfaces, load_mesh, load_morphometry

__all__ = ["subject_thickness_svg", "thickness_range", "thickness_svg"]

_SALT = "smriflow"
_VIEWS = ("lateral", "medial")
_DPI = 110  # resolution of the rasterized meshes


def thickness_range(maps: Mapping[str, np.ndarray]) -> tuple[float, float]:
    """Shared colour range of thickness maps: 2nd-98th percentile of the non-zero (cortex) values."""
    values = np.concatenate([np.asarray(m, dtype=np.float64).ravel() for m in maps.values()])
    values = values[np.isfinite(values) & (values > 0)]
    if values.size == 0:
        raise ValueError("thickness: no positive value in any hemisphere.")
    low, high = np.percentile(values, (2, 98))
    return float(low), float(max(high, low + 1e-3))


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
    from nilearn.plotting import plot_surf_stat_map

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
                axes = fig.add_subplot(len(order), 2, 2 * row + col + 1, projection="3d")
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
                for collection in axes.collections:  # ~20k triangles: a raster inside the SVG, not paths
                    collection.set_rasterized(True)
                axes.set_title(f"{hemi} {view}", fontsize=9)
        bar = fig.add_axes((0.3, 0.04, 0.4, 0.02))
        fig.colorbar(ScalarMappable(Normalize(vmin, vmax), cmap), cax=bar, orientation="horizontal")
        bar.set_xlabel("mm", fontsize=8)
        if title:
            fig.suptitle(title, fontsize=11)
        buffer = io.StringIO()
        fig.savefig(buffer, format="svg", dpi=_DPI, metadata={"Date": None})
    return buffer.getvalue()


def subject_thickness_svg(folder: str | Path, *, mesh: str = "pial", **kwargs) -> str:
    """:func:`thickness_svg` of one subject's FreeSurfer / FastSurfer / fMRIPrep folder.

    Raises
    ------
    FileNotFoundError
        When the folder has no ``mesh`` with a thickness map for either hemisphere.
    """
    found = find_surfaces(folder)
    hemispheres = {}
    for hemi, files in found.items():
        if mesh in files and "thickness" in files:
            surface = load_mesh(files[mesh])
            hemispheres[hemi] = (surface, load_morphometry(files["thickness"], surface.n_vertices))
    if not hemispheres:
        raise FileNotFoundError(f"{folder}: no hemisphere has both a {mesh} mesh and a thickness map.")
    return thickness_svg(hemispheres, **kwargs)
