"""Brain extraction of a bias-corrected head T1w (stage 3 of ``anat_preproc``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from nipype.interfaces.base import File, TraitedSpec, traits

from smriflow.interfaces.base import AntsPyInputSpec, AntsPyInterface

__all__ = ["BrainExtraction"]


class _BrainExtractionInputSpec(AntsPyInputSpec):
    in_file = File(
        exists=True, mandatory=True, desc="bias-corrected T1w with skull (e.g. N4BiasCorrect.out_file)"
    )
    method = traits.Enum(
        "ants",
        "deepbet",
        usedefault=True,
        desc="ants: affine to the skull-stripped template, warped template mask refined on intensities; "
        "deepbet: the deepbet CNN (optional extra smriflow[deepbet], needs PyTorch), plus the same affine",
    )
    template = traits.Str(
        "MNI152NLin2009aSym",
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
        desc="brain-probability threshold of deepbet (method deepbet)",
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

    Two methods, one set of outputs:

    - ``ants`` (default; :mod:`smriflow.utils.brainmask`): affine to the skull-stripped template, its brain
      mask pulled back and refined on the subject's intensities. It matches FreeSurfer's ``brainmask.mgz``
      extent (brain plus the surrounding CSF).
    - ``deepbet`` (:mod:`smriflow.utils.deepbet_mask`; optional extra ``pip install "smriflow[deepbet]"``
      after ``pip install torch==2.13.0`` for a CPU build, ~1 GB): the mask comes from the deepbet CNN, whose
      weights ship in its wheel. The affine to the template (and the warped template prior, and with
      ``use_syn`` the warps) are still computed by the ``ants`` registration without its refinement, so
      ``out_affine`` stays defined for normalization and segmentation.

    ``out_affine`` lets spatial normalization skip its own affine stage.

    Measured on the shared 256³ T1w after N4 (sub-0002; reference FreeSurfer ``brainmask.mgz > 0``; 2 vCPU;
    ``bench/anat_front.py --isolate --method ants|deepbet``, deepbet 1.0.2 on torch 2.13.0+cpu, 2 runs each):

    =============  ==========  ===================================  ================  ===============
    method         Dice        brain stage, fresh process, 1 / 2    peak RSS of the   GM / WM Dice of
                               threads (imports included)           stage             the next stage
    =============  ==========  ===================================  ================  ===============
    ``ants``       **0.9834**  **8.8-9.6 s** / 10.3-10.5 s          **0.87 GB**       0.901 / 0.936
    ``deepbet``    0.9793      11.6-13.4 s / 14.9-15.8 s            1.28-1.36 GB      0.902 / 0.937
    =============  ==========  ===================================  ================  ===============

    In one warm process on 1 thread: ``ants`` 7.1-7.4 s; ``deepbet`` = its CNN 4.2-4.3 s (7-10 s on 2 torch
    threads, slower here) + torch import ~1 s + the affine registration it still needs 4.6-4.7 s.
    The default is ``ants``: more accurate against FreeSurfer's mask (deepbet misses 36 ml of it, mostly dark
    CSF-like voxels of the rim, ``ants`` 25 ml; ``deepbet_dilate=1`` gave 0.9788 and ``deepbet_threshold=0.3``
    0.9797), faster, lighter, and without the ~1 GB extra. The GM/WM difference downstream is within noise.
    """

    input_spec = _BrainExtractionInputSpec
    output_spec = _BrainExtractionOutputSpec

    def _run_interface(self, runtime):
        import nibabel as nb
        import numpy as np

        from smriflow.utils.brainmask import brain_extraction
        from smriflow.utils.niftiio import save_like, strip_ext
        from smriflow.utils.templates import template_space_name

        img = nb.load(self.inputs.in_file)
        cwd = Path(runtime.cwd)
        deepbet = self.inputs.method == "deepbet"
        if deepbet:
            from smriflow.utils.deepbet_mask import deepbet_mask

            # first, so a missing extra fails before the registration
            mask_path, brain_path = deepbet_mask(
                self.inputs.in_file,
                cwd,
                threshold=self.inputs.deepbet_threshold,
                n_dilate=self.inputs.deepbet_dilate,
                num_threads=self.inputs.num_threads,
            )
        result = brain_extraction(
            img,
            template=self.inputs.template,
            use_syn=self.inputs.use_syn,
            refine=self.inputs.refine and not deepbet,
            tissue_threshold=self.inputs.tissue_threshold,
            work_dir=cwd / "_registration",
            num_threads=self.inputs.num_threads,
            seed=self.inputs.seed,
        )
        stem = strip_ext(self.inputs.in_file)
        if deepbet:
            mask = np.asarray(nb.load(mask_path).dataobj) > 0
            zooms = img.header.get_zooms()[:3]
            result.info.update(
                method="deepbet",
                refine=False,
                deepbet_threshold=float(self.inputs.deepbet_threshold),
                deepbet_dilate=int(self.inputs.deepbet_dilate),
                brain_volume_ml=float(mask.sum() * np.prod(zooms) / 1000),
            )
            self._results.update(out_mask=mask_path, out_file=brain_path)
        else:
            data = np.asarray(img.dataobj, dtype=np.float32)
            self._results["out_mask"] = save_like(
                result.mask, img, cwd / f"{stem}_brainmask.nii.gz", np.uint8
            )
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
