"""The subject report's figures, rendered by stage apart from the report itself.

Each :data:`STAGES` names figures that need only what ``anat_preproc`` has at some point of the run:

* ``early``: the mosaics of the input, the bias correction, the brain mask and the tissues (after tissue
  segmentation);
* ``late``: the registration flicker (the T1w in template space) and the atlas mosaics (after the
  parcellation).

:func:`report_figures` renders one stage, and ``ReportFigures`` runs it as a node of its own as soon as
its inputs exist, on the core that a long node leaves idle (the early figures while the registration runs,
the late ones while the thickness does), so that the report node at the end of the workflow only draws what
needs the thickness and assembles the page. :func:`smriflow.reports.subject.subject_report` draws the stages
it is not given with the same function (:func:`complete_figures`): the document is the same either way.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import nibabel as nb
import numpy as np

from smriflow.data.templates import DEFAULT_TEMPLATE, get_template
from smriflow.reports import reportlets as rl

__all__ = [
    "FIGURES_VERSION",
    "STAGES",
    "Framing",
    "complete_figures",
    "draw_figures",
    "drawn_with",
    "framing",
    "read_figures",
    "registration_figure",
    "report_figures",
    "write_figures",
]

#: Written into the figures file; a report refuses a file of another version.
FIGURES_VERSION = 2

#: The stages of figures (:func:`report_figures`) and what each draws.
STAGES: dict[str, str] = {
    "early": "the input, the bias field and corrected image, the brain mask, the tissues",
    "late": "the registration flicker, the atlases",
}


class Framing(NamedTuple):
    """What every mosaic of a subject report shares (:func:`framing`)."""

    box: tuple[slice, slice, slice]
    mask: nb.Nifti1Image
    corrected: nb.Nifti1Image
    cuts: dict[str, list[float]]
    n_cuts: int


def report_figures(
    stage: str,
    *,
    t1w_mask: str | Path,
    t1w_preproc: str | Path,
    n_cuts: int = 7,
    t1w: str | Path | None = None,
    t1w_biasfield: str | Path | None = None,
    t1w_dseg: str | Path | None = None,
    std_t1w: str | Path | None = None,
    template: str = DEFAULT_TEMPLATE,
    atlas_dseg: Sequence[str | Path] = (),
) -> dict[str, Any]:
    """Render one stage of the report's figures.

    Parameters are those of :func:`smriflow.reports.subject.subject_report`; ``stage`` is a key of
    :data:`STAGES`. The ``early`` stage needs ``t1w``, ``t1w_biasfield`` and ``t1w_dseg``; the ``late`` one
    reads ``std_t1w`` (none: the report says so), ``template`` and ``atlas_dseg`` (possibly none).

    Returns
    -------
    dict
        See :func:`draw_figures`.

    Raises
    ------
    ValueError
        An unknown stage, an image the early stage needs missing, or an image not on the grid of
        ``t1w_mask`` (one line naming it).
    """
    _check_stage(stage)
    images = {"t1w": t1w, "t1w_biasfield": t1w_biasfield, "t1w_dseg": t1w_dseg}
    native = {"t1w_preproc": t1w_preproc}
    if stage == "early":
        if missing := [name for name, path in images.items() if path is None]:
            raise ValueError(f"the early figures need {', '.join(missing)}")
        native.update(images)
    else:
        native.update({f"atlas_dseg[{i}]": path for i, path in enumerate(atlas_dseg)})
    for what, path in native.items():
        rl.check_grid(path, t1w_mask, what)
    frame = framing(t1w_mask, t1w_preproc, n_cuts)
    return draw_figures(stage, frame, **images, std_t1w=std_t1w, template=template, atlas_dseg=atlas_dseg)


def framing(t1w_mask: str | Path, t1w_preproc: str | Path, n_cuts: int) -> Framing:
    """The box, the cropped mask and corrected image, and the cuts that every mosaic of the report shares."""
    box = rl.crop_box(t1w_mask, margin_mm=15.0)
    mask = rl.crop(t1w_mask, box, np.uint8)
    return Framing(box, mask, rl.crop(t1w_preproc, box), rl.cut_coords(mask, n_cuts), int(n_cuts))


def drawn_with(
    stage: str,
    n_cuts: int,
    *,
    std_t1w: str | Path | None = None,
    template: str = DEFAULT_TEMPLATE,
    atlas_dseg: Sequence[str | Path] = (),
    **_images: Any,
) -> dict[str, Any]:
    """The settings a stage's figures depend on besides the images: a report refuses figures of others."""
    _check_stage(stage)
    if stage == "early":
        return {"n_cuts": int(n_cuts)}
    return {
        "n_cuts": int(n_cuts),
        "template": template,
        "std_t1w": std_t1w is not None,
        "atlases": len(atlas_dseg),
    }


