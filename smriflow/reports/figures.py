"""The subject report's figures of the early stages, rendered apart from the report itself.

The mosaics of the input, the bias correction, the brain mask and the tissues need only what
``anat_preproc`` has after tissue segmentation. :func:`early_figures` renders them, and ``ReportFigures``
runs it as a node of its own while the registration runs (on the core it leaves idle), so that the report
node at the end of the workflow only draws the registration, the atlases and the thickness map and
assembles the page. :func:`subject_report` calls the same function when it is given no figures: the
document is the same either way.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import nibabel as nb
import numpy as np

from smriflow.reports import reportlets as rl

__all__ = [
    "FIGURES_VERSION",
    "Framing",
    "draw_early_figures",
    "early_figures",
    "framing",
    "read_figures",
    "write_figures",
]

#: Written into the figures file; a report refuses a file of another version.
FIGURES_VERSION = 1


class Framing(NamedTuple):
    """What every mosaic of a subject report shares (:func:`framing`)."""

    box: tuple[slice, slice, slice]
    mask: nb.Nifti1Image
    corrected: nb.Nifti1Image
    cuts: dict[str, list[float]]
    n_cuts: int


def early_figures(
    *,
    t1w: str | Path,
    t1w_preproc: str | Path,
    t1w_biasfield: str | Path,
    t1w_mask: str | Path,
    t1w_dseg: str | Path,
    n_cuts: int = 7,
) -> dict[str, Any]:
    """Render the report's mosaics of the input, bias, brain mask and tissues.

    Parameters are those of :func:`smriflow.reports.subject.subject_report`.

    Returns
    -------
    dict
        ``input``, ``bias_corrected``, ``bias_field``, ``mask``, ``tissues`` (SVG documents),
        ``bias_range`` (the field's colour range) and the ``n_cuts`` they were drawn with.

    Raises
    ------
    ValueError
        When an image is not on the grid of ``t1w_mask`` (one line naming it).
    """
    for what, path in {"t1w": t1w, "t1w_preproc": t1w_preproc, "t1w_biasfield": t1w_biasfield}.items():
        rl.check_grid(path, t1w_mask, what)
    rl.check_grid(t1w_dseg, t1w_mask, "t1w_dseg")
    return draw_early_figures(t1w, t1w_biasfield, t1w_dseg, framing(t1w_mask, t1w_preproc, n_cuts))


def framing(t1w_mask: str | Path, t1w_preproc: str | Path, n_cuts: int) -> Framing:
    """The box, the cropped mask and corrected image, and the cuts that every mosaic of the report shares."""
    box = rl.crop_box(t1w_mask, margin_mm=15.0)
    mask = rl.crop(t1w_mask, box, np.uint8)
    return Framing(box, mask, rl.crop(t1w_preproc, box), rl.cut_coords(mask, n_cuts), int(n_cuts))


def draw_early_figures(
    t1w: str | Path, t1w_biasfield: str | Path, t1w_dseg: str | Path, frame: Framing
) -> dict[str, Any]:
    """:func:`early_figures` on images already checked, in a :func:`framing` already made."""
    box, mask, corrected, cuts = frame.box, frame.mask, frame.corrected, frame.cuts
    corrected_svg, field_svg, (low, high) = rl.bias_svgs(corrected, rl.crop(t1w_biasfield, box), mask, cuts)
    return {
        "version": FIGURES_VERSION,
        "n_cuts": frame.n_cuts,
        "input": rl.input_svg(rl.crop(t1w, box), cuts),
        "bias_corrected": corrected_svg,
        "bias_field": field_svg,
        "bias_range": [float(low), float(high)],
        "mask": rl.mask_svg(corrected, mask, cuts),
        "tissues": rl.tissue_svg(corrected, rl.crop(t1w_dseg, box, np.uint8), cuts),
    }


def write_figures(figures: Mapping[str, Any], out_file: str | Path) -> Path:
    """Write the figures of :func:`early_figures` as JSON; return the path."""
    out = Path(out_file)
    out.write_text(json.dumps(dict(figures), sort_keys=True), encoding="utf-8")
    return out


def read_figures(path: str | Path) -> dict[str, Any]:
    """Read a file of :func:`write_figures`.

    Raises
    ------
    ValueError
        One line naming the file when it is not such a file (or of another :data:`FIGURES_VERSION`).
    """
    try:
        figures = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: cannot read the report's figures ({exc})") from None
    if not isinstance(figures, dict) or figures.get("version") != FIGURES_VERSION:
        raise ValueError(f"{path}: not a figures file of this smriflow (version {FIGURES_VERSION})")
    return figures
