"""Derivative names: the entities and paths ``smriflow run`` gives each output, and the file names."""

from __future__ import annotations

from smriflow.config.spec import OutputSpec
from smriflow.engine.naming import derivative_path, output_entities, output_path


def test_output_entities_substitute_the_arguments():
    out = OutputSpec.model_validate({"from": "n.out", "bids": {"space": "$template", "suffix": "T1w"}})
    assert output_entities(out, {"template": "MNI"}) == {"space": "MNI", "suffix": "T1w"}
    assert output_entities(OutputSpec.model_validate({"from": "n.out"}), {}) == {}


def test_output_path_fills_the_labels():
    out = OutputSpec.model_validate({"from": "n.out", "path": "sub-{subject}/ses-{session}/$name.html"})
    assert output_path(out, {}, subject="01", session="a") == "sub-01/ses-a/$name.html"  # only whole values
    out = OutputSpec.model_validate({"from": "n.out", "path": "$where"})
    assert output_path(out, {"where": "sub-{subject}.html"}, subject="01") == "sub-01.html"
    assert output_path(OutputSpec.model_validate({"from": "n.out", "bids": {"suffix": "T1w"}}), {}) is None


def test_derivative_path_uses_the_sink_patterns():
    assert derivative_path({"desc": "brain", "suffix": "mask"}, subject="01") == (
        "sub-01/anat/sub-01_desc-brain_mask.nii.gz"
    )
    assert derivative_path({"atlas": "aal", "suffix": "volumes", "extension": ".tsv"}, subject="01") == (
        "sub-01/anat/sub-01_atlas-aal_volumes.tsv"
    )
    # the source's datatype chooses the pattern: without it a labelled mask would land in perf/
    assert derivative_path({"label": "lesion", "suffix": "mask"}, subject="01") == (
        "sub-01/anat/sub-01_label-lesion_mask.nii.gz"
    )


def test_derivative_path_expands_lists_and_keeps_the_session():
    assert derivative_path({"label": ["GM", "WM"], "suffix": "probseg"}, subject="01", session="a") == [
        "sub-01/ses-a/anat/sub-01_ses-a_label-GM_probseg.nii.gz",
        "sub-01/ses-a/anat/sub-01_ses-a_label-WM_probseg.nii.gz",
    ]
