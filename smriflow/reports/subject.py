"""The per-subject HTML report ``sub-<label>.html``: reportlets, IQM table, methods and warnings in one file.

:func:`subject_report` renders it from the outputs of ``anat_preproc``; :func:`update_subject_report`
rewrites its marked blocks (IQM table with group percentiles, group QC verdict, methods) once a group table
exists, which is what the group QC step does.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from smriflow.data.templates import DEFAULT_TEMPLATE
from smriflow.reports import reportlets as rl
from smriflow.reports import sections as sx
from smriflow.reports.blocks import (
    brain_notes,
    brain_rows,
    conform_notes,
    denoise_notes,
    group_iqms,
    iqm_table_html,
    methods_html,
    references_html,
    tissue_notes,
    verdict_html,
)
from smriflow.reports.figures import complete_figures, framing, read_figures
from smriflow.reports.html import block, escape, figure, page, replace_block, section, svg_img, table

__all__ = ["report_filename", "subject_report", "update_subject_report", "write_subject_report"]


def report_filename(subject: str, session: str = "") -> str:
    """``sub-<label>.html`` (``sub-<label>_ses-<label>.html`` with a session)."""
    subject = subject.removeprefix("sub-")
    session = (session or "").removeprefix("ses-")
    return f"sub-{subject}_ses-{session}.html" if session else f"sub-{subject}.html"


def _atlas_name(path: str | Path) -> str:
    found = re.search(r"atlas-([A-Za-z0-9]+)", Path(path).name)
    return found.group(1) if found else Path(path).name.split(".")[0]


def subject_report(
    *,
    subject: str,
    t1w: str | Path,
    t1w_preproc: str | Path,
    t1w_biasfield: str | Path,
    t1w_mask: str | Path,
    t1w_dseg: str | Path,
    session: str = "",
    std_t1w: str | Path | None = None,
    template: str = DEFAULT_TEMPLATE,
    atlas_dseg: Sequence[str | Path] = (),
    atlas_names: Sequence[str] = (),
    iqms: Mapping[str, float] | None = None,
    conform: Mapping | None = None,
    methods: str = "",
    group: pd.DataFrame | None = None,
    notes: Sequence[str] = (),
    n_cuts: int = 7,
    lesion_mask: str | Path | None = None,
    contrasts: Mapping[str, str | Path] | None = None,
    contrast_records: Mapping[str, Mapping] | None = None,
    runs: Mapping | Sequence | None = None,
    surfaces_dir: str | Path = "",
    tissues: Mapping | None = None,
    brain: Mapping | None = None,
    thickness: str | Path | None = None,
    thickness_record: Mapping | None = None,
    denoise: Mapping | None = None,
    figures: Sequence[Mapping[str, Any]] = (),
) -> str:
    """Render the HTML report of one T1w and its preprocessing.

    Parameters
    ----------
    subject, session : str
        Labels (with or without ``sub-``/``ses-``).
    t1w : path
        The conformed input (RAS, before bias correction).
    t1w_preproc, t1w_biasfield, t1w_mask, t1w_dseg : path
        N4-corrected image, bias field, brain mask and tissue labels (1 GM, 2 WM, 3 CSF), same grid.
    std_t1w : path, optional
        The T1w resampled into ``template``; without it there is no registration section.
    atlas_dseg, atlas_names : sequences
        Atlas label images on the T1w grid and their names (default: the ``atlas-`` entity of each file).
    iqms : mapping, optional
        IQM name -> value (the ``desc-iqms_T1w.json`` of the IQM step).
    conform : mapping, optional
        The record of ``conform`` (warnings, reorientation).
    methods : str
        Methods paragraph (the workflow's ``doc`` text).
    group : pandas.DataFrame, optional
        The group table of ``qc_group``: adds percentiles, and the verdict of this image when it is a row.
    notes : sequence of str
        Other warnings to show.
    n_cuts : int
        Slices per row of each mosaic.
    lesion_mask : path, optional
        Binary lesion mask on the T1w grid: adds the "Lesions" section.
    contrasts : mapping, optional
        Contrast name (``T2w``, ``FLAIR``) -> that image resampled on the T1w grid: adds "Other contrasts".
    contrast_records : mapping, optional
        Contrast name -> the JSON record of its registration to the T1w (``ContrastToT1w.out_report``).
    runs : mapping or list, optional
        The record of the T1w runs combined (:func:`smriflow.reports.sections.runs_section`): adds a table
        when it lists two runs or more.
    surfaces_dir : path
        A ``$SUBJECTS_DIR`` (FreeSurfer, FastSurfer) or fMRIPrep derivatives folder: adds the "Surfaces"
        section (``""``: none).
    tissues : mapping, optional
        The tissue segmentation's record: its warnings and the channels of a multichannel segmentation
        join the summary's list.
    brain : mapping, optional
        The brain extraction's record (``BrainExtraction.out_report``): which path ran and why, and its
        checks, in a table under the brain mask; a fallback, retries or a skull-stripped input join the
        summary's list.
    thickness, thickness_record : path and mapping, optional
        smriflow's thickness map on the T1w grid and the ``CorticalThickness`` record: add the "Cortical
        thickness" section.
    denoise : mapping, optional
        The denoising stage's record (``AdaptiveDenoise.out_report``): a denoised T1w, or noise that was
        measured above the threshold but not acted upon, joins the summary's list.
    figures : sequence of mappings
        Figures already rendered from these same images and settings by
        :func:`smriflow.reports.figures.report_figures` (the ``ReportFigures`` nodes), one mapping per stage:
        the mosaics of the input, bias, brain mask and tissues (``early``), the registration flicker and the
        atlases (``late``). The stages not given are rendered here; the document is the same either way.

    Returns
    -------
    str
        The HTML document (deterministic: the same inputs give the same bytes).
    """
    subject = subject.removeprefix("sub-")
    session = (session or "").removeprefix("ses-")
    label = f"sub-{subject}" + (f" ses-{session}" if session else "")
    native = {"t1w": t1w, "t1w_preproc": t1w_preproc, "t1w_biasfield": t1w_biasfield, "t1w_dseg": t1w_dseg}
    native.update({f"atlas_dseg[{i}]": path for i, path in enumerate(atlas_dseg)})
    native.update({name: path for name, path in (contrasts or {}).items()})
    native.update({"lesion_mask": lesion_mask} if lesion_mask is not None else {})
    native.update({"thickness": thickness} if thickness is not None else {})
    for what, path in native.items():
        rl.check_grid(path, t1w_mask, what)
    names = list(atlas_names) or [_atlas_name(p) for p in atlas_dseg]
    if len(names) != len(atlas_dseg):
        raise ValueError(f"atlas_names: {len(names)} names for {len(atlas_dseg)} atlas images")
    frame = framing(t1w_mask, t1w_preproc, n_cuts)
    box, mask, corrected, cuts = frame.box, frame.mask, frame.corrected, frame.cuts
    drawn = complete_figures(  # the images were checked above
        figures,
        frame,
        t1w=t1w,
        t1w_biasfield=t1w_biasfield,
        t1w_dseg=t1w_dseg,
        std_t1w=std_t1w,
        template=template,
        atlas_dseg=atlas_dseg,
    )
    early, late = drawn["early"], drawn["late"]
    sections = []
    warnings = [("warn", str(n)) for n in notes] + conform_notes(conform) + tissue_notes(tissues)
    warnings += brain_notes(brain) + denoise_notes(denoise)
    sections.append(_summary(label, warnings, conform, group, subject, session))
    sections.append(
        section(
            "input",
            "Input",
            "The T1w as it came in, reoriented to RAS (before bias correction). Look for "
            "motion (ringing, blurring), wrap-around, missing slices and the field of view.",
            figure(early["input"], "input T1w mosaic"),
        )
    )
    runs_html = sx.runs_section(runs) if runs is not None else ""
    if runs_html:
        sections.append(runs_html)
    low, high = early["bias_range"]
    sections.append(
        section(
            "bias",
            "Bias field and corrected image",
            "N4 divides the input by a smooth multiplicative field. "
            "The corrected image should look evenly bright from top to bottom and front to back; the field "
            "should be smooth, without anatomy in it.",
            figure(early["bias_corrected"], "bias-corrected T1w", "Corrected image.")
            + figure(
                early["bias_field"],
                "bias field",
                f"Bias field, magma colours from {low:.3g} (dark) to {high:.3g} "
                "(bright): its 1st and 99th percentiles in the brain mask.",
            ),
        )
    )
    sections.append(
        section(
            "mask",
            "Brain mask",
            "The outline (red) should follow the outer edge of the CSF around the "
            "brain: no scalp, eyes or dura inside, no cortex or cerebellum cut off.",
            figure(early["mask"], "brain mask contour")
            + (
                table(["brain extraction", ""], [[escape(a), escape(b)] for a, b in brain_rows(brain)])
                if brain
                else ""
            ),
        )
    )
    legend = "".join(f'<span style="background:{color}"></span>{name}' for name, _, color in rl.TISSUE_COLORS)
    sections.append(
        section(
            "tissues",
            "Tissue segmentation",
            "Outlines of the tissue labels. Green (GM) is the outer edge of grey + white matter "
            "and should follow the surface of the cortex; magenta (WM) is the grey/white edge and "
            "should leave the deep grey nuclei outside; cyan (CSF) is the outer edge of all tissue.",
            f'<p class="legend">{legend}</p>' + figure(early["tissues"], "tissue contours"),
        )
    )
    if lesion_mask is not None:
        sections.append(sx.lesion_section(corrected, lesion_mask, t1w_dseg, box, n_cuts))
    if contrasts or contrast_records:
        images = {name: rl.crop(path, box) for name, path in (contrasts or {}).items()}
        dseg = rl.crop(t1w_dseg, box, np.uint8)
        sections.append(sx.contrasts_section(images, contrast_records or {}, mask, dseg, cuts))
    sections.append(_registration(late["registration"], template))
    if atlas_dseg:
        atlases = "".join(
            f"<h3>{escape(name)}</h3>" + figure(svg, f"atlas {name}")
            for name, svg in zip(names, late["atlases"], strict=True)
        )
        sections.append(
            section(
                "atlases",
                "Atlases",
                "Each atlas warped to this T1w (template → T1w transform). Regions "
                "should sit on the matching anatomy and stop at the brain's edge.",
                atlases,
            )
        )
    has_thickness = thickness is not None or thickness_record is not None
    if has_thickness:
        image = rl.crop(thickness, box) if thickness is not None else None
        sections.append(sx.thickness_section(corrected, image, thickness_record, cuts))
    if surfaces_dir:
        sections.append(sx.surfaces_section(surfaces_dir, subject, session))
    sections.append(
        section(
            "iqms",
            "Image-quality metrics",
            "MRIQC-style IQMs of this image and processing-quality metrics (definitions in docs/iqms.md).",
            block("iqms", iqm_table_html(iqms, group)),
        )
    )
    sections.append(
        section(
            "methods",
            "Methods",
            "What was done, with which software, and what to cite.",
            block("methods", methods_html(methods)) + references_html(template=template, atlases=names),
        )
    )
    nav = [("summary", "Summary"), ("input", "Input")]
    nav += [("runs", "Runs")] if runs_html else []
    nav += [("bias", "Bias"), ("mask", "Brain mask"), ("tissues", "Tissues")]
    nav += [("lesions", "Lesions")] if lesion_mask is not None else []
    nav += [("contrasts", "Contrasts")] if contrasts or contrast_records else []
    nav += [("registration", "Registration")]
    nav += [("atlases", "Atlases")] if atlas_dseg else []
    nav += [("thickness", "Thickness")] if has_thickness else []
    nav += [("surfaces", "Surfaces")] if surfaces_dir else []
    nav += [("iqms", "IQMs"), ("methods", "Methods")]
    return page(f"smriflow report: {label}", nav, "\n".join(sections))


def _summary(label, warnings, conform, group, subject, session) -> str:
    items = "".join(f'<li class="{level}">{escape(text)}</li>' for level, text in warnings)
    issues = f"<ul>{items}</ul>" if items else '<p class="ok">No warnings from input validation.</p>'
    facts = ""
    if conform:
        keys = ("source_file", "orientation", "shape", "zooms", "dtype", "affine_source")
        rows = [[escape(k), escape(conform[k])] for k in keys if k in conform]
        facts = table(["input", ""], rows)
    verdict = block("verdict", verdict_html(_group_row(group, subject, session)))
    return (
        f'<section id="summary"><h1>{escape(label)}</h1>{verdict}<h2>Errors and warnings</h2>'
        f"{issues}{facts}</section>"
    )


def _registration(layers: Mapping[str, str] | None, template: str) -> str:
    """The registration section from :func:`smriflow.reports.figures.registration_figure`'s layers."""
    how = (
        "The T1w normalized to the template (first layer) and the template itself (second layer) alternate "
        "every second, both with the template's brain outline (red); hover to pause. Structures should stay "
        "still; anything that jumps is misregistered."
    )
    if layers is None or "error" in layers:  # no normalized T1w, or no template to show it on
        warning = "No normalized T1w given." if layers is None else layers["error"]
        return section(
            "registration", "Registration to the template", how, f'<p class="warn">{escape(warning)}</p>'
        )
    content = (
        f'<figure><div class="flicker">{svg_img(layers["subject"], "T1w in template space")}'
        f"{svg_img(layers['template'], f'template {template}', css_class='top')}</div>"
        f'<p class="caption">Template: {escape(template)}. The layers toggle every second.</p></figure>'
    )
    return section("registration", "Registration to the template", how, content)


def _group_row(group: pd.DataFrame | None, subject: str, session: str) -> Mapping | None:
    if group is None or "subject" not in group.columns:
        return None
    match = group["subject"].astype(str) == subject
    if "session" in group.columns:
        match &= group["session"].fillna("").astype(str) == session
    rows = group[match]
    return rows.iloc[0].to_dict() if len(rows) else None


def update_subject_report(
    document: str,
    *,
    subject: str,
    session: str = "",
    group: pd.DataFrame,
    methods: str | None = None,
) -> str:
    """Rewrite a subject report's verdict and IQM table from the group table (and its methods, if given).

    The IQM values come from the subject's row of ``group``.

    Raises
    ------
    ValueError
        When the subject is not in the group table, or the document lacks a marked block.
    """
    subject = subject.removeprefix("sub-")
    session = (session or "").removeprefix("ses-")
    row = _group_row(group, subject, session)
    if row is None:
        raise ValueError(
            f"sub-{subject}{'_ses-' + session if session else ''} is not a row of the group table"
        )
    iqms = {k: float(row[k]) for k in group_iqms(group) if pd.notna(row[k])}
    document = replace_block(document, "verdict", verdict_html(row))
    document = replace_block(document, "iqms", iqm_table_html(iqms, group))
    if methods is not None:
        document = replace_block(document, "methods", methods_html(methods))
    return document


def write_subject_report(
    out_file: str | Path,
    *,
    iqms_file: str | Path | None = None,
    group_tsv: str | Path | None = None,
    runs_file: str | Path | None = None,
    contrast_record_files: Mapping[str, str | Path] | None = None,
    tissues_file: str | Path | None = None,
    brain_file: str | Path | None = None,
    thickness_file: str | Path | None = None,
    denoise_file: str | Path | None = None,
    figures_files: Sequence[str | Path] = (),
    **kwargs,
) -> Path:
    """Render :func:`subject_report` into ``out_file``, reading the JSON and TSV files given.

    ``kwargs`` are those of :func:`subject_report`; ``iqms``, ``group``, ``runs``, ``contrast_records`` and
    ``tissues`` come from ``iqms_file``, ``group_tsv``, ``runs_file``, ``contrast_record_files`` (name -> JSON
    file), ``tissues_file`` and ``thickness_file`` (``thickness_record``); ``brain`` from ``brain_file``,
    ``denoise`` from ``denoise_file``, ``figures`` from ``figures_files``
    (:func:`smriflow.reports.figures.write_figures`, one file per stage).

    Raises
    ------
    ValueError
        When the IQM file is not a JSON object of numbers.
    """

    if iqms_file:
        from smriflow.qc.iqms import read_iqms

        kwargs["iqms"], _ = read_iqms(iqms_file)
    if group_tsv:
        from smriflow.reports.group import read_group_table

        kwargs["group"] = read_group_table(group_tsv)
    if runs_file:
        kwargs["runs"] = sx.read_record(runs_file, "record of the T1w runs")
    if contrast_record_files:
        kwargs["contrast_records"] = {
            name: sx.read_record(path, f"{name} registration record")
            for name, path in contrast_record_files.items()
        }
    if tissues_file:
        kwargs["tissues"] = sx.read_record(tissues_file, "record of the tissue segmentation")
    if brain_file:
        kwargs["brain"] = sx.read_record(brain_file, "record of the brain extraction")
    if thickness_file:
        kwargs["thickness_record"] = sx.read_record(thickness_file, "cortical thickness record")
    if denoise_file:
        kwargs["denoise"] = sx.read_record(denoise_file, "record of the denoising")
    if figures_files:
        kwargs["figures"] = [read_figures(path) for path in figures_files]
    out = Path(out_file)
    out.write_text(subject_report(**kwargs), encoding="utf-8")
    return out
