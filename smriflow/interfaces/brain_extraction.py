"""Brain extraction of a bias-corrected head T1w (stage 3 of ``anat_preproc``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from nipype.interfaces.base import File, TraitedSpec, traits

from smriflow.anat.brain_extraction import METHODS
from smriflow.data.templates import DEFAULT_TEMPLATE
from smriflow.interfaces.base import AntsPyInputSpec, AntsPyInterface

__all__ = ["BrainExtraction"]


class _BrainExtractionInputSpec(AntsPyInputSpec):
    in_file = File(
        exists=True, mandatory=True, desc="bias-corrected T1w with skull (e.g. N4BiasCorrect.out_file)"
    )
    method = traits.Enum(
        *METHODS,
        usedefault=True,
        desc="; ".join(f"{m.name}: {m.summary}" for m in METHODS.values()),
    )
    template = traits.Str(
        DEFAULT_TEMPLATE,
        usedefault=True,
        resource="template",
        desc="template providing the brain T1w and mask (MNI152NLin2009aSym from nilearn, or "
        "one in the local TemplateFlow cache)",
    )
    use_syn = traits.Bool(
        False,
        usedefault=True,
        desc="add a SyN-only stage after the affine (slower, no better on our data, not thread-repeatable)",
    )
    refine = traits.Bool(
        True,
        usedefault=True,
        desc="refine the warped template mask on the subject's intensities (method ants)",
    )
    tissue_threshold = traits.Range(
        low=0.1,
        high=0.9,
        value=0.42,
        usedefault=True,
        desc="brain tissue is brighter than this fraction of the white-matter peak (method ants)",
    )
    deepbet_threshold = traits.Range(
        low=0.0,
        high=1.0,
        value=0.5,
        usedefault=True,
        desc="brain-probability threshold of the deepbet network (method deepbet)",
    )
    deepbet_dilate = traits.Int(
        0, usedefault=True, desc="voxel layers to dilate (< 0: erode) the deepbet mask by (method deepbet)"
    )


class _BrainExtractionOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="brain-extracted T1w (in_file times the mask, float32)")
    out_mask = File(exists=True, desc="brain mask (uint8, 1 = brain) on the grid of in_file")
    out_prior = File(
        exists=True,
        desc="template brain mask warped to the subject (probability, float32; with either method)",
    )
    out_affine = File(
        exists=True,
        desc="ANTs affine T1w -> template (forward transform of ants.registration(fixed=template, "
        "moving=T1w)); SpatialNormalization.init_affine accepts it",
    )
    out_warp = File(exists=True, desc="SyN warp T1w -> template (only with use_syn)")
    out_inv_warp = File(exists=True, desc="inverse SyN warp (only with use_syn)")
    out_report = File(exists=True, desc="JSON record of the method, parameters and brain volume")


class BrainExtraction(AntsPyInterface):
    """Brain mask of a bias-corrected head T1w.

    The methods are those of :data:`smriflow.anat.brain_extraction.METHODS`; all share one set of outputs:

    - ``ants`` (default; :mod:`~smriflow.anat.brain_extraction.template`): affine to the skull-stripped
      template, its brain mask pulled back and refined on the subject's intensities. It matches
      FreeSurfer's ``brainmask.mgz`` extent (brain plus the surrounding CSF).
    - ``deepbet`` (:mod:`~smriflow.anat.brain_extraction.learned`): the mask comes from the deepbet CNN,
      whose networks ship with smriflow and run through onnxruntime (no torch). The affine to the template
      (and the warped template prior, and with ``use_syn`` the warps) are still computed by the ``ants``
      registration without its refinement, so ``out_affine`` stays defined for normalization and
      segmentation.
    - ``hybrid`` (:mod:`~smriflow.anat.brain_extraction.hybrid`): the deepbet mask locates the brain, the
      neck is cropped away, the affine starts from the learned mask and is checked (and retried from
      rotated starts), the edge is refined as ``ants``; a skull-stripped input is recognised. A check that
      still fails ends the run with one line naming it; ``out_report`` says which path ran and why.

    ``out_affine`` lets spatial normalization skip its own affine stage. ``out_report`` records the method
    and what it measured (for ``deepbet``: the brain box, the dropped and uncertain volumes).

    Measured on the shared 256³ T1w after N4 (sub-0002; reference FreeSurfer ``brainmask.mgz > 0``): ``ants``
    Dice 0.9834 (7-10 s); ``deepbet`` 0.979 (the network 5-7 s of CPU through onnxruntime, plus the
    affine registration it still needs, ~5 s; the same masks as deepbet 1.0.2 on torch to Dice ≥ 0.99998,
    ``bench/learned_brain_mask.py``).
    """

    input_spec = _BrainExtractionInputSpec
    output_spec = _BrainExtractionOutputSpec

    def _run_interface(self, runtime):
        import nibabel as nb
        import numpy as np

        from smriflow.anat.brain_extraction import extract_brain
        from smriflow.data.templates import template_space_name
        from smriflow.utils.niftiio import save_like, strip_ext

        img = nb.load(self.inputs.in_file)
        cwd = Path(runtime.cwd)
        options = METHODS[self.inputs.method].options or {}
        result = extract_brain(
            img,
            method=self.inputs.method,
            options={key: getattr(self.inputs, trait) for key, trait in options.items()},
            template=self.inputs.template,
            use_syn=self.inputs.use_syn,
            refine=self.inputs.refine,
            tissue_threshold=self.inputs.tissue_threshold,
            work_dir=cwd / "_registration",
            num_threads=self.inputs.num_threads,
            seed=self.inputs.seed,
        )
        stem = strip_ext(self.inputs.in_file)
        data = np.asarray(img.dataobj, dtype=np.float32)
        self._results["out_mask"] = save_like(result.mask, img, cwd / f"{stem}_brainmask.nii.gz", np.uint8)
        self._results["out_file"] = save_like(
            data * result.mask, img, cwd / f"{stem}_brain.nii.gz", np.float32
        )
        self._results["out_prior"] = save_like(
            result.prior, img, cwd / f"{stem}_brainprior.nii.gz", np.float32
        )
        space = template_space_name(self.inputs.template)
        affine = cwd / f"from-T1w_to-{space}_mode-image_desc-affine_xfm.mat"
        shutil.copyfile(result.affine_xfm, affine)
        self._results["out_affine"] = str(affine)
        if result.warp_xfm is not None and result.inverse_warp_xfm is not None:
            warp = cwd / f"from-T1w_to-{space}_mode-image_desc-warp_xfm.nii.gz"
            inv_warp = cwd / f"from-{space}_to-T1w_mode-image_desc-warp_xfm.nii.gz"
            shutil.copyfile(result.warp_xfm, warp)
            shutil.copyfile(result.inverse_warp_xfm, inv_warp)
            self._results.update(out_warp=str(warp), out_inv_warp=str(inv_warp))
        report = cwd / f"{stem}_brainextraction.json"
        report.write_text(json.dumps(result.info, indent=2, sort_keys=True) + "\n")
        self._results["out_report"] = str(report)
        return runtime
