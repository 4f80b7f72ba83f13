"""The generated documentation pages match the code, and the documented embedding example runs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tools.docgen import GENERATED, block_pattern, fill_blocks
from tools.docgen._common import COMMAND, packaged_specs
from tools.docgen.graphs import workflow_dot
from tools.docgen.workflows import derivative_name

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_embedding_example_in_docs_runs(tmp_path: Path, synthetic_t1w: Path):
    """docs/embedding.md's first Python block runs as written, given T1W and WORK_DIR."""
    text = (DOCS / "embedding.md").read_text()
    block = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    namespace = {"T1W": str(synthetic_t1w), "WORK_DIR": str(tmp_path / "work")}
    exec(compile(block, "docs/embedding.md", "exec"), namespace)
    stats_files = list((tmp_path / "work").rglob("*_stats.json"))
    assert len(stats_files) == 1
    stats = json.loads(stats_files[0].read_text())
    assert stats["voxels"] > 0 and stats["volume_mm3"] == pytest.approx(stats["voxels"] * 8.0)


# -- generated catalogue pages, graph pictures and blocks ----------------------------------------------------
CHEAP = sorted(name for name in GENERATED if name != "troubleshooting.md")


@pytest.mark.parametrize("name", CHEAP)
def test_generated_page_is_up_to_date(name: str):
    assert (DOCS / name).read_text() == GENERATED[name](), f"docs/{name} is out of date: run `{COMMAND}`"


@pytest.mark.slow
def test_troubleshooting_page_is_up_to_date():
    """The page runs every listed command for real (about 30 s of CPU), so it is a slow test."""
    assert (DOCS / "troubleshooting.md").read_text() == GENERATED["troubleshooting.md"](), (
        f"docs/troubleshooting.md is out of date: run `{COMMAND} troubleshooting.md`"
    )


@pytest.mark.parametrize("name", sorted(packaged_specs()))
def test_workflow_graph_pictures_are_up_to_date(name: str):
    dot = DOCS / "img" / f"graph-{name}.dot"
    assert dot.read_text() == workflow_dot(name), f"{dot} is out of date: run `{COMMAND}`"
    svg = (DOCS / "img" / f"graph-{name}.svg").read_text()
    node_ids = set(re.findall(r'^\s*"([^"]+)" \[label=', dot.read_text(), re.M))
    assert node_ids and set(re.findall(r"<title>([^<]+)</title>", svg)) >= node_ids  # drawn from this DOT
    assert f"](img/graph-{name}.svg)" in (DOCS / "workflows.md").read_text()


def test_workflow_graph_has_every_node_and_connection():
    text = workflow_dot("example")
    for node in packaged_specs()["example"].spec.nodes:
        assert f'"{node}" [label=' in text or f'"cluster_{node}"' in text
    assert '"inputnode" -> "smooth" [label="t1w → in_file"]' in text


def test_derivative_names_follow_the_bids_entities():
    loaded = packaged_specs()["anat_preproc"]
    assert derivative_name(loaded, "t1w_mask") == "sub-<label>/anat/sub-<label>_desc-brain_mask.nii.gz"
    assert (
        derivative_name(loaded, "std_gm_modulated")
        == "sub-<label>/anat/sub-<label>_space-MNI152NLin2009aSym_label-GM_desc-modulated_probseg.nii.gz"
    )
    assert derivative_name(loaded, "conform_info") is None  # not written on its own


def test_interface_catalogue_lists_every_registered_interface():
    from smriflow.engine.registry import interface_registry

    sections = re.findall(r"^## (\w+)$", (DOCS / "interfaces.md").read_text(), re.M)
    assert interface_registry() and sorted(sections) == sorted(interface_registry())


@pytest.mark.parametrize("page", ["README.md", *sorted(p.name for p in DOCS.glob("*.md"))])
def test_generated_blocks_are_up_to_date(page: str):
    path = DOCS.parent / page if page == "README.md" else DOCS / page
    text = path.read_text()
    assert fill_blocks(text) == text, f"{page}: a generated block is out of date: run `{COMMAND}`"


def test_readme_has_the_derivatives_table():
    assert block_pattern("anat_preproc-derivatives").search((DOCS.parent / "README.md").read_text())


@pytest.mark.parametrize("page", ["README.md", *sorted(f"docs/{p.name}" for p in DOCS.glob("*.md"))])
def test_relative_links_point_to_files(page: str):
    """A newcomer who clicks a link in the README or the docs lands on a file that exists."""
    path = DOCS.parent / page
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)  # links inside code blocks are not links
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        if not (path.parent / target.split("#")[0]).exists():
            broken.append(target)
    assert not broken, f"{page}: links to missing files: {broken}"


def test_no_graph_picture_of_a_removed_workflow():
    names = {p.name.removeprefix("graph-").rsplit(".", 1)[0] for p in (DOCS / "img").glob("graph-*")}
    assert names == set(packaged_specs()), "remove the pictures of workflows that no longer exist"
