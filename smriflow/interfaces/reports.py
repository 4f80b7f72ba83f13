"""HTML reports: the per-subject report and the group QC page (thin shells over :mod:`smriflow.reports`)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    Directory,
    File,
    InputMultiObject,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)

from smriflow.data.templates import DEFAULT_TEMPLATE

__all__ = ["GroupQCReport", "ReportFigures", "SubjectReport"]


class _ReportImagesInputSpec(BaseInterfaceInputSpec):
    """What frames the report's mosaics and what its late figures show (ReportFigures and SubjectReport)."""

    t1w_preproc = File(exists=True, mandatory=True, desc="bias-corrected T1w (RAS)")
    t1w_mask = File(exists=True, mandatory=True, desc="brain mask, on the T1w grid")
    n_cuts = traits.Range(low=1, high=12, value=7, usedefault=True, desc="slices per row of each mosaic")
    std_t1w = File(exists=True, desc="T1w in template space (registration section)")
    template = traits.Str(DEFAULT_TEMPLATE, usedefault=True, resource="template", desc="template of std_t1w")
    atlas_dseg = InputMultiObject(File(exists=True), desc="atlas label images on the T1w grid")


class _SubjectReportInputSpec(_ReportImagesInputSpec):
    in_t1w = File(exists=True, mandatory=True, desc="conformed input T1w (RAS, before bias correction)")
    t1w_biasfield = File(exists=True, mandatory=True, desc="N4 bias field, on the T1w grid")
    t1w_dseg = File(exists=True, mandatory=True, desc="tissue labels (1 GM, 2 WM, 3 CSF), on the T1w grid")
    atlas_names = traits.List(
        traits.Str, resource="atlas", desc="names of the atlases (default: the atlas- entity of each file)"
    )
    iqms = File(exists=True, desc="IQM JSON (name -> value) of this image")
    conform_report = traits.Dict(desc="record of ConformImage (warnings, reorientation)")
    methods = traits.Str("", usedefault=True, desc="methods paragraph shown in the report")
    group_tsv = File(exists=True, desc="group IQM table: adds percentiles and the group QC verdict")
    source_file = traits.Str(desc="the BIDS input file, whose sub-/ses- entities label the report")
    subject = traits.Str(desc="subject label (default: from source_file)")
    session = traits.Str(desc="session label (default: from source_file, else none)")
    lesion_mask = File(exists=True, desc="binary lesion mask on the T1w grid: adds the Lesions section")
    t2w_t1w = File(exists=True, desc="T2w resampled on the T1w grid: adds it to the Other contrasts section")
    flair_t1w = File(
        exists=True, desc="FLAIR resampled on the T1w grid: adds it to the Other contrasts section"
    )
    t2w_record = File(exists=True, desc="JSON record of the T2w's registration (ContrastToT1w.out_report)")
    flair_record = File(
        exists=True, desc="JSON record of the FLAIR's registration (ContrastToT1w.out_report)"
    )
    runs_record = File(
        exists=True, desc="JSON record of the T1w runs combined (method, runs): adds the T1w runs table"
    )
    tissues_record = File(
        exists=True,
        desc="JSON record of TissueSegmentation: its warnings and multichannel channels join the summary",
    )
    brain_record = File(
        exists=True,
        desc="JSON record of BrainExtraction (out_report): which path ran and why, under the brain mask",
    )
    denoise_record = File(
        exists=True,
        desc="JSON record of AdaptiveDenoise: a denoised T1w, or noise left as it was, joins the summary",
    )
    thickness = File(exists=True, desc="thickness map on the T1w grid (CorticalThickness): adds the section")
    thickness_record = File(exists=True, desc="JSON record of CorticalThickness: its means and regions")
    surfaces_dir = traits.Str(
        "",
        usedefault=True,
        desc="$SUBJECTS_DIR (FreeSurfer/FastSurfer) or fMRIPrep derivatives folder with the subject's "
        "surfaces: adds the Surfaces section ('': none)",
    )
    figures = File(
        exists=True,
        desc="figures rendered from these inputs by ReportFigures (in anat_preproc its early stage); the "
        "stages no figures file holds are drawn here",
    )
    late_figures = File(
        exists=True,
        desc="a second stage's figures file of ReportFigures (in anat_preproc its late stage: the "
        "registration flicker and the atlases)",
    )


