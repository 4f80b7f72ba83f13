"""``anat_preproc`` and its four sub-workflows: graphs and embedding contract, then end-to-end runs.

* Graph tests (no data, no run): the workflow and each sub-workflow build on their own with their ports,
  arguments reach the nodes, nothing inside writes derivatives, and the graph expands.
* End to end (``slow``): ``smriflow run anat_preproc`` on a two-subject BIDS dataset made from the 3 mm copy
  of the shared T1w plus a corrupt subject, run twice into separate folders: every derivative, its
  properties, the failed subject's absence, and bit-identical reruns.
* Full resolution (``slow``): the shared dataset as it is, against FreeSurfer (accuracy floor of issue 3).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import _anat_data
import _docs_data
import nibabel as nb
import numpy as np
import pandas as pd
import pytest

import smriflow
from smriflow.anat.modulation import volume_mm3
from smriflow.config.errors import SpecError
from smriflow.engine.loading import load_spec
from smriflow.engine.registry import packaged_workflows
from smriflow.utils.metrics import dice, fs_tissue_classes

TESTS = Path(__file__).resolve().parents[1]
DOCS = TESTS.parent / "docs"
TEMPLATE = "MNI152NLin2009aSym"
ATLASES = ("desikankilliany", "harvardoxford", "aal")

# -- the embedding contract: the ports of each workflow ------------------------------------------------------
PORTS = {
    "anat_preproc": (
        ["t1w", "t2w", "flair", "lesion_mask"],
        [
            "t1w_preproc",
            "t2w_t1w",
            "t1w2t2w_xfm",
            "flair_t1w",
            "t1w2flair_xfm",
            "lesion_mask",
            "conform_info",
            "t1w_biasfield",
            "t1w_mask",
            "t1w_dseg",
            "t1w_tpms",
            "std_t1w",
            "anat2std_xfm",
            "std2anat_xfm",
            "std_tpms",
            "std_gm_modulated",
            "std_logjacobian",
            "spaces_t1w",  # the further --output-spaces (one registration each)
            "spaces_tpms",
            "anat2spaces_xfm",
            "spaces2anat_xfm",
            "atlas_dseg",
            "atlas_volumes",
            "summary_volumes",
            "thickness",
            "thickness_region",
            "thickness_dk",
            "thickness_destrieux",
            "iqms",
            "report",
        ],
    ),
    "brain_extraction": (["t1w"], ["t1w_mask", "t1w_brain", "anat2tpl_affine", "record"]),
    "tissue_segmentation": (
        ["t1w", "t1w_mask", "anat2tpl_affine", "t2w", "flair"],
        ["t1w_dseg", "t1w_tpms", "record"],
    ),
    "spatial_normalization": (
        ["t1w_brain", "t1w_mask", "anat2tpl_affine", "t1w_tpms"],
        ["std_t1w", "anat2std_xfm", "std2anat_xfm", "std_logjacobian", "std_tpms", "std_gm_modulated"],
    ),
    "parcellation": (
        ["t1w", "t1w_mask", "t1w_tpms", "std2anat_xfm"],
        ["atlas_dseg", "atlas_volumes", "summary", "coordinates"],
    ),
    "cortical_thickness": (
        ["t1w", "t1w_tpms", "std2anat_xfm", "coordinates", "source_file"],
        ["thickness", "region", "dk_tables", "destrieux_tables", "record"],
    ),
    "qc": (
        [
            "t1w",
            "t1w_preproc",
            "t1w_biasfield",
            "t1w_mask",
            "t1w_dseg",
            "t1w_tpms",
            "std_t1w",
            "std_tpms",
            "thickness_record",
        ],
        ["iqms"],
    ),
}
SUB_WORKFLOWS = [name for name in PORTS if name != "anat_preproc"]


def fields(wf, node: str) -> list[str]:
    return list(wf.get_node(node).inputs.copyable_trait_names())


def is_sink(node) -> bool:
    """A node that writes files out of the work directory (any kind of DataSink)."""
    return any("DataSink" in cls.__name__ for cls in type(node.interface).__mro__)


def edges(wf) -> set[tuple[str, str, str, str]]:
    """Every connection of a workflow, flattened: (source, output, destination, input)."""
    graph = wf._create_flat_graph()
    return {
        (u.fullname, src, v.fullname, dst)
        for u, v, data in graph.edges(data=True)
        for src, dst in data["connect"]
    }


# -- graph tests --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(PORTS))
def test_each_workflow_builds_alone_with_its_ports(name):
    wf = smriflow.load_workflow(name)
    inputs, outputs = PORTS[name]
    assert sorted(fields(wf, "inputnode")) == sorted(inputs)
    assert sorted(fields(wf, "outputnode")) == sorted(outputs)
    assert wf.name == f"{name}_wf" and wf.base_dir is None
    # the factory is the same graph as load_workflow (the YAML is the only place the topology lives)
    factory = getattr(smriflow, f"init_{name}_wf")
    assert edges(factory()) == edges(wf)
    for port in inputs + outputs:
        assert port in factory.__doc__


@pytest.mark.parametrize("name", list(PORTS))
def test_no_node_writes_derivatives(name):
    wf = smriflow.load_workflow(name)
    nodes = wf._get_all_nodes()
    assert nodes and not [node.fullname for node in nodes if is_sink(node)]


@pytest.mark.parametrize("profile", ["fast", "precise"])
def test_anat_preproc_expands_and_embeds_each_sub_workflow_by_its_ports(profile):
    from nipype.pipeline.engine.utils import generate_expanded_graph

    wf = smriflow.init_anat_preproc_wf(profile=profile, name="anat_wf")
    assert wf.name == "anat_wf"
    expanded = generate_expanded_graph(wf._create_flat_graph())
    names = {node.fullname.split(".", 1)[1] for node in expanded.nodes()}
    assert {"conform", "n4", "brain_extraction_wf.brain", "spatial_normalization_wf.register"} <= names
    fed = {(dst, port) for _, _, dst, port in edges(wf)}
    for name in SUB_WORKFLOWS:
        standalone = smriflow.load_workflow(name)
        for node in ("inputnode", "outputnode"):  # embedded as it is standalone
            assert fields(wf, f"{name}_wf.{node}") == fields(standalone, node)
        for port in PORTS[name][0]:  # and every input port is fed
            assert (f"anat_wf.{name}_wf.inputnode", port) in fed, (name, port)


def test_arguments_reach_the_nodes():
    wf = smriflow.load_workflow(
        "anat_preproc", profile="precise", atlases=["aal", "harvardoxford"], omp_nthreads=2, seed=7
    )
    assert wf.get_node("n4").inputs.profile == "precise"
    register = wf.get_node("spatial_normalization_wf.register")
    assert (register.inputs.profile, register.inputs.template) == ("precise", TEMPLATE)
    assert (register.inputs.seed, register.inputs.num_threads, register.n_procs) == (7, 2, 2)
    brain = wf.get_node("brain_extraction_wf.brain")
    assert (brain.inputs.template, brain.inputs.seed, brain.n_procs) == (TEMPLATE, 7, 2)
    assert brain.inputs.method == "hybrid"  # the best worst case of bench/brain_extraction.py
    deepbet = smriflow.load_workflow("anat_preproc", brain_method="deepbet")
    assert deepbet.get_node("brain_extraction_wf.brain").inputs.method == "deepbet"
    for node in ("parcellation_wf.warp_atlas", "parcellation_wf.volumes"):
        assert wf.get_node(node).inputs.atlas == ["aal", "harvardoxford"]
    # one pass of the transform covers the atlases of each sub-workflow, and each warp reads it
    assert wf.get_node("parcellation_wf.atlas_coords").inputs.atlases == ["aal", "harvardoxford"]
    coords = wf.get_node("cortical_thickness_wf.atlas_coords")
    assert coords.inputs.atlases == ["desikan_killiany", "destrieux"]
    for sub, node in (
        ("parcellation_wf", "warp_atlas"),
        ("cortical_thickness_wf", "warp_dk"),
        ("cortical_thickness_wf", "warp_destrieux"),
    ):
        graph = wf.get_node(sub)._graph
        links = graph.get_edge_data(wf.get_node(f"{sub}.atlas_coords"), wf.get_node(f"{sub}.{node}"))
        assert links and ("out_coords", "coordinates") in links["connect"], node
    # ... and the thickness reads the parcellation's pass, which covers its two atlases too
    parcellation = wf.get_node("parcellation_wf.atlas_coords")
    assert parcellation.inputs.also_cover == ["desikan_killiany", "destrieux"]
    graph = wf._create_flat_graph()
    feeding = {
        (v.fullname, dst): (u, src) for u, v, data in graph.edges(data=True) for src, dst in data["connect"]
    }
    (node,) = [n for n in graph.nodes if n.fullname.endswith(".cortical_thickness_wf.atlas_coords")]
    port = "in_coords"
    while True:  # back through the sub-workflows' inputnode and outputnode
        node, port = feeding[(node.fullname, port)]
        if not node.fullname.endswith(("inputnode", "outputnode")):
            break
    assert (node.fullname.split(".", 1)[1], port) == ("parcellation_wf.atlas_coords", "out_coords")
    default = smriflow.load_workflow("anat_preproc")
    assert default.get_node("n4").inputs.profile == "fast"
    assert default.get_node("parcellation_wf.warp_atlas").inputs.atlas == list(ATLASES)
    assert default.get_node("cortical_thickness_wf.thickness").inputs.enabled is True
    off = smriflow.load_workflow("anat_preproc", thickness=False)
    assert off.get_node("cortical_thickness_wf.thickness").inputs.enabled is False
    for node in ("atlas_coords", "warp_dk", "warp_destrieux"):  # its atlas warps are switched off with it
        assert default.get_node(f"cortical_thickness_wf.{node}").inputs.enabled is True
        assert off.get_node(f"cortical_thickness_wf.{node}").inputs.enabled is False
    for node, atlas in (("warp_dk", "desikan_killiany"), ("warp_destrieux", "destrieux")):
        assert wf.get_node(f"cortical_thickness_wf.{node}").inputs.atlas == atlas  # `atlases` lacks them


def test_report_figures_are_drawn_by_stage_before_the_report():
    """The report's figures that need neither the thickness nor QC are drawn by ReportFigures nodes as their
    inputs exist: the early ones beside the registration, the late ones (registration flicker, atlases)
    beside the thickness; the report reads both files."""
    import networkx as nx
    from nipype.pipeline.engine.utils import generate_expanded_graph

    wf = smriflow.load_workflow("anat_preproc")
    assert wf.get_node("report_figures").inputs.stage == "early"
    late = wf.get_node("report_late_figures")
    assert (late.inputs.stage, late.inputs.template) == ("late", TEMPLATE)
    connections = edges(wf)
    for node, port in (("report_figures", "figures"), ("report_late_figures", "late_figures")):
        assert (f"anat_preproc_wf.{node}", "out_figures", "anat_preproc_wf.report", port) in connections
    graph = generate_expanded_graph(wf._create_flat_graph())  # as the scheduler runs it
    name = {node: node.fullname.split(".", 1)[1] for node in graph.nodes}
    ancestors = {
        target: {name[a] for a in nx.ancestors(graph, node)}
        for node, target in name.items()
        if target in ("report_figures", "report_late_figures")
    }
    assert "tissue_segmentation_wf.segment" in ancestors["report_figures"]
    assert "spatial_normalization_wf.register" not in ancestors["report_figures"]
    assert {"spatial_normalization_wf.register", "parcellation_wf.warp_atlas"} <= ancestors[
        "report_late_figures"
    ]
    waits = {
        a for a in ancestors["report_late_figures"] if a.startswith(("cortical_thickness_wf.", "qc_wf."))
    }
    assert not waits and "parcellation_wf.volumes" not in ancestors["report_late_figures"]


def test_further_spaces_are_one_registration_each_and_absent_without_them(templateflow_home):
    """``spaces``: a MapNode registering the brain to each further template (from its own affine: brain
    extraction's is to ``template``), and one warping the tissue maps with each; none without spaces."""
    plain = smriflow.load_workflow("anat_preproc")
    wf = smriflow.load_workflow("anat_preproc", spaces=["MNI152NLin6Asym"], spaces_res=[None])
    added = {n.fullname for n in wf._get_all_nodes()} - {n.fullname for n in plain._get_all_nodes()}
    assert added == {"anat_preproc_wf.register_spaces", "anat_preproc_wf.warp_tpms_spaces"}
    register = wf.get_node("register_spaces")
    assert register.iterfield == ["template"] and register.inputs.template == ["MNI152NLin6Asym"]
    assert register.inputs.profile == "fast"
    connections = edges(wf)
    assert not [c for c in connections if c[2] == "anat_preproc_wf.register_spaces" and c[3] == "init_affine"]
    for port in ("out_file", "out_xfm", "out_inv_xfm"):
        assert any(c[:2] == ("anat_preproc_wf.register_spaces", port) for c in connections), port
    assert (
        "anat_preproc_wf.register_spaces",
        "out_xfm",
        "anat_preproc_wf.warp_tpms_spaces",
        "transforms",
    ) in (connections)
    # the first space's registration is untouched
    assert {c for c in edges(plain)} <= connections


def test_sub_workflow_arguments():
    register = smriflow.load_workflow("spatial_normalization", profile="testing").get_node("register")
    assert register.inputs.profile == "testing"
    assert smriflow.load_workflow("brain_extraction", use_syn=True).get_node("brain").inputs.use_syn
    segment = smriflow.load_workflow("tissue_segmentation", deep_gm_prior=False).get_node("segment")
    assert segment.inputs.deep_gm_prior is False


def test_unknown_profile_is_refused():
    with pytest.raises(SpecError, match="profile"):
        smriflow.load_workflow("anat_preproc", profile="testing")  # a sub-workflow's preset, not a profile


def test_embedding_example_in_docs_builds():
    """docs/anat_preproc.md's Python block builds (it does not run) a host workflow as written."""
    text = (DOCS / "anat_preproc.md").read_text()
    block = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    namespace: dict = {"T1W": "sub-01_desc-preproc_T1w.nii.gz"}
    exec(compile(block, "docs/anat_preproc.md", "exec"), namespace)
    host = namespace["host"]
    assert not [node.fullname for node in host._get_all_nodes() if is_sink(node)]
    connections = edges(host)
    for port in ("t1w_mask", "anat2tpl_affine"):
        assert (
            "host_wf.brain_extraction_wf.outputnode",
            port,
            "host_wf.tissue_segmentation_wf.inputnode",
            port,
        ) in connections


# -- end to end ---------------------------------------------------------------------------------------------


def expected_files(label: str) -> list[str]:
    """Every derivative of one subject (images, tables, transforms and their JSON sidecars)."""
    space = f"space-{TEMPLATE}"
    stems = {
        "desc-preproc_T1w": ".nii.gz",
        "desc-biasfield_T1w": ".nii.gz",
        "desc-brain_mask": ".nii.gz",
        "dseg": ".nii.gz",
        "label-GM_probseg": ".nii.gz",
        "label-WM_probseg": ".nii.gz",
        "label-CSF_probseg": ".nii.gz",
        f"{space}_desc-preproc_T1w": ".nii.gz",
        f"{space}_label-GM_probseg": ".nii.gz",
        f"{space}_label-WM_probseg": ".nii.gz",
        f"{space}_label-CSF_probseg": ".nii.gz",
        f"{space}_label-GM_desc-modulated_probseg": ".nii.gz",
        f"{space}_desc-logjacobian_jacobian": ".nii.gz",
        f"from-T1w_to-{TEMPLATE}_mode-image_xfm": ".h5",
        f"from-{TEMPLATE}_to-T1w_mode-image_xfm": ".h5",
        "desc-summary_volumes": ".tsv",
        **{f"space-T1w_atlas-{atlas}_dseg": ".nii.gz" for atlas in ATLASES},
        **{f"atlas-{atlas}_volumes": ".tsv" for atlas in ATLASES},
        "thickness": ".nii.gz",  # thickness=true by default
        "space-T1w_atlas-desikankilliany_desc-cortex_dseg": ".nii.gz",
        **{f"hemi-{h}_atlas-{a}_thickness": ".tsv" for h in "LR" for a in ("desikankilliany", "destrieux")},
    }
    names = [f"sub-{label}_{stem}{ext}" for stem, ext in stems.items()]
    names += [f"sub-{label}_{stem}.json" for stem in stems]  # the sidecars
    names += [f"sub-{label}_desc-iqms_T1w.json"]  # a JSON derivative has no sidecar
    return sorted(f"sub-{label}/anat/{name}" for name in names)


def smriflow_run(bids: Path, out: Path, work: Path) -> subprocess.CompletedProcess:
    """``smriflow run anat_preproc`` as a user types it, in a fresh process."""
    cmd = [sys.executable, "-c", "import sys; from smriflow.cli.main import main; sys.exit(main())"]
    cmd += ["run", "anat_preproc", "--bids-dir", str(bids), "--output-dir", str(out), "--work-dir", str(work)]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)


