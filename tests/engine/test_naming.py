"""Derivative names: the entities and paths ``smriflow run`` gives each output, and the file names."""

from __future__ import annotations

import pytest

from smriflow.config.spec import OutputSpec
from smriflow.engine.naming import derivative_path, mapped_items, output_entities, output_path


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


def test_mapped_items_name_each_item_by_its_own_values():
    out = OutputSpec.model_validate(
        {
            "from": "n.out",
            "bids": {"space": "$s", "resolution": "$r", "label": ["GM", "WM"], "suffix": "probseg"},
            "map_over": ["space", "resolution"],
        }
    )
    entities = output_entities(out, {"s": ["A", "B"], "r": [None, 2]})
    items = mapped_items(out, entities)
    assert items == [
        {"label": ["GM", "WM"], "suffix": "probseg", "space": "A"},
        {"label": ["GM", "WM"], "suffix": "probseg", "space": "B", "resolution": 2},
    ]
    assert [derivative_path(item, subject="01") for item in items] == [
        [
            "sub-01/anat/sub-01_space-A_label-GM_probseg.nii.gz",
            "sub-01/anat/sub-01_space-A_label-WM_probseg.nii.gz",
        ],
        [
            "sub-01/anat/sub-01_space-B_res-2_label-GM_probseg.nii.gz",
            "sub-01/anat/sub-01_space-B_res-2_label-WM_probseg.nii.gz",
        ],
    ]
    assert mapped_items(out, output_entities(out, {"s": [], "r": []})) == []
    assert mapped_items(OutputSpec.model_validate({"from": "n.out", "bids": {"suffix": "T1w"}}), {}) is None
    with pytest.raises(ValueError, match=r"lists of one length; got space=\['A'\], resolution=\[\]"):
        mapped_items(out, output_entities(out, {"s": ["A"], "r": []}))


def test_map_over_names_keys_of_bids():
    with pytest.raises(ValueError, match=r"'map_over' names \['space'\], which are not keys of 'bids'"):
        OutputSpec.model_validate({"from": "n.out", "bids": {"suffix": "T1w"}, "map_over": ["space"]})
