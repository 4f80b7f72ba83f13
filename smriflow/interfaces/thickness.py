"""Cortical thickness of one subject: a thin shell over :func:`smriflow.anat.thickness.subject_thickness`.

In ``anat_preproc`` the node runs unless ``--set thickness=false``: with ``enabled`` false it does nothing and
leaves its outputs undefined, so the workflow's optional thickness outputs are not written (the engine has
no conditional sub-workflows; :class:`~smriflow.interfaces.contrasts.ContrastToT1w` skips a missing input
the same way).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from nipype.interfaces.base import (
    File,
    InputMultiObject,
    OutputMultiObject,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)

from smriflow.interfaces.base import ThreadedInputSpec

__all__ = ["CorticalThickness"]


class _CorticalThicknessInputSpec(ThreadedInputSpec):
    in_tpms = InputMultiObject(
        File(exists=True), mandatory=True, desc="GM, WM and CSF probsegs on the T1w grid, in this order"
    )
    dk_dseg = File(
        exists=True, mandatory=True, desc="Desikan-Killiany atlas on the T1w grid (WarpAtlas.out_dseg)"
    )
    destrieux_dseg = File(exists=True, desc="Destrieux atlas on the T1w grid: adds its tables")
    in_t1w = File(
        exists=True,
        desc="bias-corrected T1w on the same grid: the GM/WM boundary moves to its intensity edge",
    )
    source_file = traits.Str(desc="the BIDS T1w; its sub-/ses- entities name the tables' row")
    enabled = traits.Bool(True, usedefault=True, desc="false: do nothing, leave every output undefined")
    max_thickness = traits.Float(5.0, usedefault=True, desc="cap of the thickness (mm)")


class _CorticalThicknessOutputSpec(TraitedSpec):
    out_thickness = File(exists=True, desc="thickness map (mm, float32; 0 outside the cortex)")
    out_region = File(exists=True, desc="Desikan-Killiany cortical label of every voxel of the map")
    out_dk_tables = OutputMultiObject(
        File(exists=True), desc="lh and rh Desikan-Killiany tables (aparcstats2table layout)"
    )
    out_destrieux_tables = OutputMultiObject(
        File(exists=True), desc="lh and rh Destrieux tables (aparcstats2table layout, aparc.a2009s)"
    )
    out_record = File(exists=True, desc="JSON record: mean thickness per hemisphere, IQMs, regional means")


def row_name(source_file: str) -> str:
    """``sub-<label>`` from a BIDS file name: the tables' row, joined with participants.tsv.

    The session is left out, as the ``_volumes.tsv`` tables leave it (stats reads one row per subject).
    """
    found = re.search(r"(?:^|_)sub-([A-Za-z0-9]+)", Path(source_file).name)
    if not found:
        raise ValueError(f"CorticalThickness: 'source_file' has no sub-<label> entity ({source_file!r})")
    return f"sub-{found.group(1)}"


class CorticalThickness(SimpleInterface):
    """Voxel-wise cortical thickness, its region map and FreeSurfer-layout tables (docs/thickness.md)."""

    input_spec = _CorticalThicknessInputSpec
    output_spec = _CorticalThicknessOutputSpec

    def _check_mandatory_inputs(self) -> None:
        if not self.inputs.enabled:
            return  # switched off: its atlas warps are off too and leave dk_dseg undefined
        super()._check_mandatory_inputs()

    def _run_interface(self, runtime):
        if not self.inputs.enabled:
            return runtime  # --set thickness=false
        from smriflow.anat.thickness import subject_thickness
        from smriflow.data.atlases import atlas_label
        from smriflow.stats.freesurfer import write_wide_table

        tpms = list(self.inputs.in_tpms)
        if len(tpms) != 3:
            raise ValueError(f"'in_tpms' must list 3 files (GM, WM, CSF). {len(tpms)} were provided.")
        atlases = {"desikan_killiany": self.inputs.dk_dseg}
        if isdefined(self.inputs.destrieux_dseg):
            atlases["destrieux"] = self.inputs.destrieux_dseg
        subject = row_name(self.inputs.source_file) if isdefined(self.inputs.source_file) else "sub-unknown"
        thick, region, tables, record = subject_thickness(
            tpms[0],
            tpms[1],
            atlases,
            subject,
            max_thickness=self.inputs.max_thickness,
            workers=self.inputs.num_threads,
            t1w=self.inputs.in_t1w if isdefined(self.inputs.in_t1w) else None,
        )
        cwd = Path(runtime.cwd)
        self._results["out_thickness"] = str(cwd / "thickness.nii.gz")
        thick.to_filename(self._results["out_thickness"])
        self._results["out_region"] = str(cwd / "atlas-desikankilliany_desc-cortex_dseg.nii.gz")
        region.to_filename(self._results["out_region"])
        for name, output in (("desikan_killiany", "out_dk_tables"), ("destrieux", "out_destrieux_tables")):
            if name in tables:
                self._results[output] = [
                    str(write_wide_table(tables[name][h], cwd / f"hemi-{h}_atlas-{atlas_label(name)}.tsv"))
                    for h in ("lh", "rh")
                ]
        self._results["out_record"] = str(cwd / "thickness.json")
        Path(self._results["out_record"]).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
        return runtime