@pytest.fixture(scope="module")
def small_runs(shared_data, tmp_path_factory):
    """Two runs of the same command on sub-01 (3 mm shared T1w) + sub-02 (not an image)."""
    root = tmp_path_factory.mktemp("anat_preproc_e2e")
    anat = root / "bids" / "sub-01" / "anat"
    anat.mkdir(parents=True)
    Path(_anat_data.t1w_3mm(shared_data, anat)).rename(anat / "sub-01_T1w.nii.gz")
    corrupt = root / "bids" / "sub-02" / "anat"
    corrupt.mkdir(parents=True)
    (corrupt / "sub-02_T1w.nii.gz").write_bytes(b"not an image")
    (root / "bids" / "dataset_description.json").write_text('{"Name": "e2e", "BIDSVersion": "1.8.0"}')
    outputs = [root / "out_a", root / "out_b"]
    results = [smriflow_run(root / "bids", out, root / f"work_{out.name}") for out in outputs]
    return SimpleNamespace(root=root, outputs=outputs, results=results)


def files_of(output: Path) -> list[str]:
    return sorted(p.relative_to(output).as_posix() for p in output.rglob("*") if p.is_file())


def load(output: Path, name: str, label: str = "01") -> np.ndarray:
    return np.asanyarray(nb.load(output / f"sub-{label}" / "anat" / f"sub-{label}_{name}").dataobj)


