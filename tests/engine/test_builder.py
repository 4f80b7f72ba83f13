"""The builder: YAML → nipype graph, arguments, run-level settings, factories, embedding."""

from __future__ import annotations

from pathlib import Path

import networkx as nx
import pytest
from nipype.interfaces.base import SimpleInterface, TraitedSpec, traits
from nipype.pipeline import engine as pe

import smriflow
from smriflow.config.errors import SpecError
from smriflow.engine.registry import packaged_workflows
from smriflow.interfaces.base import AntsPyInputSpec


def _edges(wf) -> set[tuple[str, str, tuple]]:
    graph = wf._create_flat_graph()
    return {
        (u.fullname, v.fullname, tuple(sorted(map(tuple, d["connect"]))))
        for u, v, d in graph.edges(data=True)
    }


def test_example_has_public_surface_and_nested_workflow():
    wf = smriflow.load_workflow("example")
    assert wf.name == "example_wf"
    assert wf.get_node("inputnode").inputs.copyable_trait_names() == ["t1w"]
    assert sorted(wf.get_node("outputnode").outputs.copyable_trait_names()) == [
        "t1w_mask",
        "t1w_masked",
        "t1w_smooth",
        "t1w_stats",
    ]
    # workflow nodes get "_wf" appended; the nested YAML keeps its own inputnode/outputnode
    assert "masking_wf.threshold" in wf.list_node_names()
    assert nx.is_directed_acyclic_graph(wf._create_flat_graph())
    assert "smoothed with a Gaussian kernel" in wf.__desc__


def test_args_reach_params_and_nested_workflows():
    wf = smriflow.load_workflow("example", fwhm=6, percentile=75.5, name="custom_wf")
    assert wf.name == "custom_wf"
    assert wf.get_node("smooth").inputs.fwhm == 6.0
    assert wf.get_node("masking_wf").get_node("threshold").inputs.percentile == 75.5


def test_unknown_and_ill_typed_args_are_reported_together():
    with pytest.raises(SpecError) as info:
        smriflow.load_workflow("example", fwmh=6, percentile="high")
    lines = str(info.value).splitlines()
    assert len(lines) == 2
    assert lines[0].endswith(
        "example.yml: args.fwmh: unknown argument 'fwmh' for workflow 'example_wf'. "
        "Did you mean 'fwhm'? Available: fwhm, omp_nthreads, percentile, seed"
    )
    assert lines[1].endswith(
        "example.yml: args.percentile: 'percentile' must be of type float. 'high' was provided."
    )


def test_values_are_checked_where_they_land():
    """A value of the right type for its argument but not for the input it reaches, here or nested."""
    with pytest.raises(SpecError) as info:
        smriflow.load_workflow("example", fwhm=99, percentile=100)
    path = packaged_workflows()["example"]
    assert str(info.value).splitlines() == [
        f"{path}: args.fwhm: 'fwhm' of node smooth (SmoothImage) must be 0.0 <= a floating point number "
        "<= 50.0. 99.0 was provided.",
        f"{path}: args.percentile: 'percentile' of node masking.threshold (ThresholdMask) must be 0.0 <= a "
        "floating point number <= 99.999. 100.0 was provided.",
    ]


def test_a_value_is_reported_once_where_it_first_lands():
    with pytest.raises(SpecError) as info:
        smriflow.load_workflow("anat_preproc", atlases=["aal", "nosuch"])
    (line,) = str(info.value).splitlines()
    assert line.startswith(
        f"{packaged_workflows()['anat_preproc']}: args.atlases: 'atlas' of node parcellation.warp_atlas "
        "(WarpAtlas) must be an installed atlas: one of {'aal', "
    )
    assert line.endswith("} or its BIDS label. 'nosuch' was provided.")


def test_nested_choices_are_checked(tmp_path):
    """The outer argument accepts any str; the nested workflow's argument has choices."""
    outer = tmp_path / "outer.yml"
    outer.write_text(
        "smriflow: 1\nname: outer_wf\ndoc: d\nargs: {how: {type: str, default: ants}}\ninputs: [t1w]\n"
        "outputs: {mask: brain.t1w_mask}\nnodes:\n  brain:\n    workflow: brain_extraction\n"
        "    args: {method: $how}\n    in: {t1w: inputs.t1w}\n"
    )
    with pytest.raises(SpecError) as info:
        smriflow.load_workflow(outer, how="bet")
    assert str(info.value) == (
        f"{outer}: args.how: 'method' of workflow brain_extraction (node brain) must be one of "
        "{'ants', 'deepbet', 'hybrid'}. 'bet' was provided."
    )


def test_unknown_workflow_name():
    with pytest.raises(SpecError) as info:
        smriflow.load_workflow("exampel")
    assert str(info.value) == "exampel: unknown workflow 'exampel'. Did you mean 'example'?"


def _graph(wf) -> tuple[set, dict[str, dict]]:
    """The edges of ``wf`` and the input values of each of its nodes, by full name."""
    graph = wf._create_flat_graph()
    return _edges(wf), {node.fullname: node.inputs.get() for node in graph.nodes}


