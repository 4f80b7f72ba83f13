"""Spatial normalization to a template, resampling through its transforms, and Jacobian modulation.

Each interface is a thin shell over :mod:`smriflow.anat.spatial_normalization` /
:mod:`smriflow.anat.modulation`,
where the conventions (transform directions, Jacobian direction) are documented.
"""

from __future__ import annotations

import os

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    InputMultiObject,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)

from smriflow.data.templates import DEFAULT_TEMPLATE
from smriflow.interfaces.base import AntsPyInputSpec, AntsPyInterface, ThreadedInputSpec
from smriflow.utils.niftiio import strip_ext

__all__ = ["ApplyTransforms", "ModulateJacobian", "SpatialNormalization"]

_PROFILES = ("fast", "precise", "testing")


class _SpatialNormalizationInputSpec(AntsPyInputSpec):
    in_file = File(exists=True, mandatory=True, desc="brain-extracted T1w image in native space")
    in_mask = File(
        exists=True, desc="brain mask of in_file (masks and crops the moving image); in_file > 0 if unset"
    )
    init_affine = File(
        exists=True,
        desc="ANTs affine (.mat) from this T1w to the same template, e.g. from brain extraction "
        "(forward transform of ants.registration(fixed=template, moving=T1w)); skips the affine stage",
    )
    template = traits.Str(
        DEFAULT_TEMPLATE,
        usedefault=True,
        resource="template",
        desc=f"template: {DEFAULT_TEMPLATE} (shipped by nilearn) or one in the local TemplateFlow cache",
    )
    profile = traits.Enum(
        *_PROFILES, usedefault=True, desc="registration schedule: fast (2 mm grid), precise (1 mm), testing"
    )
    template_resolution = traits.Int(
        desc="template grid in mm, overriding the profile's (1 or 2 for the default)"
    )
    template_image = File(
        exists=True, desc="explicit template T1w (skull-stripped) instead of looking 'template' up"
    )
    template_mask = File(exists=True, desc="explicit template brain mask (with template_image)")


class _SpatialNormalizationOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="T1w resampled into the template (space-<tpl>_desc-preproc_T1w)")
    out_xfm = File(
        exists=True, desc="composite transform T1w -> template (from-T1w_to-<tpl>_mode-image_xfm.h5)"
    )
    out_inv_xfm = File(
        exists=True, desc="composite transform template -> T1w (from-<tpl>_to-T1w_mode-image_xfm.h5)"
    )
    out_affine = File(exists=True, desc="affine part alone (ANTs .mat, template points to T1w points)")
    out_logjacobian = File(
        exists=True, desc="log-Jacobian determinant of the complete mapping, template grid"
    )
    out_template = File(exists=True, desc="the template image used (the output grid; use as reference_image)")


class SpatialNormalization(AntsPyInterface):
    """Register a brain-extracted T1w to a template (affine, then SyN) with antspyx.

    The log-Jacobian is that of the mapping from template points to T1w points, so ``exp`` of it is the
    native volume each template voxel stands for (> 0 log where the subject is larger). Two runs with the same
    ``seed`` and ``num_threads`` give bit-identical images.
    """

    input_spec = _SpatialNormalizationInputSpec
    output_spec = _SpatialNormalizationOutputSpec

    def _run_interface(self, runtime):
        from smriflow.anat.spatial_normalization import get_preset, normalize_to_template
        from smriflow.data.templates import get_template, template_space_name

        inputs = self.inputs
        space = template_space_name(inputs.template)
        preset = get_preset(inputs.profile)
        if isdefined(inputs.template_resolution):
            preset = get_preset(preset, template_resolution=inputs.template_resolution)
        if isdefined(inputs.template_image):
            template = inputs.template_image
            template_mask = inputs.template_mask if isdefined(inputs.template_mask) else None
        else:
            if isdefined(inputs.template_mask):
                raise ValueError(
                    "'template_mask' needs 'template_image'; unset it to use the template's own mask."
                )
            template = get_template(inputs.template, resolution=preset.template_resolution)
            template_mask = get_template(
                inputs.template, resolution=preset.template_resolution, suffix="mask"
            )
        result = normalize_to_template(
            inputs.in_file,
            template,
            runtime.cwd,
            in_mask=inputs.in_mask if isdefined(inputs.in_mask) else None,
            template_mask=template_mask,
            init_affine=inputs.init_affine if isdefined(inputs.init_affine) else None,
            space=space,
            preset=preset,
            seed=inputs.seed,
            num_threads=inputs.num_threads,
        )
        self._results.update(
            out_file=str(result.warped),
            out_xfm=str(result.forward_transform),
            out_inv_xfm=str(result.inverse_transform),
            out_affine=str(result.affine),
            out_logjacobian=str(result.log_jacobian),
            out_template=str(template),
        )
        return runtime