def on_grid(img: nb.spatialimages.SpatialImage, ref: nb.spatialimages.SpatialImage) -> np.ndarray:
    """``img``'s data on ``ref``'s grid, which differs from its own by axis flips/permutations only."""
    from nibabel.orientations import apply_orientation, io_orientation, ornt_transform

    transform = ornt_transform(io_orientation(img.affine), io_orientation(ref.affine))
    data = apply_orientation(np.asanyarray(img.dataobj), transform)
    affine = img.affine @ nb.orientations.inv_ornt_aff(transform, img.shape)
    assert data.shape == ref.shape[:3] and np.allclose(affine, ref.affine, atol=1e-3)
    return data


def end_to_end(test):
    """Marks of the tests that run ``smriflow run``: slow, antspyx, shared data, one xdist worker."""
    for mark in (
        pytest.mark.slow,
        pytest.mark.ants,
        pytest.mark.shared,
        pytest.mark.xdist_group("anat_preproc"),
    ):
        test = mark(test)
    return test


@end_to_end
def test_one_subject_fails_the_other_finishes(small_runs):
    output, done = small_runs.outputs[0], small_runs.results[0]
    assert done.returncode == 1, done.stdout + done.stderr
    assert re.search(r"sub-01\s+done\s+(\d+)/\1\s", done.stdout), done.stdout
    # one node done: t1w_runs passes the single run through, conform refuses it
    assert re.search(r"sub-02\s+failed\s+1/\d+\s+sub_02_wf\.anat_preproc_wf\.conform", done.stdout)
    assert "sub-02: node sub_02_wf.anat_preproc_wf.conform failed: ValueError:" in done.stdout
    assert not (output / "sub-02").exists()  # a failed subject leaves no derivative at all
    written = [name for name in files_of(output) if not name.startswith("logs/")]
    assert written == sorted(["dataset_description.json", "sub-01.html"] + expected_files("01"))


