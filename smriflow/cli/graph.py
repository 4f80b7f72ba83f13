"""``smriflow graph``: draw a workflow's nodes and connections as DOT, PNG or SVG.

The DOT text is written here, without graphviz; PNG and SVG are rendered by graphviz's ``dot`` command.
Nested workflows are drawn as boxes (clusters) around their nodes, and each edge is labelled with the
ports it connects (``out_file → in_file``).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
from collections import defaultdict
from pathlib import Path
from typing import Any

__all__ = ["add_graph_parser", "graph_command", "workflow_to_dot"]

FORMATS = {".dot": "dot", ".gv": "dot", ".png": "png", ".svg": "svg"}


def add_graph_parser(subparsers: Any, common: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``graph`` command."""
    parser = subparsers.add_parser(
        "graph",
        parents=[common],
        help="draw a workflow as a graph (.dot, .png, .svg)",
        description=(
            "Build WORKFLOW (with --set values) and draw its nodes and connections. .dot files are "
            "written directly; .png and .svg need graphviz's `dot` command."
        ),
    )
    parser.add_argument("workflow", metavar="WORKFLOW", help="packaged workflow name or YAML file")
    parser.add_argument(
        "-o", "--output", required=True, type=Path, metavar="FILE", help="dag.dot, dag.png or dag.svg"
    )
    parser.add_argument("--set", action="append", metavar="ARG=VALUE", help="set a workflow argument (YAML)")
    parser.set_defaults(handler=graph_command)
    return parser


def graph_command(args: argparse.Namespace) -> int:
    """Handle ``smriflow graph``."""
    from smriflow.cli.main import CLIError, parse_set_values

    fmt = FORMATS.get(args.output.suffix.lower())
    if fmt is None:
        raise CLIError(f"-o {args.output}: the file must end in .dot, .gv, .png or .svg")
    dot_command = shutil.which("dot")
    if fmt != "dot" and dot_command is None:
        raise CLIError(
            f"-o {args.output}: rendering {fmt.upper()} needs graphviz's `dot` command, which is not on PATH "
            "(install it with `apt-get install graphviz`), or write a .dot file instead"
        )
    from smriflow.engine.builder import build_workflow, locate_workflow, resolve_args
    from smriflow.engine.validate import validate_file

    loaded = validate_file(locate_workflow(args.workflow))
    wf = build_workflow(loaded, resolve_args(loaded, parse_set_values(args.set), source="--set"))
    text = workflow_to_dot(wf)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "dot":
        args.output.write_text(text, encoding="utf-8")
    else:
        result = subprocess.run(
            [dot_command, f"-T{fmt}", "-o", str(args.output)], input=text, text=True, capture_output=True
        )
        if result.returncode != 0:
            raise CLIError(f"graphviz `dot` failed: {result.stderr.strip()}")
    print(f"wrote {args.output}")
    return 0


def _quote(text: str) -> str:
    """A DOT string: backslashes and quotes escaped, newlines as DOT's centred line breaks."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def workflow_to_dot(wf: Any) -> str:
    """The DOT text of a nipype workflow: one box per node, clusters for nested workflows.

    Node identifiers are full hierarchical names (``example_wf.masking_wf.threshold``); labels show the
    node name and its interface class. The text depends only on the graph, so it can be compared.
    """
    graph = wf._create_flat_graph()
    clusters: dict[tuple[str, ...], list[Any]] = defaultdict(list)
    for node in graph.nodes():
        path = tuple(node.fullname.split(".")[1:-1])  # below the top workflow, without the node itself
        clusters[path].append(node)
    lines = [
        f"digraph {_quote(wf.name)} {{",
        "  rankdir=TB;",
        f"  label={_quote(wf.name)}; labelloc=t; fontname=Helvetica;",
        "  node [shape=box, style=rounded, fontname=Helvetica, fontsize=11];",
        "  edge [fontname=Helvetica, fontsize=9];",
    ]
    lines += _cluster_lines((), clusters, indent="  ")
    edges = []
    for source, target, data in graph.edges(data=True):
        ports = [f"{_port(src)} → {dst}" for src, dst in data.get("connect", [])]
        label = "\n".join(ports)
        edges.append(f"  {_quote(source.fullname)} -> {_quote(target.fullname)} [label={_quote(label)}];")
    lines += sorted(edges)
    lines.append("}")
    return "\n".join(lines) + "\n"


def _port(source: Any) -> str:
    return source if isinstance(source, str) else str(source[0])  # (port, function, args) connections


def _cluster_lines(
    path: tuple[str, ...], clusters: dict[tuple[str, ...], list[Any]], indent: str
) -> list[str]:
    lines = []
    for node in sorted(clusters.get(path, []), key=lambda node: node.fullname):
        interface = type(node.interface).__name__
        shape = ", shape=ellipse" if node.name in ("inputnode", "outputnode") else ""
        label = f"{node.name}\n({interface})"
        lines.append(f"{indent}{_quote(node.fullname)} [label={_quote(label)}{shape}];")
    children = sorted(
        {key[: len(path) + 1] for key in clusters if len(key) > len(path) and key[: len(path)] == path}
    )
    for child in children:
        lines.append(f"{indent}subgraph {_quote('cluster_' + '.'.join(child))} {{")
        lines.append(f"{indent}  label={_quote(child[-1])}; style=rounded; color=gray50;")
        lines += _cluster_lines(child, clusters, indent + "  ")
        lines.append(f"{indent}}}")
    return lines
