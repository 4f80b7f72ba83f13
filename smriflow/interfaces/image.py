"""Generic in-house image interfaces (smoothing, thresholding, masking, statistics).

They need no external tool, so the example workflow built from them runs anywhere and its outputs can be
compared bit for bit across plugins.
"""

from __future__ import annotations

import os

from nipype.interfaces.base import BaseInterfaceInputSpec, File, SimpleInterface, TraitedSpec, traits

__all__ = ["SmoothImage", "ThresholdMask", "ApplyMask", "MaskedStatistics"]


def _out(runtime, in_file: str, suffix: str, ext: str = ".nii.gz") -> str:
    """Deterministic output name in the node's folder: <input stem>_<suffix><ext>."""
    base = os.path.basename(in_file)
    for known in (".nii.gz", ".nii"):
        if base.endswith(known):
            base = base[: -len(known)]
            break
    return os.path.join(runtime.cwd, f"{base}_{suffix}{ext}")


class _SmoothImageInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="3-D image to smooth")
    fwhm = traits.Range(low=0.0, high=50.0, value=4.0, usedefault=True, desc="Gaussian FWHM in mm")


class _SmoothImageOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="smoothed image (float32)")


class SmoothImage(SimpleInterface):
    """Smooth an image with a Gaussian kernel given in millimetres."""

    input_spec = _SmoothImageInputSpec
    output_spec = _SmoothImageOutputSpec

    def _run_interface(self, runtime):
        from smriflow.utils.images import smooth_image

        out = smooth_image(
            self.inputs.in_file, self.inputs.fwhm, _out(runtime, self.inputs.in_file, "smooth")
        )
        self._results["out_file"] = str(out)
        return runtime


class _ThresholdMaskInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="3-D image to threshold")
    percentile = traits.Range(
        low=0.0, high=99.999, value=50.0, usedefault=True, desc="threshold, percentile of the non-zero voxels"
    )


class _ThresholdMaskOutputSpec(TraitedSpec):
    out_mask = File(exists=True, desc="binary mask (uint8), largest connected component")


class ThresholdMask(SimpleInterface):
    """Make a binary mask of the brightest voxels (largest connected component)."""

    input_spec = _ThresholdMaskInputSpec
    output_spec = _ThresholdMaskOutputSpec

    def _run_interface(self, runtime):
        from smriflow.utils.images import threshold_mask

        out = threshold_mask(
            self.inputs.in_file, self.inputs.percentile, _out(runtime, self.inputs.in_file, "mask")
        )
        self._results["out_mask"] = str(out)
        return runtime


class _ApplyMaskInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="3-D image")
    in_mask = File(exists=True, mandatory=True, desc="binary mask on the same grid")


class _ApplyMaskOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="image with voxels outside the mask set to zero")


class ApplyMask(SimpleInterface):
    """Zero an image outside a mask (same grid required)."""

    input_spec = _ApplyMaskInputSpec
    output_spec = _ApplyMaskOutputSpec

    def _run_interface(self, runtime):
        from smriflow.utils.images import apply_mask

        out = apply_mask(
            self.inputs.in_file, self.inputs.in_mask, _out(runtime, self.inputs.in_file, "masked")
        )
        self._results["out_file"] = str(out)
        return runtime


class _MaskedStatisticsInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="3-D image")
    in_mask = File(exists=True, mandatory=True, desc="binary mask on the same grid")


class _MaskedStatisticsOutputSpec(TraitedSpec):
    out_stats = File(exists=True, desc="JSON: voxels, volume_mm3, mean, std, median inside the mask")


class MaskedStatistics(SimpleInterface):
    """Summarise an image inside a mask (volume in mm³ from the header's voxel size)."""

    input_spec = _MaskedStatisticsInputSpec
    output_spec = _MaskedStatisticsOutputSpec

    def _run_interface(self, runtime):
        from smriflow.utils.images import masked_statistics

        out = masked_statistics(
            self.inputs.in_file, self.inputs.in_mask, _out(runtime, self.inputs.in_file, "stats", ".json")
        )
        self._results["out_stats"] = str(out)
        return runtime
