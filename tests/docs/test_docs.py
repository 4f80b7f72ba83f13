"""The generated documentation pages match the code, and the documented embedding example runs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from smriflow.config.docs import GENERATED

DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.mark.parametrize("name", sorted(GENERATED))
def test_generated_page_is_up_to_date(name: str):
    assert (DOCS / name).read_text() == GENERATED[name](), (
        f"docs/{name} is out of date: run `python -m smriflow.config.docs`"
    )


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
