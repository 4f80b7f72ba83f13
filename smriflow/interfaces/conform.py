"""Validate an anatomical image and reorient it to RAS (stage 1 of ``anat_preproc``)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from nipype import logging
from nipype.interfaces.base import BaseInterfaceInputSpec, File, SimpleInterface, TraitedSpec, traits

__all__ = ["ConformImage"]

LOGGER = logging.getLogger("nipype.interface")


class _ConformImageInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="anatomical image (3-D NIfTI or MGH)")
    take_first_volume = traits.Bool(
        False, usedefault=True, desc="use the first volume of a 4-D image (with a warning) instead of failing"
    )
    allow_contrast_mismatch = traits.Bool(
        False,
        usedefault=True,
        desc="process an image whose CSF is brighter than its white matter (with a warning), not fail",
    )


class _ConformImageOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="validated image reoriented to RAS on its native voxel grid")
    out_report = File(exists=True, desc="JSON record of the checks and of what was done")
    report = traits.Dict(desc="the same record as a dictionary (for JSON sidecars)")


class ConformImage(SimpleInterface):
    """Refuse unusable anatomical images and reorient usable ones to RAS without resampling.

    Refused, with a one-line error naming the file and the problem: unreadable files, 2-D and 4-D images
    (unless ``take_first_volume``), NaN/Inf values, empty or constant images, missing or inconsistent
    qform/sform, an image whose CSF is brighter than its white matter (unless
    ``allow_contrast_mismatch``). Negative intensities are shifted to a minimum of 0. The record
    (``out_report``/``report``) lists e.g. ``reoriented_from``, ``intensity_shift``, ``contrast`` and
    ``took_first_volume`` for the derivative's sidecar.
    """

    input_spec = _ConformImageInputSpec
    output_spec = _ConformImageOutputSpec

    def _run_interface(self, runtime):
        from smriflow.anat.conform import conform_image
        from smriflow.utils.niftiio import strip_ext

        stem = strip_ext(self.inputs.in_file)
        out_file = Path(runtime.cwd) / f"{stem}_conformed.nii.gz"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            record = conform_image(
                self.inputs.in_file,
                out_file,
                take_first_volume=self.inputs.take_first_volume,
                allow_contrast_mismatch=self.inputs.allow_contrast_mismatch,
            )
        for warning in caught:
            LOGGER.warning(str(warning.message))
        out_report = Path(runtime.cwd) / f"{stem}_conform.json"
        out_report.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
        self._results.update(out_file=str(out_file), out_report=str(out_report), report=record)
        return runtime
