"""The sink of ``path:`` outputs: copies a workflow output into the output folder under a given path.

Only the runner of ``smriflow run`` adds it (after the derivatives barrier, like the BIDS datasink of
:mod:`smriflow.interfaces.bids`); it is not a processing step, so ``__all__`` is empty and it stays out of
the YAML interface registry.
"""

from __future__ import annotations

from nipype.interfaces.base import BaseInterfaceInputSpec, SimpleInterface, TraitedSpec, isdefined, traits

__all__: list[str] = []  # not a processing step


class _PublishOutputInputSpec(BaseInterfaceInputSpec):
    in_file = traits.Any(mandatory=True, desc="the output: a file, a directory or a list of files")
    base_directory = traits.Str(mandatory=True, desc="the run's output folder (absolute)")
    path = traits.Str(mandatory=True, desc="where to write, relative to base_directory ('/' ends a folder)")
    optional = traits.Bool(
        False, usedefault=True, desc="an unset in_file writes nothing (an output with required: false)"
    )


class _PublishOutputOutputSpec(TraitedSpec):
    out_file = traits.List(traits.Str, desc="the paths written")


class PublishOutput(SimpleInterface):
    """Copy an output to ``base_directory/path`` (:func:`smriflow.bids.publish.publish_outputs`)."""

    input_spec = _PublishOutputInputSpec
    output_spec = _PublishOutputOutputSpec
    # Always write: the destination is outside the work folder, and a rerun must restore a deleted copy.
    _always_run = True

    def _check_mandatory_inputs(self) -> None:
        if self.inputs.optional and not isdefined(self.inputs.in_file):
            return  # nothing to write: the optional output is absent for this subject
        super()._check_mandatory_inputs()

    def _run_interface(self, runtime):
        from smriflow.bids.publish import publish_outputs

        if self.inputs.optional and not isdefined(self.inputs.in_file):
            self._results["out_file"] = []
            return runtime

        written = publish_outputs(self.inputs.in_file, self.inputs.base_directory, self.inputs.path)
        self._results["out_file"] = [str(path) for path in written]
        return runtime
