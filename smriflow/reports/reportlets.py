"""Reportlets: SVG mosaics of a subject's images, drawn with nilearn on matplotlib figures.

Every reportlet is a three-row mosaic (sagittal, coronal, axial; ``n_cuts`` slices each) returned as an SVG
string. The slices are raster images embedded in the SVG as PNG (matplotlib's default); contours and labels
are vector paths drawn over them. The functions use matplotlib's object-oriented API (no pyplot state), so
they are safe in nipype worker processes without a display.

Outputs are deterministic: matplotlib's SVG ids are salted with a fixed string instead of a random one and
no date is written, so the same images give byte-identical SVG.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping
from pathlib import Path

import nibabel as nb
import numpy as np

from smriflow.utils.grids import check_same_grid, same_grid
from smriflow.utils.morphology import bounding_box
from smriflow.utils.niftiio import ImageLike, load_image

__all__ = [
    "TISSUE_COLORS",
    "atlas_svg",
    "bias_svgs",
    "check_grid",
    "contrast_svg",
    "crop",
    "crop_box",
    "cut_coords",
    "input_svg",
    "label_colormap",
    "lesion_cuts",
    "lesion_svg",
    "mask_svg",
    "mosaic_svg",
    "registration_svgs",
    "robust_range",
    "tissue_svg",
]

#: contour colour of each tissue label of ``anat_preproc``'s dseg (1 GM, 2 WM, 3 CSF)
#: tissue outlines, drawn in this order: (name, dseg labels of the region outlined, colour). Each region
#: holds the next, so every line is one boundary: CSF = edge of all tissue, GM = outer (pial) edge of GM + WM,
#: WM = the GM/WM edge. Labels as in ``anat_preproc``'s dseg: 1 GM, 2 WM, 3 CSF.
TISSUE_COLORS: tuple[tuple[str, tuple[int, ...], str], ...] = (
    ("CSF", (1, 2, 3), "#00c3ff"),
    ("GM", (1, 2), "#39ff14"),
    ("WM", (2,), "#ff2bd6"),
)
MASK_COLOR = "#ff3b30"
LESION_COLOR = "#ffd60a"  # the lesion's outline (yellow)
FIELD_OUTLINE_COLOR = "#ffffff"  # the brain mask's outline on the bias field
_WIDTH_IN = 10.0  # figure width (inches)
_ROW_IN = 1.9  # height of one row of cuts (inches)
_DPI = 100  # raster resolution of the slices inside the SVG
_SALT = "smriflow"  # fixed SVG id salt: byte-identical reruns


def _name(img: ImageLike) -> str:
    return str(img) if isinstance(img, str | Path) else "image"


def _world_positions(mask: ImageLike, what: str) -> np.ndarray:
    """World (mm) positions of the voxels of a mask, shape (n, 3); an empty mask is a ValueError."""
    img = load_image(mask, ndim=3)
    ijk = np.argwhere(np.asanyarray(img.dataobj) > 0)
    if not len(ijk):
        raise ValueError(f"{_name(mask)}: the {what} is empty, so there is nothing to show")
    return nb.affines.apply_affine(img.affine, ijk)


def robust_range(
    img: ImageLike, mask: ImageLike | None = None, *, percentiles=(0.5, 99.5)
) -> tuple[float, float]:
    """Display range of an image: percentiles of its nonzero voxels (or of those inside ``mask``).

    Parameters
    ----------
    img : str, Path or nibabel image
        The image.
    mask : str, Path or nibabel image, optional
        Restrict the voxels to this mask (same grid).
    percentiles : tuple of float
        Lower and upper percentiles.

    Returns
    -------
    tuple of float
        ``(vmin, vmax)`` with ``vmin < vmax``.
    """
    data = np.asanyarray(load_image(img, ndim=3).dataobj, dtype=np.float32)
    keep = np.asanyarray(load_image(mask, ndim=3).dataobj) > 0 if mask is not None else data != 0
    values = data[keep] if keep.any() else data.ravel()
    low, high = (float(v) for v in np.percentile(values, percentiles))
    if high <= low:
        high = low + 1.0
    return round(low, 6), round(high, 6)


def cut_coords(mask: ImageLike, n_cuts: int = 7, *, margin: float = 0.1) -> dict[str, list[float]]:
    """World coordinates (mm) of ``n_cuts`` evenly spaced slices per axis across a mask's extent.

    Parameters
    ----------
    mask : str, Path or nibabel image
        The region to show (e.g. the brain mask); nonzero voxels count.
    n_cuts : int
        Slices per axis.
    margin : float
        Fraction of the extent left out at each end (the outermost slices show little).

    Returns
    -------
    dict
        ``{"x": [...], "y": [...], "z": [...]}``, rounded to 0.1 mm.

    Raises
    ------
    ValueError
        When the mask is empty.
    """
    xyz = _world_positions(mask, "mask")
    low, high = xyz.min(0), xyz.max(0)
    span = high - low
    cuts = {}
    for axis, key in enumerate("xyz"):
        positions = np.linspace(low[axis] + margin * span[axis], high[axis] - margin * span[axis], n_cuts)
        cuts[key] = [round(float(p), 1) for p in positions]
    return cuts


def check_grid(img: ImageLike, reference: ImageLike, what: str) -> None:
    """Raise ``ValueError`` unless ``img`` has the voxel grid (shape and affine) of ``reference``.

    Only the headers are read.
    """
    loaded, ref = load_image(img, ndim=3), load_image(reference, ndim=3)
    check_same_grid(
        loaded,
        ref,
        f"{_name(img)}: '{what}' is not on the grid of the brain mask "
        f"(shape {loaded.shape[:3]} vs {ref.shape[:3]}, or another affine)",
    )


def crop_box(mask: ImageLike, margin_mm: float = 6.0) -> tuple[slice, slice, slice]:
    """The voxel box of a mask's nonzero extent plus ``margin_mm`` on each side (clipped to the grid).

    Cropping every image of a subject to this box before plotting keeps the slices on the brain and makes
    the drawing several times faster on 1 mm images.
    """
    img = load_image(mask, ndim=3)
    inside = np.asanyarray(img.dataobj) > 0
    if not inside.any():
        raise ValueError(f"{_name(mask)}: the mask is empty, so there is nothing to show")
    pad = np.ceil(margin_mm / np.asarray(img.header.get_zooms()[:3], dtype=float)).astype(int)
    return bounding_box(inside, pad)


def crop(img: ImageLike, box: tuple[slice, slice, slice], dtype=np.float32) -> nb.Nifti1Image:
    """``img`` cut to ``box`` (see :func:`crop_box`), loaded in memory as ``dtype``, affine adjusted."""
    loaded = load_image(img, ndim=3)
    if len(box) != 3 or any(s.stop > n for s, n in zip(box, loaded.shape[:3], strict=True)):
        raise ValueError(f"{_name(img)}: the crop box {box} does not fit the image of shape {loaded.shape}")
    data = np.asanyarray(loaded.dataobj)[box].astype(dtype)
    start = [s.start for s in box]
    affine = loaded.affine.copy()
    affine[:3, 3] = nb.affines.apply_affine(loaded.affine, start)
    return nb.Nifti1Image(data, affine)


def label_colormap(max_label: int):
    """A listed colormap giving neighbouring label values clearly different colours (0 is transparent).

    Label ``k`` gets colour ``(k * 7) mod 18`` of matplotlib's ``tab20`` without its two greys (which would
    vanish on a grey image); use it with ``vmin=-0.5, vmax=max_label + 0.5`` so that each integer falls in
    its own bin.
    """
    from matplotlib import colormaps
    from matplotlib.colors import ListedColormap

    palette = [c for i, c in enumerate(colormaps["tab20"].colors) if i not in (14, 15)]
    colors = [(0.0, 0.0, 0.0, 0.0)] + [(*palette[(k * 7) % 18], 1.0) for k in range(1, max_label + 1)]
    return ListedColormap(colors, name="smriflow_labels")


def mosaic_svg(
    background: ImageLike,
    cuts: Mapping[str, list[float]],
    *,
    draw: Callable[[object], None] | None = None,
    vmin: float | None = None,
    vmax: float | None = None,
    cmap: str = "gray",
    modes: str = "xyz",
) -> str:
    """Draw ``background`` in rows of cuts (x, y, z by default), let ``draw`` add layers, return the SVG.

    Parameters
    ----------
    background : str, Path or nibabel image
        The image shown in grey (or ``cmap``).
    cuts : mapping
        World coordinates per axis, as :func:`cut_coords` returns.
    draw : callable, optional
        Called with each row's nilearn display, to add contours or overlays.
    vmin, vmax : float, optional
        Display range (default: :func:`robust_range`).
    cmap : str
        Colormap of the background.
    modes : str
        The rows, top to bottom: ``x`` sagittal, ``y`` coronal, ``z`` axial.

    Returns
    -------
    str
        A standalone SVG document.
    """
    from matplotlib import rc_context
    from matplotlib.figure import Figure
    from nilearn.plotting import plot_anat

    img = load_image(background, ndim=3)
    if vmin is None or vmax is None:
        low, high = robust_range(img)
        vmin = low if vmin is None else vmin
        vmax = high if vmax is None else vmax
    # layers stay separate rasters (composite_image off): an overlay keeps its own colours and alpha
    rc = {"svg.hashsalt": _SALT, "image.interpolation": "nearest", "image.composite_image": False}
    with rc_context(rc):
        rows = len(modes)
        fig = Figure(figsize=(_WIDTH_IN, rows * _ROW_IN), facecolor="black")
        for row, mode in enumerate(modes):
            display = plot_anat(
                img,
                display_mode=mode,
                cut_coords=list(cuts[mode]),
                figure=fig,
                axes=[0.0, 1.0 - (row + 1) / rows, 1.0, 1 / rows],
                black_bg=True,
                dim=0,
                draw_cross=False,
                colorbar=False,
                cmap=cmap,
                vmin=vmin,
                vmax=vmax,
            )
            if draw is not None:
                draw(display)
        buffer = io.StringIO()
        fig.savefig(buffer, format="svg", dpi=_DPI, facecolor="black", metadata={"Date": None})
    return buffer.getvalue()


def _binary(img: nb.spatialimages.SpatialImage, values) -> nb.Nifti1Image:
    """1 where the image takes one of ``values`` (None: any nonzero value), else 0."""
    data = np.asanyarray(img.dataobj)
    data = (data > 0 if values is None else np.isin(data, values)).astype(np.uint8)
    return nb.Nifti1Image(data, img.affine)


def _contour(display, img: nb.spatialimages.SpatialImage, color: str, width: float = 0.8) -> None:
    if np.asanyarray(img.dataobj).any():
        display.add_contours(img, levels=[0.5], colors=[color], linewidths=width, rasterized=True)


def input_svg(t1w: ImageLike, cuts: Mapping[str, list[float]]) -> str:
    """The image as it came in (after reorientation), grey scale."""
    return mosaic_svg(t1w, cuts)


def bias_svgs(
    corrected: ImageLike, bias: ImageLike, mask: ImageLike, cuts
) -> tuple[str, str, tuple[float, float]]:
    """The corrected image, and the bias field in colour with the brain mask's outline, over the same cuts.

    Returns
    -------
    corrected_svg, field_svg : str
        The two mosaics.
    field_range : tuple of float
        The field's 1st and 99th percentiles inside ``mask`` (the colour range of ``field_svg``).
    """
    low, high = robust_range(bias, mask, percentiles=(1, 99))
    outline = _binary(load_image(mask, ndim=3), None)
    field = mosaic_svg(
        bias,
        cuts,
        cmap="magma",
        vmin=low,
        vmax=high,
        draw=lambda display: _contour(display, outline, FIELD_OUTLINE_COLOR, 0.6),
    )
    return mosaic_svg(corrected, cuts), field, (low, high)


def mask_svg(t1w: ImageLike, mask: ImageLike, cuts) -> str:
    """The brain mask's outline (red) on the image."""
    mask_img = _binary(load_image(mask, ndim=3), None)
    return mosaic_svg(t1w, cuts, draw=lambda display: _contour(display, mask_img, MASK_COLOR, 1.0))


