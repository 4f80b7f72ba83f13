"""N4 intensity non-uniformity correction (stage 2 of ``anat_preproc``)."""

from __future__ import annotations

from pathlib import Path

from nipype.interfaces.base import File, TraitedSpec, isdefined, traits

from smriflow.interfaces.base import AntsPyInterface, ThreadedInputSpec

__all__ = ["N4BiasCorrect"]


class _N4BiasCorrectInputSpec(ThreadedInputSpec):
    in_file = File(exists=True, mandatory=True, desc="anatomical image to correct (e.g. the conformed T1w)")
    in_mask = File(exists=True, desc="where to fit the field (same grid); a fast head mask when unset")
    profile = traits.Enum(
        "fast",
        "precise",
        usedefault=True,
        desc="fast: shrink 4 on the 2 mm fit grid, 4x50 iterations; precise: shrink 2, 4x50 iterations",
    )
    shrink_factor = traits.Range(
        low=1, high=8, desc="N4 shrink factor on the fit grid (overrides the profile)"
    )
    iterations = traits.List(
        traits.Range(low=1), minlen=1, desc="maximum iterations per fitting level (overrides the profile)"
    )
    fit_resolution = traits.Float(
        2.0, usedefault=True, desc="voxel size (mm) of the grid N4 fits on; 0 fits on the native grid"
    )
    spline_distance = traits.Float(
        200.0, usedefault=True, desc="B-spline knot distance (mm) at the first level"
    )


class _N4BiasCorrectOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="bias-corrected image (float32) on the input grid")
    out_bias = File(exists=True, desc="multiplicative bias field (median 1 in the mask) on the input grid")
    out_mask = File(exists=True, desc="the fitting mask (uint8) on the input grid")


class N4BiasCorrect(AntsPyInterface):
    """Correct intensity non-uniformity with antspyx's N4, fitted on the head at ~2 mm.

    See :func:`smriflow.anat.bias.n4_correct`. The output stays on the input grid; the field is
    deterministic run to run.
    """

    input_spec = _N4BiasCorrectInputSpec
    output_spec = _N4BiasCorrectOutputSpec

    def _run_interface(self, runtime):
        import nibabel as nb
        import numpy as np

        from smriflow.anat.bias import N4_PROFILES, n4_correct
        from smriflow.utils.grids import check_same_grid
        from smriflow.utils.niftiio import save_like, strip_ext

        params = dict(N4_PROFILES[self.inputs.profile])
        if isdefined(self.inputs.shrink_factor):
            params["shrink_factor"] = self.inputs.shrink_factor
        if isdefined(self.inputs.iterations):
            params["iterations"] = list(self.inputs.iterations)
        img = nb.load(self.inputs.in_file)
        mask = None
        if isdefined(self.inputs.in_mask):
            mask_img = nb.load(self.inputs.in_mask)
            check_same_grid(
                mask_img,
                img,
                f"'in_mask' must be on the grid of 'in_file': shapes {mask_img.shape} and {img.shape} "
                "(or affines) differ.",
            )
            mask = np.asarray(mask_img.dataobj) > 0
        corrected, field, used_mask = n4_correct(
            np.asarray(img.dataobj, dtype=np.float32),
            img.header.get_zooms()[:3],
            mask=mask,
            fit_resolution=self.inputs.fit_resolution,
            spline_distance=self.inputs.spline_distance,
            num_threads=self.inputs.num_threads,
            **params,
        )
        stem = strip_ext(self.inputs.in_file)
        cwd = Path(runtime.cwd)
        self._results["out_file"] = save_like(corrected, img, cwd / f"{stem}_n4.nii.gz", np.float32)
        self._results["out_bias"] = save_like(field, img, cwd / f"{stem}_biasfield.nii.gz", np.float32)
        self._results["out_mask"] = save_like(used_mask, img, cwd / f"{stem}_n4mask.nii.gz", np.uint8)
        return runtime
