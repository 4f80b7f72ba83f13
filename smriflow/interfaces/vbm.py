"""Voxel-based morphometry as one nipype interface (the node of the ``vbm`` group workflow).

A thin shell over :func:`smriflow.stats.vbm.run_vbm`: every file is written under the node's folder, and the
workflow's ``path:`` outputs copy them into the run's output folder.
"""

from __future__ import annotations

import os

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    InputMultiObject,
    OutputMultiObject,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)

from smriflow.stats.options import MISSING

__all__ = ["VBM"]


class _OptionalPath(traits.BaseStr):
    """A file or folder path made absolute when set (the node runs in its own folder), or ``''``."""

    info_text = "a path or ''"

    def validate(self, obj, name, value):
        value = super().validate(obj, name, value)
        return os.path.abspath(value) if value else value


class _VBMInputSpec(BaseInterfaceInputSpec):
    derivatives = _OptionalPath(
        "", usedefault=True, desc="anat_preproc derivatives folder with the modulated GM maps ('' = gm_maps)"
    )
    gm_maps = InputMultiObject(
        File(exists=True, resolve=True),
        desc="warped (unmodulated) GM maps in template space, sub-<label> named",
    )
    jacobians = InputMultiObject(
        File(exists=True, resolve=True), desc="Jacobian determinants on the GM maps' grid, sub-<label> named"
    )
    jacobian_convention = traits.Enum(
        "", "fsl", "ants", usedefault=True, desc="who wrote the Jacobians (with gm_maps): fsl or ants"
    )
    participants = File(exists=True, resolve=True, mandatory=True, desc="BIDS participants.tsv")
    design = traits.Str(mandatory=True, desc="patsy right-hand side, e.g. 'age + C(sex)'")
    contrast = traits.Str(mandatory=True, desc="design column, variable or expression of columns")
    smoothing_fwhm = traits.Range(low=0.0, value=3.0, usedefault=True, desc="Gaussian FWHM in mm (0: none)")
    mask = _OptionalPath(
        "", usedefault=True, desc="analysis mask file ('' = mean modulated GM > mask_threshold)"
    )
    mask_threshold = traits.Range(
        low=0.0, high=1.0, value=0.05, exclude_high=True, usedefault=True, desc="mean modulated GM > this"
    )
    height_control = traits.Enum("fpr", "fdr", "bonferroni", usedefault=True, desc="voxel-level threshold")
    alpha = traits.Range(low=0.0, high=1.0, value=0.05, exclude_low=True, exclude_high=True, usedefault=True,
                         desc="voxel-level error rate (two-sided)")  # fmt: skip
    cluster_threshold = traits.Range(low=0, value=50, usedefault=True, desc="minimum cluster size (voxels)")
    resample_mm = traits.Range(
        low=0.0, value=0.0, usedefault=True, desc="resample to this voxel size (0: no)"
    )
    missing = traits.Enum(("", *MISSING.choices), usedefault=True, desc="missing covariates ('' = an error)")


class _VBMOutputSpec(TraitedSpec):
    out_modulated = OutputMultiObject(File(exists=True), desc="modulated GM map of each subject")
    out_template = File(exists=True, desc="study template: mean unmodulated GM")
    out_mask = File(exists=True, desc="GM analysis mask")
    out_zmap = File(exists=True, desc="z map of the contrast")
    out_tmap = File(exists=True, desc="t map of the contrast")
    out_pmap = File(exists=True, desc="one-sided p map of the contrast")
    out_effect = File(exists=True, desc="effect size (contrast estimate) map")
    out_thresholded = File(exists=True, desc="z map thresholded (height control and cluster extent)")
    out_clusters = File(exists=True, desc="clusters.tsv: peaks, sizes and atlas labels")
    out_design = File(exists=True, desc="design_matrix.tsv: the fitted subjects and design columns")
    out_figures = OutputMultiObject(File(exists=True), desc="glass brain, slices and design matrix (PNG)")
    out_json = File(exists=True, desc="vbm.json: settings, subjects, threshold, software versions")


def _opt(value: object) -> object:
    return value if isdefined(value) and value not in ("", 0, 0.0, []) else None


class VBM(SimpleInterface):
    """Voxel-based morphometry: modulated GM, nilearn's SecondLevelModel, thresholded z map and clusters."""

    input_spec = _VBMInputSpec
    output_spec = _VBMOutputSpec

    def _run_interface(self, runtime):
        from smriflow.stats.vbm import run_vbm

        inputs = self.inputs
        result = run_vbm(
            derivatives=_opt(inputs.derivatives),
            gm_maps=_opt(list(inputs.gm_maps) if isdefined(inputs.gm_maps) else []),
            jacobians=_opt(list(inputs.jacobians) if isdefined(inputs.jacobians) else []),
            jacobian_convention=_opt(inputs.jacobian_convention),
            participants=inputs.participants,
            design=inputs.design,
            contrast=inputs.contrast,
            smoothing_fwhm=inputs.smoothing_fwhm,
            mask=_opt(inputs.mask),
            mask_threshold=inputs.mask_threshold,
            height_control=inputs.height_control,
            alpha=inputs.alpha,
            cluster_threshold=inputs.cluster_threshold,
            resample_mm=_opt(inputs.resample_mm),
            missing=_opt(inputs.missing),
            output_dir=runtime.cwd,
        )
        files = result.files
        self._results.update(
            out_modulated=[str(p) for p in result.modulated],
            out_template=str(files["template"]),
            out_mask=str(files["mask"]),
            out_zmap=str(files["z"]),
            out_tmap=str(files["t"]),
            out_pmap=str(files["p"]),
            out_effect=str(files["effect"]),
            out_thresholded=str(files["thresholded"]),
            out_clusters=str(files["clusters"]),
            out_design=str(files["design"]),
            out_figures=[str(files[k]) for k in ("glass_brain", "slices", "design_figure")],
            out_json=str(files["provenance"]),
        )
        return runtime