def tissue_svg(t1w: ImageLike, dseg: ImageLike, cuts) -> str:
    """CSF, GM and WM outlines (see :data:`TISSUE_COLORS`) from the tissue labels, on the image."""
    labels = load_image(dseg, ndim=3)
    layers = [(_binary(labels, list(values)), color) for _, values, color in TISSUE_COLORS]

    def draw(display) -> None:
        for img, color in layers:
            _contour(display, img, color, 0.7)

    return mosaic_svg(t1w, cuts, draw=draw)


def registration_svgs(
    std_t1w: ImageLike, template_t1w: ImageLike, template_mask: ImageLike
) -> tuple[str, str]:
    """The subject in template space and the template itself, same cuts, both with the template's outline.

    Shown one over the other and toggled (a flicker), the two layers reveal misalignment as movement.
    ``template_t1w`` and ``template_mask`` are resampled to ``std_t1w``'s grid when their grids differ.

    Returns
    -------
    subject_svg, template_svg : str
    """
    from nilearn.image import resample_to_img

    subject = load_image(std_t1w, ndim=3)
    template, outline = load_image(template_t1w, ndim=3), load_image(template_mask, ndim=3)
    if not same_grid(template, subject):
        template = resample_to_img(
            template, subject, interpolation="linear", copy_header=True, force_resample=True
        )
    if not same_grid(outline, subject):
        outline = resample_to_img(
            outline, subject, interpolation="nearest", copy_header=True, force_resample=True
        )
    outline = _binary(outline, None)
    box = crop_box(outline, margin_mm=4.0)
    subject, template, outline = crop(subject, box), crop(template, box), crop(outline, box, np.uint8)
    cuts = cut_coords(outline)

    def draw(display) -> None:
        _contour(display, outline, MASK_COLOR, 0.8)

    subject_range = robust_range(subject, outline)
    template_range = robust_range(template, outline)
    return (
        mosaic_svg(subject, cuts, draw=draw, vmin=subject_range[0], vmax=subject_range[1]),
        mosaic_svg(template, cuts, draw=draw, vmin=template_range[0], vmax=template_range[1]),
    )


