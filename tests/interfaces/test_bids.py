"""Derivatives writing: entity rules, atomic publishing, the datasink, the barrier, input collection."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nibabel as nb
import numpy as np
import pytest
from conftest import write_synthetic_t1w
from nipype.interfaces.base import isdefined
from nipype.interfaces.utility import IdentityInterface
from nipype.pipeline import engine as pe

from smriflow.bids.entities import dropped_entities
from smriflow.bids.inputs import BIDSInputError, BIDSQueryError, collect_subjects
from smriflow.bids.publish import publish_file
from smriflow.engine.registry import interface_registry
from smriflow.interfaces.bids import Barrier, DerivativesDataSink

T1W_QUERY = {"t1w": ({"datatype": "anat", "suffix": "T1w", "extension": [".nii", ".nii.gz"]}, True)}


# -- publish ----------------------------------------------------------------------------------------------
def test_publish_is_atomic_and_skips_identical_copies(tmp_path, monkeypatch):
    source = tmp_path / "a.txt"
    source.write_text("one")
    target = tmp_path / "out" / "deep" / "a.txt"
    assert publish_file(source, target) is True
    assert target.read_text() == "one"
    before = target.stat().st_mtime_ns
    os.utime(target, ns=(before - 10**9, before - 10**9))
    assert publish_file(source, target) is False  # identical: left untouched
    assert target.stat().st_mtime_ns == before - 10**9

    source.write_text("two")
    replaced = []
    real_replace = os.replace

    def spy(src, dst):
        # The new content is complete under a hidden name in the same folder before the rename.
        assert Path(src).parent == target.parent and Path(src).name.startswith(".a.txt.")
        assert Path(src).read_text() == "two" and target.read_text() == "one"
        replaced.append(dst)
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    assert publish_file(source, target) is True
    assert replaced == [target] and target.read_text() == "two"
    assert sorted(p.name for p in target.parent.iterdir()) == ["a.txt"]  # no temporary left


def test_publish_removes_the_temporary_file_on_failure(tmp_path, monkeypatch):
    source = tmp_path / "a.txt"
    source.write_text("x")

    def broken(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError, match="disk full"):
        publish_file(source, tmp_path / "out" / "a.txt")
    assert list((tmp_path / "out").iterdir()) == []


def _node_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "node"
    folder.mkdir(exist_ok=True)
    return folder


# -- the datasink -----------------------------------------------------------------------------------------
@pytest.fixture
def source_t1w(tmp_path) -> Path:
    return write_synthetic_t1w(
        tmp_path / "bids" / "sub-01" / "ses-A" / "anat" / "sub-01_ses-A_acq-mp_T1w.nii.gz"
    )


def test_sink_names_like_bids_and_writes_provenance_sidecar(tmp_path, source_t1w):
    data = (nb.load(source_t1w).get_fdata() > 50).astype(np.float32)  # a float "mask": dtype must be kept
    mask = tmp_path / "mask.nii.gz"
    nb.Nifti1Image(data, nb.load(source_t1w).affine).to_filename(mask)
    out = tmp_path / "derivatives"
    sink = DerivativesDataSink(
        base_directory=str(out),
        source_file=str(source_t1w),
        in_file=str(mask),
        desc="head",
        suffix="mask",
        provenance={"GeneratedBy": [{"Name": "smriflow"}], "Sources": ["bids:raw:x"]},
    )
    result = sink.run(cwd=str(_node_dir(tmp_path)))
    expected = out / "sub-01" / "ses-A" / "anat" / "sub-01_ses-A_acq-mp_desc-head_mask.nii.gz"
    assert result.outputs.out_file == str(expected)
    assert result.outputs.out_meta == str(expected.with_name("sub-01_ses-A_acq-mp_desc-head_mask.json"))
    assert json.loads(Path(result.outputs.out_meta).read_text()) == {
        "GeneratedBy": [{"Name": "smriflow"}],
        "Sources": ["bids:raw:x"],
    }
    written = nb.load(expected)
    assert written.get_data_dtype() == np.float32  # niworkflows would have made it uint8
    np.testing.assert_array_equal(written.get_fdata(), data)
    assert sorted(p.name for p in expected.parent.iterdir()) == [
        "sub-01_ses-A_acq-mp_desc-head_mask.json",
        "sub-01_ses-A_acq-mp_desc-head_mask.nii.gz",
    ]
    assert not (tmp_path / "node" / "_staged").exists()


def test_sink_keeps_the_atlas_entity_and_lists_name_items(tmp_path, source_t1w):
    """niworkflows' patterns have no atlas entity: a dseg per atlas must not collapse onto ``_dseg``."""
    out = tmp_path / "derivatives"
    sink = DerivativesDataSink(
        base_directory=str(out),
        source_file=str(source_t1w),
        in_file=[str(source_t1w), str(source_t1w)],
        atlas=["aal", "harvardoxford"],
        suffix="dseg",
    )
    result = sink.run(cwd=str(_node_dir(tmp_path)))
    assert [Path(f).name for f in result.outputs.out_file] == [
        "sub-01_ses-A_acq-mp_atlas-aal_dseg.nii.gz",
        "sub-01_ses-A_acq-mp_atlas-harvardoxford_dseg.nii.gz",
    ]


