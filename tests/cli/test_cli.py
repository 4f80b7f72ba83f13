"""The ``smriflow`` command line: help, version, validate, graph, list, --set parsing, progress."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pydot
import pytest
from _helpers import run_cli
from rich.console import Console

from smriflow import __version__
from smriflow.cli.main import CLIError, get_parser, parse_set_values
from smriflow.cli.progress import Progress
from smriflow.config.resources import packaged_dir
from smriflow.engine.registry import packaged_workflows

REPO = Path(__file__).resolve().parents[2]
BAD_SPECS = REPO / "tests" / "data" / "bad_specs"




def test_help_lists_every_command():
    code, out, _ = run_cli("--help")
    assert code == 0
    for command in ("run", "validate", "graph", "list"):
        assert f"    {command} " in out
    code, out, _ = run_cli("run", "--help")
    assert code == 0
    options = ["--bids-dir", "--output-dir", "--participant-label", "--work-dir", "--exec-config", "--set"]
    for option in [*options, "--nprocs", "--omp-nthreads", "--seed", "--debug"]:
        assert option in out
    assert get_parser().prog == "smriflow"


def test_version():
    assert run_cli("--version") == (0, f"smriflow {__version__}\n", "")


def test_usage_error_exits_2():
    code, out, err = run_cli("run", "example")
    assert code == 2 and out == ""
    assert "the following arguments are required: --output-dir" in err
    assert run_cli()[0] == 2


def test_version_does_not_import_nipype():
    code = (
        "import sys; from smriflow.cli.main import main; main(['--version']); print('nipype' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.splitlines() == [f"smriflow {__version__}", "False"]


# -- --set ------------------------------------------------------------------------------------------------
def test_set_values_are_yaml_1_2():
    values = parse_set_values(
        ["fwhm=6", "ratio=0.5", "name=yes", "flag=true", "items=[1, 2]", "map={a: 1}", "s='4'"]
    )
    assert values == {
        "fwhm": 6,
        "ratio": 0.5,
        "name": "yes",
        "flag": True,
        "items": [1, 2],
        "map": {"a": 1},
        "s": "4",
    }
    assert parse_set_values(["a=1", "a=2"]) == {"a": 2}  # the last one wins
    with pytest.raises(CLIError, match=r"^--set expects NAME=VALUE \(e.g. --set fwhm=6\); got '=3'$"):
        parse_set_values(["=3"])


# -- validate ---------------------------------------------------------------------------------------------
def test_validate_every_shipped_file():
    files = sorted(packaged_workflows().values()) + sorted(packaged_dir("configs").glob("*.yml"))
    code, out, err = run_cli("validate", *files)
    assert (code, err) == (0, "")
    assert out.splitlines() == [f"OK {path}" for path in files]


def test_validate_reports_every_problem_and_exits_1(tmp_path):
    bad_config = tmp_path / "bad_config.yml"
    bad_config.write_text("plugin: MultiProc\nplugin_args: {n_proc: 4}\n")
    no_plugin = tmp_path / "no_plugin.yml"
    no_plugin.write_text("omp_nthreads: 0\n")  # every key is optional, plugin included
    assert run_cli("validate", no_plugin) == (
        1,
        f"{no_plugin}:1:15: omp_nthreads: must be at least 1; got 0.\n",
        "",
    )
    bad_entities = tmp_path / "entities.yml"
    text = packaged_workflows()["example"].read_text()
    bad_entities.write_text(
        text.replace("name: example_wf", "name: entities_wf").replace(
            "{desc: head, suffix: mask}", "{desk: head}"
        )
    )
    good = packaged_workflows()["example"]
    code, out, err = run_cli(
        "validate", good, BAD_SPECS / "cycle.yml", bad_config, bad_entities, tmp_path / "no.yml"
    )
    assert code == 1
    assert err == "4 of 5 files invalid\n"
    lines = out.splitlines()
    assert lines[0] == f"OK {good}"
    assert (
        lines[1]
        == f"{BAD_SPECS / 'cycle.yml'}:8:3: nodes.mask: the connections form a cycle: mask → masked → mask."
    )
    assert lines[2].startswith(
        f"{bad_config}:2:15: plugin_args.n_proc: unknown key 'n_proc' for plugin MultiProc."
    )
    line = next(n for n, text in enumerate(text.splitlines(), 1) if "{desc: head, suffix: mask}" in text)
    where = f"{bad_entities}:{line}"
    assert (
        lines[3] == f"{where}:11: outputs.t1w_mask.bids: a derivative needs a 'suffix' (e.g. suffix: mask)."
    )
    assert lines[4].startswith(
        f"{where}:12: outputs.t1w_mask.bids.desk: 'desk' is not a BIDS entity. Did you mean 'desc'? "
        "Available: acquisition, atlas,"
    )
    assert lines[5] == f"{tmp_path / 'no.yml'}: file not found."


@pytest.mark.parametrize("bad", sorted(BAD_SPECS.glob("*.yml")), ids=lambda p: p.stem)
def test_validate_fails_on_every_bad_spec(bad):
    code, out, _ = run_cli("validate", bad)
    assert code == 1
    assert out.startswith(str(bad)) and "OK" not in out


# -- graph ------------------------------------------------------------------------------------------------
def test_graph_writes_dot(tmp_path):
    target = tmp_path / "dag.dot"
    code, out, err = run_cli("graph", "example", "--set", "fwhm=2", "-o", target)
    assert (code, out, err) == (0, f"wrote {target}\n", "")
    text = target.read_text()
    (graph,) = pydot.graph_from_dot_data(text)  # valid DOT
    names = {node.get_name().strip('"') for node in graph.get_nodes()}
    names |= {node.get_name().strip('"') for sub in graph.get_subgraphs() for node in sub.get_nodes()}
    assert {"example_wf.smooth", "example_wf.stats", "example_wf.masking_wf.threshold"} <= names
    assert [sub.get_name().strip('"') for sub in graph.get_subgraphs()] == ["cluster_masking_wf"]
    assert '"example_wf.smooth" [label="smooth\\n(SmoothImage)"];' in text
    assert (
        '"example_wf.masking_wf.threshold" -> "example_wf.masking_wf.apply" [label="out_mask → in_mask"];'
        in text
    )
    assert text == run_graph_text(tmp_path)  # the same graph gives the same text


def run_graph_text(tmp_path: Path) -> str:
    target = tmp_path / "again.dot"
    assert run_cli("graph", "example", "-o", target)[0] == 0
    return target.read_text()


def test_graph_image_without_graphviz(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None)
    code, out, err = run_cli("graph", "example", "-o", tmp_path / "dag.png")
    assert (code, out) == (2, "")
    assert err == (
        f"-o {tmp_path / 'dag.png'}: rendering PNG needs graphviz's `dot` command, which is not on PATH "
        "(install it with `apt-get install graphviz`), or write a .dot file instead\n"
    )


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz `dot` not installed")
@pytest.mark.parametrize(("suffix", "magic"), [(".png", b"\x89PNG"), (".svg", b"<?xml")])
def test_graph_renders_images(tmp_path, suffix, magic):
    target = tmp_path / f"dag{suffix}"
    assert run_cli("graph", "example", "-o", target)[0] == 0
    assert target.read_bytes().startswith(magic)


def test_graph_errors(tmp_path):
    assert run_cli("graph", "example", "-o", tmp_path / "dag.pdf")[2] == (
        f"-o {tmp_path / 'dag.pdf'}: the file must end in .dot, .gv, .png or .svg\n"
    )
    code, _, err = run_cli("graph", "example", "--set", "percentile=high", "-o", tmp_path / "d.dot")
    assert code == 2
    assert err == "--set percentile: 'percentile' must be of type float. 'high' was provided.\n"


def test_graph_checks_values_where_they_land(tmp_path):
    """A value of the right type that the interface refuses stops `graph` too (it used to be a TraitError)."""
    code, out, err = run_cli("graph", "example", "--set", "fwhm=99", "-o", tmp_path / "d.dot")
    assert (code, out) == (2, "")
    assert err == (
        "--set fwhm: 'fwhm' of node smooth (SmoothImage) must be 0.0 <= a floating point number <= 50.0. "
        "99.0 was provided.\n"
    )
    assert not (tmp_path / "d.dot").exists()


@pytest.mark.parametrize(
    ("message", "shown"),
    [("it broke.", "it broke."), ("it broke", "it broke."), ("why?", "why?")],
)
def test_internal_error_ends_with_one_full_stop(monkeypatch, message, shown):
    from smriflow.cli import graph

    def broken(args):
        raise RuntimeError(message)

    monkeypatch.setattr(graph, "graph_command", broken)
    code, out, err = run_cli("graph", "example", "-o", "dag.dot")
    assert (code, out) == (1, "")
    hint = "Run again with --debug for the traceback."
    assert err == f"smriflow: internal error: RuntimeError: {shown} {hint}\n"


# -- list -------------------------------------------------------------------------------------------------
def test_list_shows_workflows_interfaces_and_configs():
    code, out, err = run_cli("list")
    assert (code, err) == (0, "")
    flat = " ".join(out.split())
    assert "Workflows (smriflow run WORKFLOW)" in flat
    assert "example The T1w image was smoothed with a Gaussian kernel" in flat
    assert "example_masking A head mask was made" in flat
    assert "Interfaces (interface: in a workflow file)" in flat
    assert "SmoothImage Smooth an image with a Gaussian kernel given in millimetres." in flat
    assert "ApplyMask Zero an image outside a mask (same grid required)." in flat
    assert "Execution configs (--exec-config NAME)" in flat
    assert "local run on this machine, several nodes at once. (the default)" in flat
    assert "linear run one node after the other, inside this process." in flat
    assert "DerivativesDataSink" not in flat


# -- progress ---------------------------------------------------------------------------------------------
def _node(name: str) -> SimpleNamespace:
    return SimpleNamespace(fullname=name)


def test_plain_progress_lines():
    stream = io.StringIO()
    console = Console(file=stream, force_terminal=False, width=100)
    with Progress(console, {"a": "01", "b": "01"}, interval=3600) as progress:
        progress.update(_node("a"), "start")
        progress.update(_node("a"), "end")  # within the interval: no line
        progress.update(_node("b"), "exception")  # a failure: a line at once
        progress.update(_node("c"), "end")  # a MapNode element: the total grows
    assert stream.getvalue().splitlines() == [
        "progress: 1/2 nodes done, 1 failed",
        "progress: 2/3 nodes done, 1 failed",
    ]


def test_terminal_progress_bar():
    stream = io.StringIO()
    console = Console(file=stream, force_terminal=True, width=100)
    with Progress(console, {"a": "01", "b": "01"}) as progress:
        progress.update(_node("a"), "end")
        progress.update(_node("b"), "exception")
    text = stream.getvalue()
    assert "1/2" in text and "1 failed" in text and "progress:" not in text