def atlas_svg(t1w: ImageLike, atlas_dseg: ImageLike, cuts, *, modes: str = "z") -> str:
    """An atlas' labels (semi-transparent, :func:`label_colormap`) on the image (axial cuts by default)."""
    labels = load_image(atlas_dseg, ndim=3)
    data = np.asanyarray(labels.dataobj).astype(np.int32)
    top = int(data.max())
    if top < 1:
        return mosaic_svg(t1w, cuts, modes=modes)
    atlas = nb.Nifti1Image(data, labels.affine)
    cmap = label_colormap(top)

    def draw(display) -> None:
        display.add_overlay(
            atlas,
            cmap=cmap,
            vmin=-0.5,
            vmax=top + 0.5,
            transparency=0.65,
            threshold=0.5,
            interpolation="nearest",
        )

    return mosaic_svg(t1w, cuts, draw=draw, modes=modes)


def lesion_cuts(lesion: ImageLike, n_cuts: int = 7) -> dict[str, list[float]]:
    """World coordinates (mm) of up to ``n_cuts`` slices per axis that all cross the lesion.

    The slices sit at evenly spaced quantiles of the lesion voxels' positions along each axis (each one the
    centre of a lesion voxel), so they follow where the lesion load is; repeated positions are merged, so a
    small lesion gets fewer slices.

    Raises
    ------
    ValueError
        When the mask is empty.
    """
    xyz = _world_positions(lesion, "lesion mask")
    levels = np.linspace(0.0, 1.0, n_cuts + 2)[1:-1]
    cuts = {}
    for axis, key in enumerate("xyz"):
        positions = np.quantile(xyz[:, axis], levels, method="inverted_cdf")
        cuts[key] = sorted({round(float(p), 1) for p in positions})
    return cuts


