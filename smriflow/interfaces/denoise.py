"""Adaptive denoising before tissue segmentation (between N4/lesion filling and ``tissue_segmentation``)."""

from __future__ import annotations

import json
from pathlib import Path

from nipype import logging
from nipype.interfaces.base import File, TraitedSpec, traits

from smriflow.interfaces.base import AntsPyInterface, ThreadedInputSpec

__all__ = ["AdaptiveDenoise"]

LOGGER = logging.getLogger("nipype.interface")


class _AdaptiveDenoiseInputSpec(ThreadedInputSpec):
    in_file = File(exists=True, mandatory=True, desc="bias-corrected T1w")
    in_mask = File(exists=True, mandatory=True, desc="brain mask on the same grid")
    mode = traits.Enum(
        "auto",
        "always",
        "never",
        usedefault=True,
        desc="auto: denoise when the noise measured in the WM is above 'threshold' and the voxels are at "
        "most 'max_voxel_mm'; always; never",
    )
    threshold = traits.Float(
        0.025, usedefault=True, desc="relative noise (sigma / WM median) above which 'auto' denoises"
    )
    max_voxel_mm = traits.Float(
        1.5, usedefault=True, desc="'auto' leaves images alone whose largest voxel side is above this (mm)"
    )


class _AdaptiveDenoiseOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="the denoised T1w, or the input file itself when not denoised")
    out_report = File(exists=True, desc="JSON record: the noise estimate and the decision")
    report = traits.Dict(desc="the same record as a dictionary")


class AdaptiveDenoise(AntsPyInterface):
    """Measure the noise in the white matter and denoise (ANTs non-local means, Rician) only when needed.

    See :func:`smriflow.anat.denoise.denoise_if_noisy`. When the image is not denoised, ``out_file`` is
    the input file itself (no copy), so a clean scan's segmentation input is byte-identical to today's.
    """

    input_spec = _AdaptiveDenoiseInputSpec
    output_spec = _AdaptiveDenoiseOutputSpec

    def _run_interface(self, runtime):
        import nibabel as nb
        import numpy as np

        from smriflow.anat.denoise import denoise_if_noisy
        from smriflow.utils.niftiio import save_like, strip_ext

        img = nb.load(self.inputs.in_file)
        mask_img = nb.load(self.inputs.in_mask)
        if mask_img.shape[:3] != img.shape[:3]:
            raise ValueError(
                f"'in_mask' must be on the grid of 'in_file': shapes {mask_img.shape} and {img.shape} differ."
            )
        data, record = denoise_if_noisy(
            np.asarray(img.dataobj, dtype=np.float32),
            np.asarray(mask_img.dataobj) > 0,
            img.header.get_zooms()[:3],
            threshold=self.inputs.threshold,
            max_voxel_mm=self.inputs.max_voxel_mm,
            mode=self.inputs.mode,
            num_threads=self.inputs.num_threads,
        )
        LOGGER.info(
            "%s: %s (%s)",
            self.inputs.in_file,
            "denoised" if record["denoised"] else "not denoised",
            record["reason"],
        )
        stem = strip_ext(self.inputs.in_file)
        cwd = Path(runtime.cwd)
        if record["denoised"]:
            out_file = save_like(data, img, cwd / f"{stem}_denoised.nii.gz", np.float32)
        else:
            out_file = str(Path(self.inputs.in_file).resolve())
        out_report = cwd / f"{stem}_denoise.json"
        out_report.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
        self._results.update(out_file=out_file, out_report=str(out_report), report=record)
        return runtime