@end_to_end
def test_written_files_are_those_the_readme_lists(small_runs):
    """README's derivatives table names the files of a real run: every required output's, nothing else (the
    subject has no T2w, FLAIR or lesion mask, so their optional outputs are absent; thickness is on by
    default, so its optional outputs are there)."""
    output = small_runs.outputs[0]
    spec = load_spec(packaged_workflows()["anat_preproc"]).spec
    lists = {name: arg.default for name, arg in spec.args.items() if isinstance(arg.default, list)}
    expected = {"sub-01.html"}  # the report (a `path: ./` output): the workflow names it
    for port, name in _docs_data.documented_files().items():
        wanted = spec.outputs[port].required or port.startswith("thickness")
        if wanted and spec.outputs[port].bids is not None:
            expected |= _docs_data.expand(name, "01", lists)
    written = _docs_data.data_files(output) - {"dataset_description.json"}
    assert {name for name in written if not name.startswith("logs/")} == expected


@end_to_end
def test_sidecars_record_the_provenance(small_runs):
    output = small_runs.outputs[0]
    for sidecar in (output / "sub-01" / "anat").glob("*.json"):
        if sidecar.name.endswith("_desc-iqms_T1w.json"):
            continue  # a JSON derivative (IQM name -> float), not a sidecar
        record = json.loads(sidecar.read_text())
        generated = record["GeneratedBy"][0]
        assert generated["Name"] == "smriflow" and generated["Workflow"] == "anat_preproc_wf"
        assert generated["Args"]["profile"] == "fast" and generated["Args"]["template"] == TEMPLATE
        assert record["Sources"] == ["bids:raw:sub-01/anat/sub-01_T1w.nii.gz"]
    # what input validation did joins the preprocessed T1w's sidecar (outputs.meta)
    record = json.loads((output / "sub-01" / "anat" / "sub-01_desc-preproc_T1w.json").read_text())
    assert record["reoriented_from"] == "LIA" and record["zooms"] == [3.0, 3.0, 3.0]