def test_packaged_factory_builds_the_yaml_file_with_its_arguments():
    from smriflow import init_example_wf
    from smriflow.engine.registry import packaged_workflows

    assert init_example_wf.__name__ == "init_example_wf"
    assert "fwhm : float, default 4.0" in init_example_wf.__doc__
    path = str(packaged_workflows()["example"])
    built = _graph(init_example_wf(fwhm=2.0, percentile=75.0))
    assert built == _graph(smriflow.load_workflow(path, fwhm=2.0, percentile=75.0))
    assert built[1]["example_wf.smooth"]["fwhm"] == 2.0
    assert built[1]["example_wf.masking_wf.threshold"]["percentile"] == 75.0
    # the arguments reach the graph: other values (here the defaults) build another one
    assert built != _graph(smriflow.load_workflow(path))
    assert _graph(init_example_wf()) == _graph(smriflow.load_workflow(path))
    with pytest.raises(AttributeError):
        smriflow.init_no_such_thing_wf  # noqa: B018


class _ProbeOutputSpec(TraitedSpec):
    out = traits.Int(desc="unused")


class RunSettingsProbe(SimpleInterface):
    """Test-only interface with the run-level traits (num_threads, seed)."""

    input_spec = AntsPyInputSpec
    output_spec = _ProbeOutputSpec


def _probe_yaml(tmp_path: Path, node_extra: str = "") -> Path:
    path = tmp_path / "probe.yml"
    path.write_text(
        "smriflow: 1\nname: probe_wf\ndoc: probe\ninputs: [unused]\noutputs: {out: probe.out}\nnodes:\n"
        f"  probe:\n    interface: {__name__}.RunSettingsProbe\n{node_extra}"
        "  plain:\n    interface: SmoothImage\n    params: {in_file: " + str(path) + "}\n"
    )
    return path


def test_run_level_threads_and_seed_reach_nodes_that_have_them(tmp_path: Path):
    wf = smriflow.load_workflow(_probe_yaml(tmp_path), omp_nthreads=3, seed=7)
    probe = wf.get_node("probe")
    assert (probe.inputs.num_threads, probe.inputs.seed, probe.n_procs) == (3, 7, 3)
    assert wf.get_node("plain").n_procs == 1  # no num_threads trait: stays single-core


def test_yaml_values_win_over_run_level_settings(tmp_path: Path):
    extra = "    params: {seed: 99}\n    resources: {n_procs: 2, mem_gb: 1}\n"
    wf = smriflow.load_workflow(_probe_yaml(tmp_path, extra), omp_nthreads=4, seed=7)
    probe = wf.get_node("probe")
    assert (probe.inputs.num_threads, probe.inputs.seed, probe.n_procs, probe.mem_gb) == (2, 99, 2, 1.0)


def test_num_threads_param_is_refused(tmp_path: Path):
    path = _probe_yaml(tmp_path, "    params: {num_threads: 2}\n")
    with pytest.raises(SpecError) as info:
        smriflow.load_workflow(path)
    assert str(info.value) == (
        f"{path}:9:14: nodes.probe.params.num_threads: set the threads of a node with 'resources.n_procs'. "
        "nipype sets 'num_threads' from n_procs, so a value here would be overwritten."
    )


def test_map_over_makes_a_mapnode(tmp_path: Path, synthetic_t1w: Path):
    path = tmp_path / "mapped.yml"
    path.write_text(
        "smriflow: 1\nname: mapped_wf\ndoc: d\ninputs: [images]\noutputs: {smoothed: smooth.out_file}\n"
        "nodes:\n  smooth:\n    interface: SmoothImage\n    map_over: [in_file]\n"
        "    in: {in_file: inputs.images}\n"
    )
    wf = smriflow.load_workflow(path)
    assert isinstance(wf.get_node("smooth"), pe.MapNode)
    wf.inputs.inputnode.images = [str(synthetic_t1w), str(synthetic_t1w)]
    wf.base_dir = str(tmp_path / "work")
    result = wf.run(plugin="Linear")
    smooth = next(n for n in result.nodes() if n.name == "smooth")
    assert len(smooth.result.outputs.out_file) == 2


def test_map_over_a_param_list(tmp_path: Path, synthetic_t1w: Path):
    path = tmp_path / "kernels.yml"
    path.write_text(
        "smriflow: 1\nname: kernels_wf\ndoc: d\ninputs: [image]\noutputs: {smoothed: smooth.out_file}\n"
        "args:\n  kernels: {type: list, default: [1.0, 3.0, 5.0]}\n"
        "nodes:\n  smooth:\n    interface: SmoothImage\n    map_over: [fwhm]\n"
        "    params: {fwhm: $kernels}\n    in: {in_file: inputs.image}\n"
    )
    wf = smriflow.load_workflow(path, kernels=[2.0, 4.0])
    smooth = wf.get_node("smooth")
    assert smooth.inputs.fwhm == [2.0, 4.0]
    wf.inputs.inputnode.image = str(synthetic_t1w)
    wf.base_dir = str(tmp_path / "work")
    result = wf.run(plugin="Linear")
    outputs = next(n for n in result.nodes() if n.name == "smooth").result.outputs.out_file
    assert len(outputs) == 2 and outputs[0] != outputs[1]


def test_methods_text_collects_nested_workflows():
    from smriflow.engine.builder import locate_workflow, methods_text, resolve_args
    from smriflow.engine.validate import validate_file

    loaded = validate_file(locate_workflow("example"))
    text = methods_text(loaded, resolve_args(loaded, {}))
    assert text.startswith("The T1w image was smoothed")
    assert "A head mask was made by thresholding" in text  # from the nested example_masking workflow