def test_dropped_entities():
    assert dropped_entities("sub-01_desc-brain_mask.nii.gz", {"desc": "brain", "atlas": "aal"}) == ["atlas"]
    assert dropped_entities("sub-01_from-T1w_to-MNI_mode-image_xfm.h5", {"from": "T1w", "to": "MNI"}) == []
    assert dropped_entities("sub-01_res-2_T1w.nii.gz", {"resolution": "2"}) == []


def test_sink_json_output_is_its_own_sidecar(tmp_path, source_t1w):
    stats = tmp_path / "stats.json"
    stats.write_text('{"mean": 1.5}')
    sink = DerivativesDataSink(
        base_directory=str(tmp_path / "out"),
        source_file=str(source_t1w),
        in_file=str(stats),
        desc="masked",
        suffix="stats",
        provenance={"GeneratedBy": []},
    )
    result = sink.run(cwd=str(_node_dir(tmp_path)))
    out = Path(result.outputs.out_file)
    assert out.name == "sub-01_ses-A_acq-mp_desc-masked_stats.json"
    assert json.loads(out.read_text()) == {"mean": 1.5}  # untouched by provenance


def test_sink_compresses_when_asked(tmp_path, source_t1w):
    plain = tmp_path / "smooth.nii"
    nb.load(source_t1w).to_filename(plain)
    sink = DerivativesDataSink(
        base_directory=str(tmp_path / "out"),
        source_file=str(source_t1w),
        in_file=str(plain),
        desc="smooth",
        suffix="T1w",
        compress=True,
    )
    result = sink.run(cwd=str(_node_dir(tmp_path)))
    assert result.outputs.out_file.endswith("sub-01_ses-A_acq-mp_desc-smooth_T1w.nii.gz")