@end_to_end
def test_native_outputs(small_runs):
    root, output = small_runs.root, small_runs.outputs[0]
    anat = output / "sub-01" / "anat"
    preproc = nb.load(anat / "sub-01_desc-preproc_T1w.nii.gz")
    assert nb.aff2axcodes(preproc.affine) == ("R", "A", "S")
    # the input's own voxels (LIA 3 mm), reoriented, never resampled; N4 divided them by the field
    source = on_grid(nb.load(root / "bids" / "sub-01" / "anat" / "sub-01_T1w.nii.gz"), preproc)
    field = load(output, "desc-biasfield_T1w.nii.gz")
    np.testing.assert_allclose(np.asanyarray(preproc.dataobj) * field, source, rtol=1e-4, atol=1e-3)
    native = ["desc-biasfield_T1w", "desc-brain_mask", "dseg", "label-GM_probseg"]
    for name in native + [f"space-T1w_atlas-{atlas}_dseg" for atlas in ATLASES]:
        img = nb.load(anat / f"sub-01_{name}.nii.gz")
        assert img.shape == preproc.shape and np.allclose(img.affine, preproc.affine), name

    mask = load(output, "desc-brain_mask.nii.gz") > 0
    assert 0.05 < mask.mean() < 0.5
    assert not (mask[[0, -1]].any() or mask[:, [0, -1]].any() or mask[:, :, [0, -1]].any())  # inside FOV
    tpms = np.stack([load(output, f"label-{t}_probseg.nii.gz") for t in ("GM", "WM", "CSF")])
    assert tpms.min() >= 0 and tpms.max() <= 1
    np.testing.assert_allclose(tpms.sum(0)[mask], 1.0, atol=1e-5)
    assert not tpms[:, ~mask].any()
    dseg = load(output, "dseg.nii.gz")
    assert set(np.unique(dseg)) <= {0, 1, 2, 3} and set(np.unique(dseg[mask])) >= {1, 2, 3}
    assert not dseg[~mask].any()
    assert (dseg[mask] == tpms[:, mask].argmax(0) + 1).mean() > 0.999  # dseg is the probsegs' argmax
    assert np.isfinite(field).all() and field[mask].min() > 0


