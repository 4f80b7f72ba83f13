"""Group statistics as nipype interfaces: FreeSurfer tables, the ROI-wise GLM and the pipeline comparison.

Thin shells over :mod:`smriflow.stats` (``freesurfer``, ``roi_glm``, ``compare``), used by the group
workflows ``roi_glm`` and ``compare_pipelines``; every file is written under the node's folder.
"""

from __future__ import annotations

import os

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    Directory,
    File,
    InputMultiObject,
    OutputMultiObject,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)

from smriflow.interfaces.base import param_trait
from smriflow.stats.options import ALPHA, CORRECTION, MISSING

__all__ = ["ComparePipelines", "FSStatsTable", "ROIGLM"]


def _opt(value):
    return value if isdefined(value) and value != "" else None


class _FSStatsTableInputSpec(BaseInterfaceInputSpec):
    subjects_dir = Directory(exists=True, resolve=True, mandatory=True, desc="FreeSurfer SUBJECTS_DIR")
    stats = traits.Str(
        mandatory=True, desc="stats file without hemisphere and .stats: aseg, aparc, aparc.a2009s …"
    )
    subjects = traits.List(traits.Str, desc="subject folders (default: all that have the stats file)")
    hemi = traits.Enum("", "lh", "rh", usedefault=True, desc="hemisphere of a surface stats file")
    meas = traits.Str(
        "", usedefault=True, desc="measure (thickness, area, volume …; '' = the tool's default)"
    )
    table_format = traits.Enum("wide", "long", usedefault=True, desc="FreeSurfer's wide table or a tidy one")


class _FSStatsTableOutputSpec(TraitedSpec):
    out_table = File(exists=True, desc="the table (TSV)")


class FSStatsTable(SimpleInterface):
    """``aparcstats2table``/``asegstats2table`` (same columns and values) or a tidy long table."""

    input_spec = _FSStatsTableInputSpec
    output_spec = _FSStatsTableOutputSpec

    def _run_interface(self, runtime):
        from smriflow.stats.freesurfer import collect_long_table, stats_table, write_wide_table

        inputs = self.inputs
        subjects = list(inputs.subjects) if isdefined(inputs.subjects) and inputs.subjects else None
        hemi = _opt(inputs.hemi)
        out = os.path.join(
            runtime.cwd, f"{hemi + '.' if hemi else ''}{inputs.stats}_{inputs.table_format}.tsv"
        )
        if inputs.table_format == "wide":
            table = stats_table(
                inputs.subjects_dir, inputs.stats, subjects=subjects, hemi=hemi, meas=_opt(inputs.meas)
            )
            write_wide_table(table, out)
        else:
            table = collect_long_table(
                inputs.subjects_dir, inputs.stats, subjects=subjects, hemi=hemi, meas=_opt(inputs.meas)
            )
            table.to_csv(out, sep="\t", index=False, na_rep="n/a", lineterminator="\n")
        self._results["out_table"] = out
        return runtime


class _ROIGLMInputSpec(BaseInterfaceInputSpec):
    table = File(
        exists=True, resolve=True, mandatory=True, desc="ROI table (FreeSurfer wide, smriflow, long)"
    )
    extra_tables = InputMultiObject(
        File(exists=True, resolve=True), desc="more ROI tables (e.g. the other hemisphere)"
    )
    participants = File(exists=True, resolve=True, mandatory=True, desc="BIDS participants.tsv")
    formula = traits.Str(mandatory=True, desc="patsy formula with a {roi} left-hand side")
    predictor = traits.Str("", usedefault=True, desc="tested term (a variable or design column)")
    contrast = traits.Str(
        "", usedefault=True, desc="tested contrast of design columns (instead of predictor)"
    )
    missing = param_trait(MISSING)
    correction = param_trait(CORRECTION)
    alpha = param_trait(ALPHA)
    rois = traits.List(traits.Str, desc="restrict to these ROI columns or ROI names (default: all)")
    atlas = traits.Str(
        "", usedefault=True, resource="atlas", desc="volume atlas for the t map ('' = from the table)"
    )
    harmonize = traits.Str(
        "", usedefault=True, desc="participants column of the site: ComBat first ('' = no harmonization)"
    )
    figures = traits.Bool(True, usedefault=True, desc="draw the figures")