class _SubjectReportOutputSpec(TraitedSpec):
    out_report = File(exists=True, desc="self-contained HTML report sub-<label>[_ses-<label>].html")


class SubjectReport(SimpleInterface):
    """Write the HTML report of one T1w: mosaics, contours, registration flicker, atlases, IQMs, methods.

    Optional inputs add sections: ``lesion_mask`` (Lesions), ``t2w_t1w``/``flair_t1w`` and their
    registration records (Other contrasts), ``runs_record`` (T1w runs combined), ``thickness`` and
    ``thickness_record`` (Cortical thickness) and ``surfaces_dir``
    (Surfaces: thickness on the pial mesh). Without them the report is unchanged.

    The labels come from ``subject``/``session``, else from the ``sub-``/``ses-`` entities of
    ``source_file``. See :func:`smriflow.reports.subject.subject_report`.
    """

    input_spec = _SubjectReportInputSpec
    output_spec = _SubjectReportOutputSpec

    def _run_interface(self, runtime):
        from smriflow.reports.subject import report_filename, write_subject_report

        inputs = self.inputs
        subject, session = _labels(inputs)
        optional = _optional(
            inputs,
            "std_t1w",
            "conform_report",
            "iqms",
            "group_tsv",
            "lesion_mask",
            "t2w_t1w",
            "flair_t1w",
            "t2w_record",
            "flair_record",
            "runs_record",
            "tissues_record",
            "brain_record",
            "denoise_record",
            "thickness",
            "thickness_record",
            "figures",
            "late_figures",
        )
        contrasts = {"T2w": optional["t2w_t1w"], "FLAIR": optional["flair_t1w"]}
        records = {"T2w": optional["t2w_record"], "FLAIR": optional["flair_record"]}
        out = write_subject_report(
            Path(runtime.cwd) / report_filename(subject, session),
            iqms_file=optional["iqms"],
            group_tsv=optional["group_tsv"],
            subject=subject,
            session=session,
            t1w=inputs.in_t1w,
            t1w_preproc=inputs.t1w_preproc,
            t1w_biasfield=inputs.t1w_biasfield,
            t1w_mask=inputs.t1w_mask,
            t1w_dseg=inputs.t1w_dseg,
            std_t1w=optional["std_t1w"],
            template=inputs.template,
            atlas_dseg=list(inputs.atlas_dseg) if isdefined(inputs.atlas_dseg) else [],
            atlas_names=list(inputs.atlas_names) if isdefined(inputs.atlas_names) else [],
            conform=optional["conform_report"],
            methods=inputs.methods,
            n_cuts=inputs.n_cuts,
            lesion_mask=optional["lesion_mask"],
            contrasts={name: path for name, path in contrasts.items() if path},
            contrast_record_files={name: path for name, path in records.items() if path},
            runs_file=optional["runs_record"],
            tissues_file=optional["tissues_record"],
            brain_file=optional["brain_record"],
            denoise_file=optional["denoise_record"],
            thickness=optional["thickness"],
            thickness_file=optional["thickness_record"],
            figures_files=[path for path in (optional["figures"], optional["late_figures"]) if path],
            surfaces_dir=inputs.surfaces_dir,
        )
        self._results["out_report"] = str(out)
        return runtime


class _ReportFiguresInputSpec(_ReportImagesInputSpec):
    stage = traits.Enum(
        "early",
        "late",
        usedefault=True,
        desc="which figures: early (input, bias, brain mask, tissues: needs in_t1w, t1w_biasfield and "
        "t1w_dseg) or late (registration flicker from std_t1w and template, atlases from atlas_dseg)",
    )
    in_t1w = File(exists=True, desc="conformed input T1w (RAS, before bias correction; early stage)")
    t1w_biasfield = File(exists=True, desc="N4 bias field, on the T1w grid (early stage)")
    t1w_dseg = File(exists=True, desc="tissue labels (1 GM, 2 WM, 3 CSF), on the T1w grid (early stage)")


class _ReportFiguresOutputSpec(TraitedSpec):
    out_figures = File(exists=True, desc="figures.json: the stage's figures, for SubjectReport's 'figures'")