@end_to_end
def test_volume_tables(small_runs):
    output = small_runs.outputs[0]
    anat = output / "sub-01" / "anat"
    voxel = 27.0  # mm³ at 3 mm
    mask = load(output, "desc-brain_mask.nii.gz") > 0
    gm = load(output, "label-GM_probseg.nii.gz")
    for atlas in ATLASES:
        table = pd.read_csv(anat / f"sub-01_atlas-{atlas}_volumes.tsv", sep="\t")
        assert list(table.columns) == ["label", "name", "voxels", "volume_mm3", "gm_volume_mm3"]
        assert table["label"].is_unique and (table["label"] > 0).all()
        np.testing.assert_allclose(table["volume_mm3"], table["voxels"] * voxel, rtol=1e-6)
        assert (table["gm_volume_mm3"] <= table["volume_mm3"] + 1e-3).all()
        labels = load(output, f"space-T1w_atlas-{atlas}_dseg.nii.gz")
        assert set(np.unique(labels)) - {0} <= set(table["label"])
        assert table["voxels"].sum() == np.count_nonzero(labels)
        np.testing.assert_allclose(table["gm_volume_mm3"].sum(), gm[labels > 0].sum() * voxel, rtol=1e-4)
    summary = pd.read_csv(anat / "sub-01_desc-summary_volumes.tsv", sep="\t")
    assert list(summary.columns) == [
        "gm_volume_mm3", "wm_volume_mm3", "csf_volume_mm3", "brain_volume_mm3", "tiv_mm3", "mask_volume_mm3",
    ]  # fmt: skip
    row = summary.iloc[0]
    assert row["mask_volume_mm3"] == pytest.approx(mask.sum() * voxel)
    assert row["gm_volume_mm3"] == pytest.approx(gm.sum() * voxel, rel=1e-5)
    assert row["brain_volume_mm3"] == pytest.approx(row["gm_volume_mm3"] + row["wm_volume_mm3"], rel=1e-6)
    assert row["tiv_mm3"] == pytest.approx(row["brain_volume_mm3"] + row["csf_volume_mm3"], rel=1e-6)
    assert 1.1e6 < row["tiv_mm3"] < 1.7e6  # an adult head, in mm³ (not voxels)