class _ROIGLMOutputSpec(TraitedSpec):
    out_table = File(exists=True, desc="roi_glm.tsv: roi, hemi, term, coef, se, t, p, p_corrected, ci, r2, n")
    out_missing = File(exists=True, desc="missing.tsv: dropped or imputed subjects per column")
    out_design = File(exists=True, desc="design.tsv: the fitted subjects and variables")
    out_json = File(exists=True, desc="roi_glm.json: formula, term, correction, threshold, counts")
    out_figures = OutputMultiObject(
        File(exists=True), desc="figures (PNG), the t map (NIfTI) and the fsaverage5 t maps (GIFTI)"
    )
    out_harmonized = File(desc="with harmonize: the harmonized ROI values (harmonized.tsv)")
    out_site_variance = File(desc="with harmonize: variance explained by site per ROI, before and after")


class ROIGLM(SimpleInterface):
    """One OLS per ROI (statsmodels) with a multiple-comparison correction; tables and figures."""

    input_spec = _ROIGLMInputSpec
    output_spec = _ROIGLMOutputSpec

    def _run_interface(self, runtime):
        from smriflow.stats.roi_glm import run_roi_glm

        inputs = self.inputs
        extra = list(inputs.extra_tables) if isdefined(inputs.extra_tables) else []
        result = run_roi_glm(
            [inputs.table, *extra],
            inputs.participants,
            formula=inputs.formula,
            predictor=_opt(inputs.predictor),
            contrast=_opt(inputs.contrast),
            missing=inputs.missing,
            correction=inputs.correction,
            alpha=inputs.alpha,
            rois=list(inputs.rois) if isdefined(inputs.rois) and inputs.rois else None,
            atlas=_opt(inputs.atlas),
            harmonize=_opt(inputs.harmonize),
            figures=inputs.figures,
            output_dir=runtime.cwd,
        )
        files = result.files
        tables = ("table", "missing", "design", "json", "harmonize_harmonized", "harmonize_variance")
        self._results.update(
            out_table=files["table"],
            out_missing=files["missing"],
            out_design=files["design"],
            out_json=files["json"],
            out_figures=[v for k, v in files.items() if k not in (*tables, "harmonize_json")],
        )
        if "harmonize_harmonized" in files:
            self._results.update(
                out_harmonized=files["harmonize_harmonized"], out_site_variance=files["harmonize_variance"]
            )
        return runtime


class _ComparePipelinesInputSpec(BaseInterfaceInputSpec):
    tables = InputMultiObject(
        File(exists=True, resolve=True), mandatory=True, desc="one ROI table per pipeline, or one table"
    )
    names = traits.List(traits.Str, desc="pipeline names, one per table (default: file names)")
    pipeline_column = traits.Str("", usedefault=True, desc="column naming the pipeline (one table)")
    subject_column = traits.Str("", usedefault=True, desc="subject column ('' = participant_id, SubjID …)")
    qc_column = traits.Str("", usedefault=True, desc="keep subjects true in this column in every pipeline")
    figures = traits.Bool(True, usedefault=True, desc="draw the figures")


class _ComparePipelinesOutputSpec(TraitedSpec):
    out_table = File(exists=True, desc="compare.tsv: per ROI and pair r, ICC(2,1), ICC(3,1), bias, LoA")
    out_json = File(exists=True, desc="compare.json: pipelines, subjects, QC exclusions")
    out_figures = OutputMultiObject(File(exists=True), desc="figures (PNG)")


class ComparePipelines(SimpleInterface):
    """Agreement of ROI measures between pipelines: Pearson r, ICC(2,1), ICC(3,1), Bland–Altman."""

    input_spec = _ComparePipelinesInputSpec
    output_spec = _ComparePipelinesOutputSpec

    def _run_interface(self, runtime):
        from smriflow.stats.compare import run_compare

        inputs = self.inputs
        result = run_compare(
            list(inputs.tables),
            names=list(inputs.names) if isdefined(inputs.names) and inputs.names else None,
            pipeline_column=_opt(inputs.pipeline_column),
            subject_column=_opt(inputs.subject_column),
            qc_column=_opt(inputs.qc_column),
            figures=inputs.figures,
            output_dir=runtime.cwd,
        )
        files = result.files
        self._results.update(
            out_table=files["table"],
            out_json=files["json"],
            out_figures=[v for k, v in files.items() if k not in ("table", "json")],
        )
        return runtime