class ReportFigures(SimpleInterface):
    """Render one stage of the subject report's figures: early (input, bias, brain mask, tissues) or late
    (registration flicker, atlases).

    A node of its own so that they are drawn while a long node runs (the registration, the thickness); give
    its output to :class:`SubjectReport` (``figures`` or ``late_figures``) with the same images, ``n_cuts``
    and ``template``. See :func:`smriflow.reports.figures.report_figures`.
    """

    input_spec = _ReportFiguresInputSpec
    output_spec = _ReportFiguresOutputSpec

    def _run_interface(self, runtime):
        from smriflow.reports.figures import report_figures, write_figures

        inputs = self.inputs
        optional = _optional(inputs, "in_t1w", "t1w_biasfield", "t1w_dseg", "std_t1w")
        figures = report_figures(
            inputs.stage,
            t1w_preproc=inputs.t1w_preproc,
            t1w_mask=inputs.t1w_mask,
            n_cuts=inputs.n_cuts,
            t1w=optional.pop("in_t1w"),
            template=inputs.template,
            atlas_dseg=list(inputs.atlas_dseg) if isdefined(inputs.atlas_dseg) else [],
            **optional,
        )
        self._results["out_figures"] = str(write_figures(figures, Path(runtime.cwd) / "figures.json"))
        return runtime


def _optional(inputs, *names: str) -> dict[str, Any]:
    """The inputs named, None for those not set."""
    return {name: getattr(inputs, name) if isdefined(getattr(inputs, name)) else None for name in names}


def _labels(inputs) -> tuple[str, str]:
    """Subject and session labels from the inputs or the source file's name."""
    name = Path(inputs.source_file).name if isdefined(inputs.source_file) else ""
    found = dict(re.findall(r"(?:^|_)(sub|ses)-([A-Za-z0-9]+)", name))
    subject = inputs.subject if isdefined(inputs.subject) else found.get("sub")
    session = inputs.session if isdefined(inputs.session) else found.get("ses", "")
    if not subject:
        raise ValueError(
            f"SubjectReport: set 'subject', or give a 'source_file' whose name has sub-<label> (got {name!r})"
        )
    return subject.removeprefix("sub-"), session.removeprefix("ses-")


class _GroupQCReportInputSpec(BaseInterfaceInputSpec):
    in_tsv = File(exists=True, mandatory=True, desc="group IQM table (group_desc-iqms_T1w.tsv)")
    derivatives_dir = traits.Str(
        "", usedefault=True, desc="derivatives folder with the sub-<label>.html reports ('' : link blindly)"
    )
    update_subject_reports = traits.Bool(
        True, usedefault=True, desc="write copies of the subject reports with group percentiles and verdict"
    )
    title = traits.Str("smriflow group QC", usedefault=True, desc="title of the group page")


class _GroupQCReportOutputSpec(TraitedSpec):
    out_report = File(exists=True, desc="group QC page group_desc-qc_T1w.html")
    out_subject_reports = Directory(
        exists=True,
        desc="folder of the subject reports re-rendered with the group's percentiles (may be empty)",
    )


class GroupQCReport(SimpleInterface):
    """Write the group QC page (a linked strip plot per IQM, flagged images) and update the subject reports.

    Always reruns: the subject reports it reads are not among its hashed inputs.
    See :func:`smriflow.reports.group.write_group_reports`.
    """

    input_spec = _GroupQCReportInputSpec
    output_spec = _GroupQCReportOutputSpec
    always_run = True

    def _run_interface(self, runtime):
        from smriflow.reports.group import write_group_reports

        inputs = self.inputs
        # the subject reports go to a folder of their own, which exists even when empty: a folder output is
        # always set, where an empty list would leave the output undefined
        subjects = Path(runtime.cwd) / "subject_reports"
        subjects.mkdir(exist_ok=True)
        group_html, _ = write_group_reports(
            inputs.in_tsv,
            Path(runtime.cwd),
            subjects_dir=subjects,
            derivatives_dir=inputs.derivatives_dir or None,
            update_subject_reports=inputs.update_subject_reports,
            title=inputs.title,
        )
        self._results["out_report"] = str(group_html)
        self._results["out_subject_reports"] = str(subjects)
        return runtime