@end_to_end
def test_template_space_outputs(small_runs):
    output = small_runs.outputs[0]
    anat = output / "sub-01" / "anat"
    space = f"sub-01_space-{TEMPLATE}"
    grid = nb.load(anat / f"{space}_desc-preproc_T1w.nii.gz")
    assert grid.header.get_zooms()[:3] == (2.0, 2.0, 2.0)  # fast profile: the 2 mm template grid
    names = [f"label-{tissue}_probseg" for tissue in ("GM", "WM", "CSF")]
    for name in names + ["label-GM_desc-modulated_probseg", "desc-logjacobian_jacobian"]:
        img = nb.load(anat / f"{space}_{name}.nii.gz")
        assert img.shape == grid.shape and np.allclose(img.affine, grid.affine), name
    logjac = np.asanyarray(nb.load(anat / f"{space}_desc-logjacobian_jacobian.nii.gz").dataobj)
    assert np.isfinite(logjac).all()
    # modulated GM integrates to the native GM volume (within a few % at 3 mm; 1 % at 1 mm)
    native = volume_mm3(anat / "sub-01_label-GM_probseg.nii.gz")
    modulated = volume_mm3(anat / f"{space}_label-GM_desc-modulated_probseg.nii.gz")
    assert modulated / native == pytest.approx(1.0, abs=0.03)
    for name in (f"from-T1w_to-{TEMPLATE}", f"from-{TEMPLATE}_to-T1w"):
        path = anat / f"sub-01_{name}_mode-image_xfm.h5"
        assert path.read_bytes()[:8] == b"\x89HDF\r\n\x1a\n"


@end_to_end
def test_rerun_is_bit_identical(small_runs):
    first, second = small_runs.outputs
    assert [done.returncode for done in small_runs.results] == [1, 1]
    names = [name for name in files_of(first) if not name.startswith("logs/")]
    assert names == [name for name in files_of(second) if not name.startswith("logs/")]
    differ = [name for name in names if (first / name).read_bytes() != (second / name).read_bytes()]
    assert differ == ["dataset_description.json"]  # it records each run's --work-dir, and only that differs
    descriptions = []
    for output in (first, second):
        description = json.loads((output / "dataset_description.json").read_text())
        assert (
            description["GeneratedBy"][0]["ExecutionConfig"].pop("work_dir").endswith(f"work_{output.name}")
        )
        descriptions.append(description)
    assert descriptions[0] == descriptions[1]