def test_sink_rewrites_a_header_it_fixes_at_level_1_with_the_same_data(tmp_path, source_t1w):
    """A space-T1w image whose qform/sform codes niworkflows sets to 2: rewritten at the nodes' gzip level
    (1, extra-flags byte 4), not at 9 (byte 2), anonymously; the data and the fixed header as niworkflows'."""
    img = nb.load(source_t1w)
    labels = (img.get_fdata() // 40).astype(np.int16)
    dseg = tmp_path / "labels.nii.gz"
    nb.Nifti1Image(labels, img.affine).to_filename(dseg)  # codes of a new image: sform 2, qform 0
    sink = DerivativesDataSink(
        base_directory=str(tmp_path / "out"),
        source_file=str(source_t1w),
        in_file=str(dseg),
        space="T1w",
        atlas="test",
        suffix="dseg",
    )
    result = sink.run(cwd=str(_node_dir(tmp_path)))
    assert result.outputs.fixed_hdr == [True]
    written = Path(result.outputs.out_file)
    raw = written.read_bytes()
    assert raw[3] == 0 and raw[4:8] == b"\0\0\0\0" and raw[8] == 4  # no name, time 0, level 1
    out = nb.load(written)
    assert (int(out.header["qform_code"]), int(out.header["sform_code"])) == (2, 2)
    assert out.get_data_dtype() == np.int16
    np.testing.assert_array_equal(np.asarray(out.dataobj), labels)
    np.testing.assert_allclose(out.affine, img.affine, atol=1e-5)


# -- the barrier ------------------------------------------------------------------------------------------
def test_barrier_passes_values_through_once_all_are_set():
    barrier = Barrier(fields=["a", "b"], a="x")
    with pytest.raises(ValueError, match=r"Barrier inputs \['b'\] are not set"):
        barrier.run()
    barrier.inputs.b = [1, 2]
    outputs = barrier.run().outputs
    assert (outputs.a, outputs.b) == ("x", [1, 2])
    with pytest.raises(ValueError, match="'fields' must be a non-empty list"):
        Barrier(fields=[])


def test_barrier_survives_graph_expansion_unlike_identity_nodes():
    """nipype drops IdentityInterface nodes when it expands a graph; the barrier must stay."""
    from copy import deepcopy

    from nipype.pipeline.engine.utils import generate_expanded_graph

    assert not issubclass(Barrier, IdentityInterface)
    wf = pe.Workflow(name="w")
    ident = pe.Node(IdentityInterface(fields=["a"]), name="ident")
    ident.inputs.a = 1
    barrier = pe.Node(Barrier(fields=["a"]), name="barrier")
    wf.connect(ident, "a", barrier, "a")
    names = {n.name for n in generate_expanded_graph(deepcopy(wf._create_flat_graph())).nodes()}
    assert names == {"barrier"}


def test_bids_classes_stay_out_of_the_yaml_registry():
    assert not {"DerivativesDataSink", "Barrier"} & set(interface_registry())


# -- collecting inputs ------------------------------------------------------------------------------------
@pytest.fixture
def dataset(tmp_path) -> Path:
    root = tmp_path / "ds"
    write_synthetic_t1w(root / "sub-01" / "anat" / "sub-01_T1w.nii.gz")
    write_synthetic_t1w(root / "sub-02" / "ses-A" / "anat" / "sub-02_ses-A_T1w.nii.gz")
    write_synthetic_t1w(root / "sub-02" / "ses-B" / "anat" / "sub-02_ses-B_T1w.nii.gz")
    write_synthetic_t1w(root / "sub-03" / "anat" / "sub-03_run-1_T1w.nii.gz")
    write_synthetic_t1w(root / "sub-03" / "anat" / "sub-03_run-2_T1w.nii.gz")
    write_synthetic_t1w(root / "sub-04" / "anat" / "sub-04_T2w.nii.gz")
    (root / "dataset_description.json").write_text('{"Name": "t", "BIDSVersion": "1.8.0"}')
    return root


def test_collect_subjects_per_session_and_problems(dataset):
    subjects = {s.label: s for s in collect_subjects(dataset, T1W_QUERY)}
    assert list(subjects) == ["01", "02", "03", "04"]
    assert subjects["01"].units == {None: {"t1w": str(dataset / "sub-01/anat/sub-01_T1w.nii.gz")}}
    assert subjects["01"].problem is None
    assert list(subjects["02"].units) == ["A", "B"]
    assert subjects["03"].problem == (
        "2 files match input 't1w' (sub-03_run-1_T1w.nii.gz, sub-03_run-2_T1w.nii.gz); smriflow takes one "
        "file per subject and session: narrow the input's 'bids' query (e.g. add run: 1)"
    )
    assert subjects["04"].problem == (
        "no file matches required input 't1w' (datatype=anat, suffix=T1w, extension=[.nii, .nii.gz])"
    )


def test_collect_subjects_labels(dataset):
    assert [s.label for s in collect_subjects(dataset, T1W_QUERY, ["sub-02", "01", "02"])] == ["02", "01"]
    with pytest.raises(BIDSInputError) as info:
        collect_subjects(dataset, T1W_QUERY, ["05", "sub-01"])
    assert str(info.value) == (
        f"participant label '05' not found in BIDS dataset {dataset}. Available: 01, 02, 03, 04"
    )


def test_collect_subjects_rejects_unknown_query_entities(dataset):
    with pytest.raises(BIDSQueryError) as info:
        collect_subjects(dataset, {"t1w": ({"sufix": "T1w"}, True)})
    assert (info.value.input_name, info.value.key, info.value.message) == (
        "t1w",
        "sufix",
        "'sufix' is not a BIDS entity",
    )
    assert "suffix" in info.value.choices


def test_collect_subjects_empty_dataset(tmp_path):
    with pytest.raises(BIDSInputError, match="no subjects"):
        collect_subjects(tmp_path, T1W_QUERY)


# -- optional outputs, several files per input, --longitudinal ---------------------------------------------
def test_barrier_lets_optional_fields_stay_unset():
    barrier = Barrier(fields=["a", "t2w"], optional=["t2w"], a="x")
    outputs = barrier.run().outputs
    assert outputs.a == "x"
    assert not isdefined(outputs.t2w)
    with pytest.raises(ValueError, match=r"inputs \['c'\] are not among 'fields'"):
        Barrier(fields=["a"], optional=["c"])


def test_optional_sink_writes_nothing_without_a_file(tmp_path, source_t1w):
    out = tmp_path / "out"
    sink = DerivativesDataSink(
        base_directory=str(out), source_file=str(source_t1w), desc="preproc", suffix="T2w", optional=True
    )
    result = sink.run(cwd=str(_node_dir(tmp_path)))
    assert not isdefined(result.outputs.out_file)
    assert not out.exists()
    # a required output without its file is still an error
    required = DerivativesDataSink(base_directory=str(out), source_file=str(source_t1w), suffix="T2w")
    with pytest.raises(ValueError, match="in_file"):
        required.run(cwd=str(_node_dir(tmp_path)))


def test_optional_publish_writes_nothing_without_a_file(tmp_path):
    from smriflow.interfaces.publish import PublishOutput

    node = PublishOutput(base_directory=str(tmp_path / "out"), path="report.html", optional=True)
    assert node.run(cwd=str(_node_dir(tmp_path))).outputs.out_file == []
    assert not (tmp_path / "out").exists()


def test_collect_subjects_many_takes_every_run_and_longitudinal_merges_sessions(dataset):
    subjects = {s.label: s for s in collect_subjects(dataset, T1W_QUERY, many=["t1w"])}
    runs = [str(dataset / f"sub-03/anat/sub-03_run-{i}_T1w.nii.gz") for i in (1, 2)]
    assert subjects["03"].problem is None
    assert subjects["03"].units == {None: {"t1w": runs}}
    assert subjects["01"].units == {None: {"t1w": [str(dataset / "sub-01/anat/sub-01_T1w.nii.gz")]}}
    assert list(subjects["02"].units) == ["A", "B"]

    merged = {s.label: s for s in collect_subjects(dataset, T1W_QUERY, many=["t1w"], merge_sessions=True)}
    sessions = [str(dataset / f"sub-02/ses-{s}/anat/sub-02_ses-{s}_T1w.nii.gz") for s in "AB"]
    assert merged["02"].units == {None: {"t1w": sessions}}
    # without many, the sessions' files are too many for one input
    single = {s.label: s for s in collect_subjects(dataset, T1W_QUERY, merge_sessions=True)}
    assert single["02"].problem == (
        "2 files match input 't1w' (sub-02_ses-A_T1w.nii.gz, sub-02_ses-B_T1w.nii.gz); smriflow takes one "
        "file per subject: narrow the input's 'bids' query (e.g. add run: 1)"
    )


def test_shared_source_drops_the_entities_runs_do_not_share():
    from smriflow.interfaces.contrasts import shared_source

    one = "/d/sub-1/ses-A/anat/sub-1_ses-A_run-1_T1w.nii.gz"
    assert shared_source([one]) == one
    runs = [one, "/d/sub-1/ses-A/anat/sub-1_ses-A_run-2_T1w.nii.gz"]
    assert shared_source(runs) == "/d/sub-1/ses-A/anat/sub-1_ses-A_T1w.nii.gz"
    sessions = [one, "/d/sub-1/ses-B/anat/sub-1_ses-B_run-1_T1w.nii.gz"]
    assert shared_source(sessions) == "/d/sub-1/anat/sub-1_run-1_T1w.nii.gz"


def test_combine_runs_passes_one_run_through_and_first_takes_the_first(tmp_path):
    from smriflow.interfaces.contrasts import CombineRuns

    runs = [write_synthetic_t1w(tmp_path / f"sub-01_run-{i}_T1w.nii.gz") for i in (1, 2)]
    single = CombineRuns(in_files=[str(runs[0])]).run(cwd=str(_node_dir(tmp_path))).outputs
    assert single.out_file == str(runs[0])  # untouched: ConformImage checks it as before
    assert single.out_source == str(runs[0])
    first = CombineRuns(in_files=[str(r) for r in runs], method="first").run(cwd=str(_node_dir(tmp_path)))
    assert first.outputs.out_file == str(runs[0])
    assert first.outputs.out_source == str(tmp_path / "sub-01_T1w.nii.gz")
    record = json.loads(Path(first.outputs.out_report).read_text())
    assert record == {
        "method": "first",
        "runs": [{"file": "sub-01_run-1_T1w.nii.gz"}, {"file": "sub-01_run-2_T1w.nii.gz"}],
        "used": "sub-01_run-1_T1w.nii.gz",
    }