def lesion_svg(t1w: ImageLike, lesion: ImageLike, dseg: ImageLike, cuts) -> str:
    """The lesion's outline (yellow) over the GM and WM outlines of ``dseg`` (:data:`TISSUE_COLORS`)."""
    labels = load_image(dseg, ndim=3)
    layers = [
        (_binary(labels, list(values)), color, 0.6) for name, values, color in TISSUE_COLORS if name != "CSF"
    ]
    layers.append((_binary(load_image(lesion, ndim=3), None), LESION_COLOR, 1.1))

    def draw(display) -> None:
        for img, color, width in layers:
            _contour(display, img, color, width)

    return mosaic_svg(t1w, cuts, draw=draw)


def contrast_svg(contrast: ImageLike, mask: ImageLike, dseg: ImageLike, cuts) -> str:
    """Another contrast on the T1w grid, with the T1w's brain-mask (red) and WM (magenta) outlines over it.

    A coregistration check: the outlines come from the T1w, so they follow the contrast's brain edge and
    grey/white boundary only when the two images are aligned. The grey range is the contrast's 0.5th-99.5th
    percentiles in the brain mask.
    """
    low, high = robust_range(contrast, mask)
    outline = _binary(load_image(mask, ndim=3), None)
    wm_color = next(color for name, _, color in TISSUE_COLORS if name == "WM")
    wm = _binary(load_image(dseg, ndim=3), [2])

    def draw(display) -> None:
        _contour(display, outline, MASK_COLOR, 0.8)
        _contour(display, wm, wm_color, 0.6)

    return mosaic_svg(contrast, cuts, draw=draw, vmin=low, vmax=high)
