"""Writing BIDS derivatives: the datasink and the barrier that gates it, on niworkflows' sink.

Only the runner of ``smriflow run`` (:mod:`smriflow.engine.prepare`) adds these nodes, after the embedded
workflow: workflows themselves never write derivatives (STYLE.md §4). Per subject it builds::

    <workflow outputs> ──► derivatives_barrier ──► ds_<output> (one per output with ``bids:``)

* :class:`Barrier` runs only once *every* output of the subject exists (nipype starts a node when all its
  upstream nodes have finished), so a subject that fails anywhere gets no derivative at all. It is a real
  interface on purpose: nipype deletes ``IdentityInterface`` nodes when it expands a graph, which would
  connect each sink straight to the node that made its file.
* :class:`DerivativesDataSink` names files as niworkflows does, then *publishes* them
  (:func:`~smriflow.bids.publish.publish_file`): each file is copied to a hidden temporary name in its final
  folder and renamed into place, so a derivative either is absent or complete. Unlike niworkflows' sink it
  never changes the data type of an image (the workflow decides it), it writes the JSON sidecar (provenance)
  before the data file, and it copies a ``.nii.gz`` that needs no change without compressing it again
  (:func:`copy_unchanged`), and writes one whose header it fixes at the nodes' gzip level 1 instead of 9
  (:func:`~smriflow.utils.gzipcopy.write_nifti_anonymous`).

The entities a name may carry (:mod:`smriflow.bids.entities`), the atomic copy (:mod:`smriflow.bids.publish`)
and the collection of each subject's input files (:mod:`smriflow.bids.inputs`) are plain functions of
:mod:`smriflow.bids`, without nipype.

Nothing here is a processing step, so ``__all__`` is empty: these classes stay out of the YAML interface
registry (:func:`smriflow.engine.registry.interface_registry`); import them by name.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import defaultdict
from pathlib import Path
from typing import Any

from nipype.interfaces.base import DynamicTraitedSpec, isdefined, traits
from nipype.interfaces.io import IOBase, add_traits

from smriflow.bids.entities import ENTITY_KEYS, dropped_entities
from smriflow.bids.publish import publish_file
from smriflow.utils.gzipcopy import copy_gzip_anonymous, write_nifti_anonymous
from smriflow.utils.niftiio import split_ext

__all__: list[str] = []  # not processing steps: keep them out of the YAML interface registry


def _import_niworkflows_bids():
    """Import ``niworkflows.interfaces.bids`` without indexing the whole TemplateFlow cache.

    At import it calls ``templateflow.api.templates()`` (for its list of standard spaces), which makes
    pybids index every file of ``$TEMPLATEFLOW_HOME``: about 5 s on each start of ``smriflow``. The
    template names are the ``tpl-<name>`` folders of that cache, so they are listed directly while the
    module is imported; nothing is downloaded either way.
    """
    import sys

    if "niworkflows.interfaces.bids" in sys.modules:
        return sys.modules["niworkflows.interfaces.bids"]
    import templateflow.api as tf_api
    from templateflow import conf

    original = tf_api.templates

    def listed(**kwargs: Any) -> list[str]:
        if kwargs:
            return original(**kwargs)
        home = Path(conf.TF_HOME)
        return sorted(path.name[len("tpl-") :] for path in home.glob("tpl-*") if path.is_dir())

    tf_api.templates = listed
    try:
        import niworkflows.interfaces.bids as module
    finally:
        tf_api.templates = original
    # niworkflows describes the res- of a standard space from TemplateFlow's metadata, which it downloads
    # when the cache lacks it: read offline instead (smriflow never downloads at run time)
    from smriflow.data.templates import resolution_note

    module._get_tf_resolution = resolution_note
    return module


_NIWORKFLOWS_BIDS = _import_niworkflows_bids()
_NiworkflowsDataSink = _NIWORKFLOWS_BIDS.DerivativesDataSink
_NIWORKFLOWS_COPY = _NIWORKFLOWS_BIDS._copy_any  # the module's copy of a file that needs no change
_NIWORKFLOWS_WRITE = _NIWORKFLOWS_BIDS.unsafe_write_nifti_header_and_data  # its write of a fixed image


def copy_unchanged(src: str, dst: str) -> bool:
    """niworkflows' copy of a derivative that needs no change, without compressing a ``.nii.gz`` again.

    niworkflows decompresses and recompresses at level 9 to drop the gzip header's name and time stamp;
    :func:`~smriflow.utils.gzipcopy.copy_gzip_anonymous` drops them and keeps the compressed stream.
    Anything else (plain files, several gzip members) goes to niworkflows' own copy.
    """
    if os.fspath(src).endswith(".gz") and os.fspath(dst).endswith(".gz"):
        if os.path.exists(dst):
            os.unlink(dst)
        if copy_gzip_anonymous(src, dst):
            return True
    return _NIWORKFLOWS_COPY(src, dst)


# Any suffix and extension, for files niworkflows' patterns do not know (e.g. ``_stats.json``). It comes
# after niworkflows' patterns, so the usual names (T1w, mask, dseg, probseg, xfm ...) are unchanged.
_FALLBACK_PATTERN = (
    "sub-{subject}[/ses-{session}]/{datatype|anat}/sub-{subject}[_ses-{session}][_acq-{acquisition}]"
    "[_ce-{ceagent}][_rec-{reconstruction}][_run-{run}][_hemi-{hemi}][_from-{from}][_to-{to}]"
    "[_mode-{mode}][_space-{space}][_cohort-{cohort}][_res-{resolution}][_den-{density}][_atlas-{atlas}]"
    "[_label-{label}][_desc-{desc}]_{suffix}{extension}"
)


# niworkflows' patterns have no `atlas` entity: without this one (tried first, and only when `atlas` is
# given), `{atlas: aal, suffix: dseg}` would silently be written as `..._dseg.nii.gz`, over the tissue dseg.
_ATLAS_PATTERN = _FALLBACK_PATTERN.replace("[_atlas-{atlas}]", "_atlas-{atlas}")
#: The path patterns of :class:`DerivativesDataSink`, tried in order (the first that fits names the file);
#: :func:`smriflow.engine.naming.derivative_path` names files with them too.
FILE_PATTERNS = (_ATLAS_PATTERN, *_NiworkflowsDataSink._file_patterns, _FALLBACK_PATTERN)


class Barrier(IOBase):
    """Pass every input through unchanged, and only once all of them are set.

    A node of this interface finishes only after every node feeding it has finished, so nodes downstream
    of it (the datasinks) run only when a whole subject has succeeded. Unlike ``IdentityInterface``, nipype
    keeps it in the executed graph.

    Parameters
    ----------
    fields : list of str
        Names of the inputs, which are also the names of the outputs.
    optional : list of str
        Fields that may stay unset (outputs with ``required: false``, e.g. of an absent T2w).
    """

    input_spec = DynamicTraitedSpec
    output_spec = DynamicTraitedSpec

    def __init__(self, fields: list[str] | None = None, optional: list[str] | None = None, **inputs: Any):
        super().__init__()
        if not fields:
            raise ValueError(f"'fields' must be a non-empty list of names. {fields!r} was provided.")
        unknown = sorted((set(inputs) | set(optional or ())) - set(fields))
        if unknown:
            raise ValueError(f"inputs {unknown} are not among 'fields' {list(fields)}")
        self._fields = list(fields)
        self._optional = set(optional or ())
        add_traits(self.inputs, self._fields)
        self.inputs.trait_set(**inputs)

    def _add_output_traits(self, base):
        return add_traits(base, self._fields)

    def _run_interface(self, runtime):
        missing = [
            name
            for name in self._fields
            if name not in self._optional and not isdefined(getattr(self.inputs, name))
        ]
        if missing:
            raise ValueError(f"Barrier inputs {missing} are not set: every field must receive a value")
        return runtime

    def _list_outputs(self) -> dict[str, Any]:
        return {name: getattr(self.inputs, name) for name in self._fields}


class _DerivativesDataSinkInputSpec(_NiworkflowsDataSink.input_spec):
    provenance = traits.Dict(
        traits.Str,
        traits.Any,
        desc="fields written to the JSON sidecar of the derivative (not for .json derivatives, which "
        "are their own sidecar)",
    )
    optional = traits.Bool(
        False, usedefault=True, desc="an unset in_file writes nothing (an output with required: false)"
    )


class DerivativesDataSink(_NiworkflowsDataSink):
    """Write a derivative under ``base_directory`` with a BIDS name, atomically, with a provenance sidecar.

    The name is built as in niworkflows: the entities of ``source_file`` (subject, session, acquisition,
    run, ...) plus those given as inputs (``desc``, ``suffix``, ...). Files are first written inside the
    node's folder, then published with :func:`~smriflow.bids.publish.publish_file`. Images keep the data type
    the workflow gave them; ``check_hdr`` still sets qform/sform codes and units as niworkflows does.

    Examples
    --------
    >>> sink = DerivativesDataSink(base_directory="out", desc="head", suffix="mask")  # doctest: +SKIP
    >>> sink.inputs.in_file = "mask.nii.gz"  # doctest: +SKIP
    >>> sink.inputs.source_file = "bids/sub-01/anat/sub-01_T1w.nii.gz"  # doctest: +SKIP
    >>> sink.run().outputs.out_file  # doctest: +SKIP
    '.../out/sub-01/anat/sub-01_desc-head_mask.nii.gz'
    """

    input_spec = _DerivativesDataSinkInputSpec
    out_path_base = ""  # write straight into base_directory (the --output-dir)
    _default_dtypes = defaultdict(lambda: None)  # never change an image's data type
    _file_patterns = FILE_PATTERNS

    def _check_mandatory_inputs(self) -> None:
        if self.inputs.optional and not isdefined(self.inputs.in_file):
            return  # nothing to write: the optional output is absent for this subject
        super()._check_mandatory_inputs()

    def _run_interface(self, runtime):
        if self.inputs.optional and not isdefined(self.inputs.in_file):
            self._results = {}
            return runtime
        if not isdefined(self.inputs.base_directory):
            raise ValueError("'base_directory' must be set to the derivatives folder")
        final_root = Path(self.inputs.base_directory).absolute() / self.out_path_base
        staging = Path(runtime.cwd).absolute() / "_staged"
        shutil.rmtree(staging, ignore_errors=True)
        # niworkflows names and writes the files; here it writes them into the node folder first.
        given = self.inputs.base_directory
        self.inputs.base_directory = str(staging)
        # for this call only: copies keep the compressed stream, rewrites (a header fixed) use level 1
        _NIWORKFLOWS_BIDS._copy_any = copy_unchanged
        _NIWORKFLOWS_BIDS.unsafe_write_nifti_header_and_data = write_nifti_anonymous
        try:
            runtime = super()._run_interface(runtime)
        finally:
            self.inputs.base_directory = given
            _NIWORKFLOWS_BIDS._copy_any = _NIWORKFLOWS_COPY
            _NIWORKFLOWS_BIDS.unsafe_write_nifti_header_and_data = _NIWORKFLOWS_WRITE
        staged_files = self._results["out_file"]
        if not isinstance(staged_files, list):
            staged_files = [staged_files]
        staged_meta = self._results.get("out_meta")
        self._check_names(staged_files)
        published, sidecars = [], []
        for staged in map(Path, staged_files):
            relative = staged.relative_to(staging / self.out_path_base)
            final = final_root / relative
            stem, extension = split_ext(final)
            new_sidecar = None
            if extension != ".json":
                sidecar = self._sidecar(staged_meta)
                if sidecar:
                    final_sidecar = final.with_name(f"{stem}.json")
                    temporary = staged.with_name(f"{stem}.provenance.json")
                    temporary.write_text(json.dumps(sidecar, indent=2, sort_keys=True) + "\n")
                    # the sidecar first: a data file implies its sidecar
                    if publish_file(temporary, final_sidecar, root=final_root):
                        new_sidecar = final_sidecar
                    sidecars.append(str(final_sidecar))
            try:
                publish_file(staged, final, root=final_root)
            except BaseException:
                if new_sidecar is not None and not final.exists():  # no sidecar without its data file
                    new_sidecar.unlink(missing_ok=True)
                raise
            published.append(str(final))
        shutil.rmtree(staging, ignore_errors=True)
        self._results["out_file"] = published[0] if len(published) == 1 else published
        if sidecars:
            self._results["out_meta"] = sidecars[0] if len(sidecars) == 1 else sidecars
        else:
            self._results.pop("out_meta", None)
        return runtime

    def _check_names(self, staged_files: list[str]) -> None:
        """Refuse to publish a file whose name lost an entity (two outputs could then share one name)."""
        for index, staged in enumerate(staged_files):
            given = {}
            for key in ENTITY_KEYS:
                value = getattr(self.inputs, key, None) if self.inputs.trait(key) else None
                if isdefined(value) and value is not None:
                    given[key] = value[index] if isinstance(value, list) else value
            dropped = dropped_entities(Path(staged).name, given)
            if dropped:
                raise ValueError(
                    f"{Path(staged).name}: the BIDS path patterns dropped the entities {dropped} "
                    "from the derivative's name; refusing to write it under a misleading name"
                )

    def _sidecar(self, staged_meta: Any) -> dict[str, Any]:
        """niworkflows' metadata (if any) updated with ``provenance``."""
        fields: dict[str, Any] = {}
        if isinstance(staged_meta, str) and Path(staged_meta).is_file():
            fields.update(json.loads(Path(staged_meta).read_text()))
        if fields.get("Resolution") == "Unknown":  # niworkflows' note without TemplateFlow metadata
            del fields["Resolution"]
        if isdefined(self.inputs.provenance):
            fields.update(self.inputs.provenance)
        return fields
