"""Quality control: the image-quality metrics of one T1w, and the group table that flags outliers.

Thin shells over :mod:`smriflow.qc.iqms` (``compute_iqms`` and its two halves) and
:func:`smriflow.stats.qc.group_qc`; the
metrics are described in ``docs/iqms.md`` and the group rules in ``docs/qc.md``.
"""

from __future__ import annotations

import os

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    Directory,
    File,
    InputMultiObject,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)

from smriflow.data.templates import DEFAULT_TEMPLATE
from smriflow.interfaces.base import param_trait
from smriflow.stats.options import QCRules, params_of

__all__ = ["AddTemplateIQMs", "AddThicknessIQMs", "ComputeIQMs", "GroupIQMTable"]


def _template_trait() -> traits.Str:
    return traits.Str(
        DEFAULT_TEMPLATE,
        usedefault=True,
        resource="template",
        desc="template of the normalization (T1w, mask, tpms)",
    )


class _ComputeIQMsInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="conformed raw T1w (RAS, before bias correction)")
    in_preproc = File(exists=True, mandatory=True, desc="N4-corrected T1w on the same grid")
    in_bias = File(exists=True, mandatory=True, desc="N4 bias field on the same grid")
    in_mask = File(exists=True, mandatory=True, desc="brain mask on the same grid")
    in_dseg = File(exists=True, mandatory=True, desc="tissue labels (1 GM, 2 WM, 3 CSF) on the same grid")
    in_tpms = InputMultiObject(
        File(exists=True), mandatory=True, desc="GM, WM and CSF probability maps, in this order"
    )
    std_t1w = File(
        exists=True,
        requires=["std_tpms"],
        desc="T1w resampled into the template (unset: the metrics of the native images only; AddTemplateIQMs "
        "adds the others)",
    )
    std_tpms = InputMultiObject(
        File(exists=True), requires=["std_t1w"], desc="GM, WM and CSF probability maps in the template"
    )
    template = _template_trait()


class _ComputeIQMsOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="iqms.json: metric name -> float, sorted keys")


class ComputeIQMs(SimpleInterface):
    """MRIQC's structural IQMs plus processing-quality metrics of one T1w, as a flat JSON file."""

    input_spec = _ComputeIQMsInputSpec
    output_spec = _ComputeIQMsOutputSpec

    def _run_interface(self, runtime):
        from smriflow.qc.iqms import compute_iqms, image_iqms, write_iqms

        inputs = self.inputs
        notes: dict[str, str] = {}
        images = (inputs.in_file, inputs.in_preproc, inputs.in_bias, inputs.in_mask, inputs.in_dseg)
        if isdefined(inputs.std_t1w):
            iqms = compute_iqms(
                *images,
                list(inputs.in_tpms),
                inputs.std_t1w,
                list(inputs.std_tpms),
                template=inputs.template,
                notes=notes,
            )
        else:
            iqms = image_iqms(*images, list(inputs.in_tpms), notes=notes)
        self._results["out_file"] = write_iqms(iqms, os.path.join(runtime.cwd, "iqms.json"), notes)
        return runtime


class _AddTemplateIQMsInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="iqms.json of ComputeIQMs without the template images")
    std_t1w = File(exists=True, mandatory=True, desc="T1w resampled into the template")
    std_tpms = InputMultiObject(
        File(exists=True), mandatory=True, desc="GM, WM and CSF probability maps in the template"
    )
    template = _template_trait()


class _AddTemplateIQMsOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="iqms.json with reg_ncc, reg_dice and tpm_overlap_* (as ComputeIQMs')")


class AddTemplateIQMs(SimpleInterface):
    """Add the metrics of the normalized images to an iqms.json of the native images.

    A node of its own so that the native metrics need not wait for the registration (``qc.yml``); the file is
    byte for byte the one ComputeIQMs writes given the template images too.
    """

    input_spec = _AddTemplateIQMsInputSpec
    output_spec = _AddTemplateIQMsOutputSpec

    def _run_interface(self, runtime):
        from smriflow.qc.iqms import add_template_iqms

        inputs = self.inputs
        out_file = os.path.join(runtime.cwd, "iqms.json")
        self._results["out_file"] = add_template_iqms(
            inputs.in_file, inputs.std_t1w, list(inputs.std_tpms), out_file, template=inputs.template
        )
        return runtime


class _AddThicknessIQMsInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="iqms.json of ComputeIQMs")
    thickness_record = File(
        exists=True, desc="CorticalThickness's JSON record: its 'iqms' (thickness_*) join the metrics"
    )


class _AddThicknessIQMsOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="iqms.json with the thickness IQMs (the same metrics without a record)")


class AddThicknessIQMs(SimpleInterface):
    """Add the thickness IQMs of CorticalThickness's record to an iqms.json.

    A node of its own so that the image metrics need not wait for the thickness (``qc.yml``).
    """

    input_spec = _AddThicknessIQMsInputSpec
    output_spec = _AddThicknessIQMsOutputSpec

    def _run_interface(self, runtime):
        from smriflow.qc.iqms import add_thickness_iqms

        record = self.inputs.thickness_record if isdefined(self.inputs.thickness_record) else None
        out_file = os.path.join(runtime.cwd, "iqms.json")
        self._results["out_file"] = add_thickness_iqms(self.inputs.in_file, record, out_file)
        return runtime


_GroupIQMTableInputSpec = type(
    "_GroupIQMTableInputSpec",
    (BaseInterfaceInputSpec,),
    {
        "__module__": __name__,
        "derivatives_dir": Directory(
            exists=True, mandatory=True, desc="folder searched (recursively) for *_desc-iqms_T1w.json files"
        ),
        # the thresholds, as QCRules declares them (default, bounds, doc)
        **{name: param_trait(param) for name, param in params_of(QCRules).items()},
    },
)


class _GroupIQMTableOutputSpec(TraitedSpec):
    out_tsv = File(exists=True, desc="one row per image: subject, session, IQMs, qc_flag, qc_reasons")


class GroupIQMTable(SimpleInterface):
    """Collect every IQM file of a derivatives folder into one table and flag the outliers with reasons."""

    input_spec = _GroupIQMTableInputSpec
    output_spec = _GroupIQMTableOutputSpec

    def _run_interface(self, runtime):
        from smriflow.stats.qc import collect_iqms, group_qc, write_table

        inputs = self.inputs
        rules = QCRules(**{name: getattr(inputs, name) for name in params_of(QCRules)})
        table = group_qc(collect_iqms(inputs.derivatives_dir), rules)
        self._results["out_tsv"] = write_table(table, os.path.join(runtime.cwd, "group_desc-iqms_T1w.tsv"))
        return runtime