# -- full resolution ----------------------------------------------------------------------------------------
@end_to_end
def test_full_resolution_accuracy_floor(shared_data, tmp_path):
    done = smriflow_run(shared_data / "bids", tmp_path / "out", tmp_path / "work")
    assert done.returncode == 0, done.stdout + done.stderr
    anat = tmp_path / "out" / "sub-0002" / "anat"
    ref = nb.load(anat / "sub-0002_desc-preproc_T1w.nii.gz")
    freesurfer = shared_data / _anat_data.FREESURFER
    brainmask = on_grid(nb.load(freesurfer / "brainmask.mgz"), ref) > 0
    classes = fs_tissue_classes(on_grid(nb.load(freesurfer / "aseg.mgz"), ref))
    mask = np.asanyarray(nb.load(anat / "sub-0002_desc-brain_mask.nii.gz").dataobj) > 0
    dseg = np.asanyarray(nb.load(anat / "sub-0002_dseg.nii.gz").dataobj)
    figures = {
        "brain": dice(mask, brainmask),
        "GM": dice(dseg == 1, classes["GM"]),
        "WM": dice(dseg == 2, classes["WM"]),
    }
    # issue 3's floor; measured ~0.983 / 0.90 / 0.935 (targets 0.98 / 0.88 / 0.92, see docs/anat_preproc.md)
    assert figures["brain"] >= 0.96 and figures["GM"] >= 0.85 and figures["WM"] >= 0.90, figures
    modulated = anat / f"sub-0002_space-{TEMPLATE}_label-GM_desc-modulated_probseg.nii.gz"
    ratio = volume_mm3(modulated) / volume_mm3(anat / "sub-0002_label-GM_probseg.nii.gz")
    assert ratio == pytest.approx(1.0, abs=0.01)


@end_to_end
def test_thickness_derivatives(small_runs, tmp_path):
    """Thickness in a plausible range in the cortex, zero outside; the tables through `stats roi-table`."""
    output = small_runs.outputs[0]
    anat = output / "sub-01" / "anat"
    thickness = load(output, "thickness.nii.gz")
    region = load(output, "space-T1w_atlas-desikankilliany_desc-cortex_dseg.nii.gz")
    assert np.array_equal(thickness > 0, region > 0) and (region > 0).sum() > 1000
    inside = thickness[region > 0]
    assert inside.max() <= 5.0 + 1e-5 and 1.5 < np.median(inside) < 4.5  # 3 mm voxels: coarse but cortical
    assert set(np.unique(region)) - {0} <= set(range(1000, 1036)) | set(range(2000, 2036))
    tables = sorted(anat.glob("sub-01_hemi-*_atlas-*_thickness.tsv"))
    assert [t.name.split("_", 1)[1] for t in tables] == [
        "hemi-L_atlas-desikankilliany_thickness.tsv", "hemi-L_atlas-destrieux_thickness.tsv",
        "hemi-R_atlas-desikankilliany_thickness.tsv", "hemi-R_atlas-destrieux_thickness.tsv",
    ]  # fmt: skip
    lh = pd.read_csv(tables[0], sep="\t")
    assert lh.columns[0] == "lh.aparc.thickness" and lh.iloc[0, 0] == "sub-01"
    from smriflow.anat.thickness import area_weights

    zooms = nb.load(anat / "sub-01_thickness.nii.gz").header.get_zooms()[:3]
    area = area_weights(thickness, zooms)  # surface-weighted, as FreeSurfer
    left = (region > 0) & (region < 2000)
    expected = (thickness * area)[left].sum() / area[left].sum()
    assert lh["lh_MeanThickness_thickness"].iloc[0] == pytest.approx(expected, rel=1e-5)
    assert expected < inside[region[region > 0] < 2000].mean()  # a plain voxel mean counts thick cortex more
    wide = tmp_path / "wide.tsv"
    from smriflow.cli.main import main

    assert main(["stats", "roi-table", "--table", *map(str, tables), "-o", str(wide)]) == 0
    table = pd.read_csv(wide, sep="\t")
    assert table["participant_id"].tolist() == ["sub-01"]
    assert {"lh_superiorfrontal_thickness", "rh_G&S_frontomargin_thickness"} <= set(table.columns)
    assert table["lh_MeanThickness_thickness"].iloc[0] == pytest.approx(
        lh["lh_MeanThickness_thickness"].iloc[0]
    )
    iqms = json.loads((anat / "sub-01_desc-iqms_T1w.json").read_text())
    assert iqms["thickness_mean_lh"] == pytest.approx(lh["lh_MeanThickness_thickness"].iloc[0])
    assert 0 <= iqms["thickness_frac_above"] < 0.5 and 0 <= iqms["thickness_frac_below"] < 0.5
    assert 'id="thickness"' in (output / "sub-01.html").read_text()