class _ApplyTransformsInputSpec(ThreadedInputSpec):
    in_files = InputMultiObject(File(exists=True), mandatory=True, desc="3-D images to resample")
    reference_image = File(exists=True, mandatory=True, desc="image defining the output grid and header")
    transforms = InputMultiObject(
        File(exists=True),
        mandatory=True,
        desc="ANTs transforms in antsApplyTransforms -t order; for smriflow, one composite: out_xfm "
        "(native -> template) or out_inv_xfm (template -> native)",
    )
    interpolation = traits.Enum(
        "linear",
        "genericLabel",
        "nearestNeighbor",
        "bSpline",
        "lanczosWindowedSinc",
        usedefault=True,
        desc="linear for probabilities and intensities; genericLabel (or nearestNeighbor) for label images, "
        "which are written as integers",
    )
    default_value = traits.Float(0.0, usedefault=True, desc="value of voxels mapped outside the input")


class _ApplyTransformsOutputSpec(TraitedSpec):
    out_files = traits.List(
        File(exists=True), desc="resampled images, in the order of in_files (always a list)"
    )
    out_file = File(exists=True, desc="the first resampled image (for single-image use)")


class ApplyTransforms(AntsPyInterface):
    """Resample images onto a reference grid through ANTs transforms (e.g. probsegs into the template)."""

    input_spec = _ApplyTransformsInputSpec
    output_spec = _ApplyTransformsOutputSpec

    def _run_interface(self, runtime):
        from smriflow.anat.spatial_normalization import apply_transforms

        outputs, seen = [], set()
        for index, in_file in enumerate(self.inputs.in_files):
            name = f"{strip_ext(in_file)}_resampled"
            if name in seen:
                name = f"{name}{index}"
            seen.add(name)
            out = apply_transforms(
                in_file,
                self.inputs.reference_image,
                self.inputs.transforms,
                os.path.join(runtime.cwd, f"{name}.nii.gz"),
                interpolation=self.inputs.interpolation,
                default_value=self.inputs.default_value,
                num_threads=self.inputs.num_threads,
            )
            outputs.append(str(out))
        self._results.update(out_files=outputs, out_file=outputs[0])
        return runtime


class _ModulateJacobianInputSpec(BaseInterfaceInputSpec):
    in_file = File(
        exists=True, mandatory=True, desc="map resampled into the template (e.g. the warped GM probseg)"
    )
    in_logjacobian = File(
        exists=True, mandatory=True, desc="log-Jacobian from SpatialNormalization (same grid)"
    )


class _ModulateJacobianOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="modulated map (space-<tpl>_label-GM_desc-modulated_probseg for GM)")


class ModulateJacobian(SimpleInterface):
    """Multiply a template-space map by the Jacobian determinant, preserving native volumes.

    The integral of the output over the template grid equals the native volume of the input tissue
    (see :mod:`smriflow.anat.modulation` for the convention; FSL's Jacobians are the reciprocal).
    """

    input_spec = _ModulateJacobianInputSpec
    output_spec = _ModulateJacobianOutputSpec

    def _run_interface(self, runtime):
        from smriflow.anat.modulation import modulate

        out = os.path.join(runtime.cwd, f"{strip_ext(self.inputs.in_file)}_modulated.nii.gz")
        modulate(self.inputs.in_file, self.inputs.in_logjacobian).to_filename(out)
        self._results["out_file"] = out
        return runtime
