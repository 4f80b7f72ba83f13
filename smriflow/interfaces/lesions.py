"""Lesion masks in ``anat_preproc``: N4 fitting mask without the lesion, lesion filling before segmentation.

Both interfaces accept an *undefined* lesion mask (a subject without one) and then change nothing:
:class:`LesionMask` leaves its outputs undefined (N4 keeps its default head mask) and :class:`LesionFill`
passes its image through, so the default pipeline stays bit-identical.
"""

from __future__ import annotations

import json
from pathlib import Path

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)

from smriflow.interfaces.base import SeededInputSpec

__all__ = ["LesionFill", "LesionMask"]


class _LesionMaskInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, desc="binary lesion mask (BIDS label-lesion_roi or _mask); optional")
    reference = File(exists=True, mandatory=True, desc="the conformed T1w whose grid the mask must take")
    dilate_mm = traits.Range(
        low=0.0, high=20.0, value=2.0, usedefault=True, desc="margin (mm) around the lesion kept out of N4"
    )


class _LesionMaskOutputSpec(TraitedSpec):
    out_mask = File(exists=True, desc="lesion mask (uint8) on the grid of reference; undefined without one")
    out_fit_mask = File(
        exists=True, desc="N4 fitting mask: head mask minus the dilated lesion; undefined without a lesion"
    )
    out_report = File(exists=True, desc="JSON record (volume, whether the mask was resampled)")


class LesionMask(SimpleInterface):
    """Put a lesion mask on the conformed T1w grid and make N4's fitting mask without it.

    See :func:`smriflow.anat.lesions.lesion_on_grid` and :func:`smriflow.anat.lesions.n4_fit_mask`.
    Without ``in_file`` the outputs stay undefined.
    """

    input_spec = _LesionMaskInputSpec
    output_spec = _LesionMaskOutputSpec

    def _run_interface(self, runtime):
        if not isdefined(self.inputs.in_file):
            return runtime
        import nibabel as nb
        import numpy as np

        from smriflow.anat.lesions import lesion_on_grid, n4_fit_mask
        from smriflow.utils.niftiio import save_like, strip_ext

        name = Path(self.inputs.in_file).name
        if name.startswith("sub-") and "_label-lesion_" not in name:
            raise ValueError(
                f"'in_file' {name} is a BIDS mask but not a lesion mask (no label-lesion in its name): "
                "rename it sub-<label>_label-lesion_roi.nii.gz, or narrow the lesion_mask input's bids query."
            )
        reference = nb.load(self.inputs.reference)
        lesion, info = lesion_on_grid(
            nb.load(self.inputs.in_file), reference, name=Path(self.inputs.in_file).name
        )
        zooms = reference.header.get_zooms()[:3]
        fit = n4_fit_mask(
            np.asarray(reference.dataobj, dtype=np.float32), zooms, lesion, dilate_mm=self.inputs.dilate_mm
        )
        cwd = Path(runtime.cwd)
        stem = strip_ext(self.inputs.reference)
        self._results["out_mask"] = save_like(lesion, reference, cwd / f"{stem}_lesion.nii.gz", np.uint8)
        self._results["out_fit_mask"] = save_like(fit, reference, cwd / f"{stem}_n4fitmask.nii.gz", np.uint8)
        report = cwd / f"{stem}_lesion.json"
        info["source"] = Path(self.inputs.in_file).name
        report.write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
        self._results["out_report"] = str(report)
        return runtime


class _LesionFillInputSpec(SeededInputSpec):
    in_file = File(exists=True, mandatory=True, desc="bias-corrected T1w (with skull)")
    in_lesion = File(exists=True, desc="lesion mask on the same grid (LesionMask.out_mask); optional")
    in_mask = File(exists=True, desc="where to look for white matter; the head mask when unset")
    sigma_mm = traits.Range(
        low=1.0, high=50.0, value=8.0, usedefault=True, desc="width (mm) of the local white-matter mean"
    )


class _LesionFillOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="T1w with the lesion filled (in_file itself without a lesion)")
    out_report = File(exists=True, desc="JSON record of the filling; undefined without a lesion")


class LesionFill(SimpleInterface):
    """Fill a lesion with the local white-matter intensity (:func:`smriflow.anat.lesions.fill_lesion`).

    Without ``in_lesion`` the image passes through unchanged (the same file).
    """

    input_spec = _LesionFillInputSpec
    output_spec = _LesionFillOutputSpec

    def _run_interface(self, runtime):
        if not isdefined(self.inputs.in_lesion):
            self._results["out_file"] = self.inputs.in_file
            return runtime
        import nibabel as nb
        import numpy as np

        from smriflow.anat.lesions import fill_lesion
        from smriflow.utils.grids import check_same_grid
        from smriflow.utils.niftiio import save_like, strip_ext

        img = nb.load(self.inputs.in_file)
        loaded = {}
        for trait in ("in_lesion", "in_mask"):
            path = getattr(self.inputs, trait)
            if not isdefined(path):
                continue
            other = nb.load(path)
            check_same_grid(
                other,
                img,
                f"'{trait}' must be on the grid of 'in_file': {path} does not match {self.inputs.in_file}.",
            )
            loaded[trait] = np.asarray(other.dataobj) > 0
        filled, info = fill_lesion(
            np.asarray(img.dataobj, dtype=np.float32),
            loaded["in_lesion"],
            img.header.get_zooms()[:3],
            brain_mask=loaded.get("in_mask"),
            sigma_mm=self.inputs.sigma_mm,
            seed=self.inputs.seed,
        )
        cwd = Path(runtime.cwd)
        stem = strip_ext(self.inputs.in_file)
        self._results["out_file"] = save_like(filled, img, cwd / f"{stem}_filled.nii.gz", np.float32)
        report = cwd / f"{stem}_lesionfill.json"
        report.write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
        self._results["out_report"] = str(report)
        return runtime