def draw_figures(stage: str, frame: Framing, **images: Any) -> dict[str, Any]:
    """:func:`report_figures` on images already checked, in a :func:`framing` already made.

    Returns
    -------
    dict
        ``version``, ``stage`` and ``drawn_with`` (:func:`drawn_with`), then the figures (SVG documents).
        ``early``: ``input``, ``bias_corrected``, ``bias_field``, ``mask``, ``tissues`` and ``bias_range``
        (the field's colour range). ``late``: ``registration`` (:func:`registration_figure`) and ``atlases``
        (one mosaic per ``atlas_dseg``, in order).
    """
    box, mask, corrected, cuts = frame.box, frame.mask, frame.corrected, frame.cuts
    figures: dict[str, Any] = {
        "version": FIGURES_VERSION,
        "stage": stage,
        "drawn_with": drawn_with(stage, frame.n_cuts, **images),
    }
    if stage == "early":
        corrected_svg, field_svg, (low, high) = rl.bias_svgs(
            corrected, rl.crop(images["t1w_biasfield"], box), mask, cuts
        )
        figures.update(
            input=rl.input_svg(rl.crop(images["t1w"], box), cuts),
            bias_corrected=corrected_svg,
            bias_field=field_svg,
            bias_range=[float(low), float(high)],
            mask=rl.mask_svg(corrected, mask, cuts),
            tissues=rl.tissue_svg(corrected, rl.crop(images["t1w_dseg"], box, np.uint8), cuts),
        )
    else:
        template = images.get("template", DEFAULT_TEMPLATE)
        figures.update(
            registration=registration_figure(images.get("std_t1w"), template),
            atlases=[
                rl.atlas_svg(corrected, rl.crop(path, box, np.int32), cuts)
                for path in images.get("atlas_dseg", ())
            ],
        )
    return figures


def registration_figure(std_t1w: str | Path | None, template: str) -> dict[str, str] | None:
    """The registration flicker's two layers: ``subject`` and ``template`` (SVG documents).

    Returns
    -------
    dict or None
        None without ``std_t1w``; ``{"error": message}`` when the template is not installed at the
        resolution of ``std_t1w``.
    """
    if std_t1w is None:
        return None
    zoom = int(round(float(min(nb.load(str(std_t1w)).header.get_zooms()[:3]))))
    try:
        tpl = get_template(template, resolution=max(zoom, 1), desc="brain")
        tpl_mask = get_template(template, resolution=max(zoom, 1), suffix="mask", desc="brain")
    except (FileNotFoundError, ValueError) as exc:
        return {"error": str(exc)}
    subject_svg, template_svg = rl.registration_svgs(std_t1w, tpl, tpl_mask)
    return {"subject": subject_svg, "template": template_svg}


def complete_figures(
    figures: Sequence[Mapping[str, Any]], frame: Framing, **images: Any
) -> dict[str, Mapping[str, Any]]:
    """Every stage's figures, stage -> figures: those given, checked, and the others drawn here.

    Parameters
    ----------
    figures : sequence of mappings
        Figures of :func:`report_figures` drawn from ``images`` (any stages, each at most once).
    frame : Framing
        The report's :func:`framing`.
    **images
        The report's images (checked already) and settings, as :func:`report_figures` takes them.

    Raises
    ------
    ValueError
        One line, when a stage is given twice or its figures were drawn with other settings.
    """
    given: dict[str, Mapping[str, Any]] = {}
    for drawn in figures:
        stage = drawn.get("stage")
        if stage in given:
            raise ValueError(f"'figures': the {stage} figures are given twice")
        for key, value in drawn_with(stage, frame.n_cuts, **images).items():
            if (other := drawn.get("drawn_with", {}).get(key)) != value:
                raise ValueError(
                    f"the {stage} 'figures' were drawn with {key}={other}, the report asks for {value}"
                )
        given[stage] = drawn
    return {
        stage: given[stage] if stage in given else draw_figures(stage, frame, **images) for stage in STAGES
    }


def _check_stage(stage: Any) -> None:
    if stage not in STAGES:
        raise ValueError(f"stage: {stage!r} is not one of {', '.join(STAGES)}")


def write_figures(figures: Mapping[str, Any], out_file: str | Path) -> Path:
    """Write the figures of :func:`report_figures` as JSON; return the path."""
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
    if (
        not isinstance(figures, dict)
        or figures.get("version") != FIGURES_VERSION
        or figures.get("stage") not in STAGES
    ):
        raise ValueError(f"{path}: not a figures file of this smriflow (version {FIGURES_VERSION})")
    return figures
