"""The graph pictures of ``docs/workflows.md``: DOT text per packaged workflow, drawn by graphviz."""

from __future__ import annotations

from pathlib import Path

from smriflow.engine.loading import LoadedSpec

from ._common import nested_spec, packaged_specs


def workflow_dot(name: str) -> str:
    """DOT text of a packaged workflow: one box per node, nested YAML workflows as clusters, port labels."""
    loaded = packaged_specs()[name]
    lines = [
        f'digraph "{loaded.spec.name}" {{',
        '  rankdir=TB; compound=true; fontname="Helvetica"; fontsize=11;',
        '  node [shape=box, style="rounded,filled", fillcolor="#e8eef7", fontname="Helvetica", fontsize=10];',
        '  edge [fontname="Helvetica", fontsize=8, color="#555555"];',
    ]
    edges: dict[tuple[str, str], list[str]] = {}
    _dot_body(loaded, "", lines, edges, indent="  ")
    for (src, dst), labels in edges.items():
        label = "\\n".join(sorted(set(labels)))
        lines.append(f'  "{src}" -> "{dst}" [label="{label}"];')
    lines.append("}")
    return "\n".join(lines) + "\n"


def _dot_body(
    loaded: LoadedSpec,
    prefix: str,
    lines: list[str],
    edges: dict[tuple[str, str], list[str]],
    indent: str,
) -> None:
    """Add the nodes of ``loaded`` (ids prefixed by ``prefix``) to ``lines``, its connections to ``edges``."""
    wf = loaded.spec
    inputnode, outputnode = f"{prefix}inputnode", f"{prefix}outputnode"
    grey = 'fillcolor="#eeeeee"'
    if wf.inputs:
        lines.append(f'{indent}"{inputnode}" [label="inputnode\\n{", ".join(wf.inputs)}", {grey}];')
    lines.append(f'{indent}"{outputnode}" [label="outputnode\\n{len(wf.outputs)} fields", {grey}];')
    ports: dict[str, tuple[str, str]] = {}  # node -> (id receiving its inputs, id giving its outputs)
    for node_name, node in wf.nodes.items():
        node_id = f"{prefix}{node_name}"
        child = nested_spec(node.workflow, loaded) if node.workflow else None
        if child is None:
            kind = node.interface or node.workflow
            shape = ", shape=box3d" if node.map_over else ""
            lines.append(f'{indent}"{node_id}" [label="{node_name}\\n({kind})"{shape}];')
            ports[node_name] = (node_id, node_id)
            continue
        lines.append(f'{indent}subgraph "cluster_{node_id}" {{')
        lines.append(f'{indent}  label="{node_name} ({child.path.name})"; style="rounded"; color="#8899aa";')
        _dot_body(child, f"{node_id}.", lines, edges, indent + "  ")
        lines.append(f"{indent}}}")
        ports[node_name] = (f"{node_id}.inputnode", f"{node_id}.outputnode")
    for node_name, node in wf.nodes.items():
        for target, source in node.in_.items():
            src_node, _, src_port = source.partition(".")
            src = inputnode if src_node == "inputs" else ports[src_node][1]
            edges.setdefault((src, ports[node_name][0]), []).append(f"{src_port} → {target}")
    for port, out in wf.outputs.items():
        src_node, _, src_port = out.from_.partition(".")
        edges.setdefault((ports[src_node][1], outputnode), []).append(f"{src_port} → {port}")


def render_graph_images(img_dir: Path) -> list[Path]:
    """Write ``graph-<name>.dot`` and, with graphviz's ``dot`` on PATH, ``graph-<name>.svg`` per workflow."""
    import shutil
    import subprocess

    img_dir.mkdir(parents=True, exist_ok=True)
    dot_command = shutil.which("dot")
    written = []
    for name in packaged_specs():
        text = workflow_dot(name)
        dot_file = img_dir / f"graph-{name}.dot"
        dot_file.write_text(text)
        written.append(dot_file)
        if dot_command:
            svg = img_dir / f"graph-{name}.svg"
            subprocess.run([dot_command, "-Tsvg", "-o", str(svg)], input=text, text=True, check=True)
            written.append(svg)
    return written
