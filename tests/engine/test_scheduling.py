"""MultiProc's critical-path order (smriflow.engine.scheduling) and the YAML estimates it reads."""

from __future__ import annotations

from pathlib import Path

import networkx as nx
import nipype.pipeline.engine as pe
import pytest
from nipype.interfaces.base import BaseInterfaceInputSpec, SimpleInterface, TraitedSpec, traits

import smriflow
from smriflow.config.errors import SpecError
from smriflow.config.execution import load_exec_config, override
from smriflow.engine.plugins import run_workflow
from smriflow.engine.scheduling import ESTIMATE_ATTR, by_rank, estimated_seconds, upward_ranks


class _LogInputSpec(BaseInterfaceInputSpec):
    log = traits.Str(mandatory=True, desc="file the node appends its label to")
    label = traits.Str(mandatory=True, desc="what to append")
    after = traits.Any(desc="anything: only orders the node after another")


class _LogOutputSpec(TraitedSpec):
    done = traits.Str(desc="the label")


class LogStart(SimpleInterface):
    """Append a label to a log file (module level, so that MultiProc workers can unpickle it)."""

    input_spec, output_spec = _LogInputSpec, _LogOutputSpec

    def _run_interface(self, runtime):
        with open(self.inputs.log, "a", encoding="utf-8") as log:
            log.write(self.inputs.label + "\n")
        self._results["done"] = self.inputs.label
        return runtime


def test_upward_ranks_take_the_longest_chain_after_each_node():
    graph = nx.DiGraph([("a", "b"), ("a", "c"), ("c", "d"), ("b", "e"), ("d", "e")])
    cost = {"a": 1, "b": 10, "c": 2, "d": 3, "e": 1}
    ranks = upward_ranks(graph, cost.get)
    assert ranks == {"e": 1.0, "d": 4.0, "c": 6.0, "b": 11.0, "a": 12.0}
    # highest first; equal ranks keep the order they were given in
    assert by_rank([0, 1, 2, 3], [1.0, 5.0, 1.0, 5.0]) == [1, 3, 0, 2]


def _fork(log: Path) -> pe.Workflow:
    """root, then a cheap node 'short' (declared first) and a chain 'long_1' -> 'long_2' (11 s estimated)."""
    wf = pe.Workflow(name="fork")
    nodes = {}
    for label, seconds in (("root", 1), ("short", 5), ("long_1", 1), ("long_2", 10)):
        nodes[label] = pe.Node(LogStart(log=str(log), label=label), name=label)
        setattr(nodes[label], ESTIMATE_ATTR, seconds)
    wf.connect(nodes["root"], "done", nodes["short"], "after")
    wf.connect(nodes["root"], "done", nodes["long_1"], "after")
    wf.connect(nodes["long_1"], "done", nodes["long_2"], "after")
    return wf


@pytest.mark.parametrize(
    ("scheduler", "expected"),
    [
        # long_1's chain (11 s) before short (5 s), then long_2 (10 s) before short
        ("critical_path", ["root", "long_1", "long_2", "short"]),
        ("tsort", ["root", "short", "long_1", "long_2"]),  # nipype's graph order: short first
    ],
)
def test_multiproc_starts_the_ready_node_with_the_longest_chain_first(tmp_path, scheduler, expected):
    log = tmp_path / "order.txt"
    config = override(load_exec_config("local"), work_dir=tmp_path / "work", n_procs=1)
    data = config.model_dump()
    data["plugin_args"]["scheduler"] = scheduler
    report = run_workflow(_fork(log), type(config).model_validate(data))
    assert report.ok
    assert log.read_text().split() == expected


def test_the_default_scheduler_is_critical_path():
    assert load_exec_config("local").plugin_args.scheduler == "critical_path"


def _yaml(tmp_path: Path, resources: str) -> Path:
    path = tmp_path / "timed.yml"
    path.write_text(
        "smriflow: 1\nname: timed_wf\ndoc: timed\ninputs: [in_file]\noutputs: {out: smooth.out_file}\n"
        "nodes:\n  smooth:\n    interface: SmoothImage\n"
        f"    {resources}\n    in: {{in_file: inputs.in_file}}\n"
    )
    return path


def test_yaml_estimates_reach_the_nodes(tmp_path):
    wf = smriflow.load_workflow(_yaml(tmp_path, "resources: {mem_gb: 1, seconds: 12.5}"))
    assert estimated_seconds(wf.get_node("smooth")) == 12.5
    plain = smriflow.load_workflow(_yaml(tmp_path, "resources: {mem_gb: 1}"))
    assert estimated_seconds(plain.get_node("smooth")) == 1.0
    assert estimated_seconds(pe.Node(LogStart(), name="built_in_python")) == 1.0


def test_a_non_positive_estimate_is_refused_in_one_line(tmp_path):
    with pytest.raises(SpecError, match=r"nodes\.smooth\.resources\.seconds: must be a positive number"):
        smriflow.load_workflow(_yaml(tmp_path, "resources: {seconds: 0}"))
