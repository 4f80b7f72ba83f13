"""Other contrasts on the T1w grid and T1w runs combined (smriflow.anat.contrasts).

In ``anat_preproc`` the T2w and FLAIR are optional inputs: :class:`ContrastToT1w` without ``in_file`` (a
subject without that contrast) does nothing and leaves its outputs undefined, so the workflow's optional
outputs are simply not written.
"""

from __future__ import annotations

import json
from pathlib import Path

from nipype.interfaces.base import File, InputMultiObject, TraitedSpec, isdefined, traits

from smriflow.interfaces.base import AntsPyInputSpec, AntsPyInterface

__all__ = ["CombineRuns", "ContrastToT1w"]


class _ContrastToT1wInputSpec(AntsPyInputSpec):
    in_file = File(exists=True, desc="the other contrast (T2w, FLAIR, PD), as acquired; unset: nothing to do")
    reference = File(exists=True, mandatory=True, desc="the preprocessed T1w (anat_preproc's desc-preproc)")
    in_mask = File(exists=True, desc="mask on the reference grid where the metric is computed (e.g. brain)")
    contrast = traits.Str("T2w", usedefault=True, desc="name of the contrast, for file names and the record")
    profile = traits.Enum("fast", "precise", usedefault=True, desc="N4 profile (as N4BiasCorrect)")


class _ContrastToT1wOutputSpec(TraitedSpec):
    out_file = File(
        exists=True, desc="bias-corrected contrast resampled on the T1w grid (space-T1w), float32"
    )
    out_xfm = File(exists=True, desc="rigid transform (ANTs .mat; T1w points -> contrast points)")
    out_report = File(exists=True, desc="JSON record: the rigid motion found (mm, degrees), metric, N4")


class ContrastToT1w(AntsPyInterface):
    """N4-correct another contrast and register it rigidly to the T1w (Mattes mutual information).

    The contrast is conformed (checked, reoriented to RAS), N4-corrected on its head mask
    (:func:`smriflow.anat.bias.n4_correct`), registered with :func:`smriflow.anat.contrasts.register_rigid`
    and resampled (linear) on the T1w grid.
    """

    input_spec = _ContrastToT1wInputSpec
    output_spec = _ContrastToT1wOutputSpec

    def _run_interface(self, runtime):
        if not isdefined(self.inputs.in_file):
            return runtime  # the subject has no such contrast
        import shutil

        import nibabel as nb
        import numpy as np

        from smriflow.anat.contrasts import contrast_to_t1w
        from smriflow.utils.niftiio import save_like, strip_ext

        reference = nb.load(self.inputs.reference)
        cwd = Path(runtime.cwd)
        resampled, transform, record = contrast_to_t1w(
            self.inputs.in_file,
            reference,
            cwd / "_registration",
            mask=nb.load(self.inputs.in_mask) if isdefined(self.inputs.in_mask) else None,
            contrast=self.inputs.contrast,
            profile=self.inputs.profile,
            seed=self.inputs.seed,
            num_threads=self.inputs.num_threads,
        )
        stem = strip_ext(self.inputs.in_file)
        self._results["out_file"] = save_like(
            np.asarray(resampled.dataobj), reference, cwd / f"{stem}_space-T1w.nii.gz", np.float32
        )
        xfm = cwd / f"from-T1w_to-{self.inputs.contrast}_mode-image_xfm.mat"
        shutil.copyfile(transform, xfm)
        self._results["out_xfm"] = str(xfm)
        report = cwd / f"{stem}_to-T1w.json"
        report.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
        self._results["out_report"] = str(report)
        return runtime


class _CombineRunsInputSpec(AntsPyInputSpec):
    in_files = InputMultiObject(
        File(exists=True),
        mandatory=True,
        desc="T1w runs of one subject, BIDS name order (with `smriflow run --longitudinal`: all sessions')",
    )
    method = traits.Enum(
        "average",
        "first",
        usedefault=True,
        desc="average: every run rigidly registered to the first and averaged; first: the first run only",
    )
    take_first_volume = traits.Bool(
        False, usedefault=True, desc="as ConformImage: a 4-D run gives its first volume (average only)"
    )


class _CombineRunsOutputSpec(TraitedSpec):
    out_file = File(
        exists=True,
        desc="the run itself (one run, or method first: untouched, ConformImage checks it), else the "
        "average of the conformed runs on the first run's grid (float32)",
    )
    out_source = traits.Str(
        desc="the first run's path without the entities the runs do not share (run-, ses-): names the report"
    )
    out_report = File(
        exists=True, desc="JSON record: method, and per run its file, scale, translation (mm), rotation (°)"
    )


class CombineRuns(AntsPyInterface):
    """One T1w per subject from one or more runs (or sessions): take the first, or average them.

    Averaging registers every conformed run rigidly to the first (Mattes MI), scales it to the first's
    median head intensity and takes the mean (:func:`smriflow.anat.contrasts.average_runs`), like
    sMRIPrep's T1w reference from several runs. A single run passes through untouched, so a one-run
    subject gets exactly the derivatives it had without this step.
    """

    input_spec = _CombineRunsInputSpec
    output_spec = _CombineRunsOutputSpec

    def _run_interface(self, runtime):
        from smriflow.utils.niftiio import strip_ext

        files = [str(path) for path in self.inputs.in_files]
        cwd = Path(runtime.cwd)
        stem = strip_ext(files[0])
        record: dict = {"method": self.inputs.method, "runs": [{"file": Path(p).name} for p in files]}
        if len(files) == 1 or self.inputs.method == "first":
            self._results["out_file"] = files[0]
            record["used"] = Path(files[0]).name
        else:
            import numpy as np

            from smriflow.anat.conform import load_conformed
            from smriflow.anat.contrasts import average_runs
            from smriflow.utils.niftiio import save_like

            runs = [
                load_conformed(path, take_first_volume=self.inputs.take_first_volume)[0] for path in files
            ]
            average, records = average_runs(
                runs, cwd / "_registration", seed=self.inputs.seed, num_threads=self.inputs.num_threads
            )
            self._results["out_file"] = save_like(
                np.asarray(average.dataobj), runs[0], cwd / f"{stem}_average.nii.gz", np.float32
            )
            for entry, run_record in zip(record["runs"], records, strict=True):
                entry.update({key: value for key, value in run_record.items() if key != "run"})
            record["used"] = "average"
        self._results["out_source"] = shared_source(files)
        report = cwd / f"{stem}_runs.json"
        report.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
        self._results["out_report"] = str(report)
        return runtime


def shared_source(paths: list[str]) -> str:
    """The first path without the BIDS entities that not every path has (niworkflows' rule for names).

    >>> shared_source(["/d/sub-1/ses-A/anat/sub-1_ses-A_run-1_T1w.nii.gz",
    ...                "/d/sub-1/ses-B/anat/sub-1_ses-B_run-1_T1w.nii.gz"])
    '/d/sub-1/anat/sub-1_run-1_T1w.nii.gz'
    """
    first = Path(paths[0])
    names = [set(Path(path).name.split("_")) for path in paths]
    parts = first.name.split("_")
    kept = [part for part in parts[:-1] if all(part in name for name in names)] + parts[-1:]
    folder = first.parent
    session = folder.parent.name
    if session.startswith("ses-") and not any(part == session for part in kept):
        folder = folder.parent.parent / folder.name  # sub-1/ses-A/anat → sub-1/anat
    return str(folder / "_".join(kept))
