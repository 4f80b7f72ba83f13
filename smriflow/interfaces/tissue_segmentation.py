"""Three-class tissue segmentation (stage 4 of ``anat_preproc``)."""

from __future__ import annotations

import json
from pathlib import Path

from nipype.interfaces.base import File, OutputMultiObject, TraitedSpec, isdefined, traits

from smriflow.interfaces.base import AntsPyInterface, ThreadedInputSpec

__all__ = ["TissueSegmentation"]


class _TissueSegmentationInputSpec(ThreadedInputSpec):
    in_file = File(exists=True, mandatory=True, desc="bias-corrected T1w")
    in_mask = File(exists=True, mandatory=True, desc="brain mask on the grid of in_file")
    in_xfm = File(
        exists=True,
        xor=["in_template_xfm"],
        desc="ANTs affine T1w -> MNI (BrainExtraction.out_affine); enables the deep-GM prior",
    )
    in_inv_warp = File(
        exists=True,
        requires=["in_xfm"],
        desc="inverse SyN warp matching in_xfm (BrainExtraction.out_inv_warp)",
    )
    in_template_xfm = File(
        exists=True,
        xor=["in_xfm"],
        desc="transform MNI -> T1w applied as is (e.g. SpatialNormalization.out_inv_xfm); enables the prior",
    )
    deep_gm_prior = traits.Bool(
        True, usedefault=True, desc="use the deep-GM atlas prior when a transform to MNI is given"
    )
    wm_fraction = traits.Range(
        low=0.05,
        high=0.95,
        value=0.45,
        usedefault=True,
        desc="GM/WM threshold between the local GM (0) and WM (1) means",
    )
    sigma_mm = traits.Range(
        low=1.0, high=50.0, value=5.0, usedefault=True, desc="local-mean kernel sigma (mm)"
    )
    iso_grid = traits.Bool(
        False,
        usedefault=True,
        desc="segment a T1w with voxels coarser than 1.2 mm or anisotropic on an isotropic 1 mm grid and "
        "average the memberships back (experimental: not yet measured at full resolution)",
    )
    in_t2w = File(
        exists=True, desc="optional T2w on the grid of in_file (space-T1w); used only with multichannel"
    )
    in_flair = File(
        exists=True, desc="optional FLAIR on the grid of in_file (space-T1w); used only with multichannel"
    )
    multichannel = traits.Bool(
        False,
        usedefault=True,
        desc="add in_t2w/in_flair as Atropos channels, with the T1w-only memberships as priors",
    )


class _TissueSegmentationOutputSpec(TraitedSpec):
    out_probseg = OutputMultiObject(
        File(exists=True), desc="[GM, WM, CSF] probability maps (float32, sum 1 in the mask, 0 outside)"
    )
    out_dseg = File(exists=True, desc="labels (uint8): 1 GM, 2 WM, 3 CSF, 0 background")
    out_report = File(
        exists=True, desc="JSON record of class means and thresholds (and of the channels used, warnings)"
    )


class TissueSegmentation(AntsPyInterface):
    """Segment GM, WM and CSF in the brain mask (see :mod:`smriflow.anat.tissue_segmentation`).

    Locally adaptive, partial-volume-aware classification; with a transform to MNI, a deep-GM atlas prior
    labels the WM-bright thalamus, pallidum, putamen and ventral DC as GM. On the shared T1w against
    FreeSurfer aseg: GM Dice 0.90, WM 0.93.

    With ``multichannel`` and a T2w and/or FLAIR on the T1w grid, Atropos refines the T1w-only memberships
    with those channels (:func:`~smriflow.anat.tissue_segmentation.segment_tissues_multichannel`); without
    either, the T1w-only result is kept and the report records a warning.
    """

    input_spec = _TissueSegmentationInputSpec
    output_spec = _TissueSegmentationOutputSpec

    def _run_interface(self, runtime):
        import nibabel as nb
        import numpy as np

        from smriflow.anat.tissue_segmentation import CLASSES, segment_t1w
        from smriflow.utils.niftiio import save_like, strip_ext

        img = nb.load(self.inputs.in_file)
        extra = {
            name: nb.load(getattr(self.inputs, trait))
            for trait, name in (("in_t2w", "T2w"), ("in_flair", "FLAIR"))
            if isdefined(getattr(self.inputs, trait))
        }
        to_subject = None
        if self.inputs.deep_gm_prior:
            if isdefined(self.inputs.in_xfm):
                to_subject = [(self.inputs.in_xfm, True)]
                if isdefined(self.inputs.in_inv_warp):
                    to_subject.append((self.inputs.in_inv_warp, False))
            elif isdefined(self.inputs.in_template_xfm):
                to_subject = [(self.inputs.in_template_xfm, False)]
        probseg, dseg, info = segment_t1w(
            img,
            nb.load(self.inputs.in_mask),
            extra=extra,
            multichannel=self.inputs.multichannel,
            to_subject=to_subject,
            wm_fraction=self.inputs.wm_fraction,
            sigma_mm=self.inputs.sigma_mm,
            iso_grid=self.inputs.iso_grid,
            num_threads=self.inputs.num_threads,
        )
        cwd = Path(runtime.cwd)
        stem = strip_ext(self.inputs.in_file)
        self._results["out_probseg"] = [
            save_like(probseg[..., i], img, cwd / f"{stem}_label-{name}_probseg.nii.gz", np.float32)
            for i, name in enumerate(CLASSES)
        ]
        self._results["out_dseg"] = save_like(dseg, img, cwd / f"{stem}_dseg.nii.gz", np.uint8)
        report = cwd / f"{stem}_tissues.json"
        report.write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
        self._results["out_report"] = str(report)
        return runtime
