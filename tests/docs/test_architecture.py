"""docs/architecture.md draws the import layers that pyproject.toml's import-linter contracts enforce."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGE = (ROOT / "docs" / "architecture.md").read_text()


def _contract_layers() -> list[set[str]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    (layers,) = [c["layers"] for c in config["tool"]["importlinter"]["contracts"] if c["type"] == "layers"]
    return [{name.strip() for name in layer.split("|")} for layer in layers]


def _page_layers() -> list[set[str]]:
    block = PAGE.split("<!-- layers:")[1].split("\n\n")[0]
    rows = re.findall(r"^\| (\d+) \| (.+?) \|", block, re.M)
    assert [int(n) for n, _ in rows] == list(range(len(rows), 0, -1)), "layers numbered top first"
    return [set(re.findall(r"`(smriflow\.[a-z_]+)`", cell)) for _, cell in rows]


def test_the_drawn_layers_are_the_contracts():
    assert _page_layers() == _contract_layers()


def test_every_package_has_a_layer():
    folders = [p for p in (ROOT / "smriflow").iterdir() if (p / "__init__.py").is_file()]
    packages = {f"smriflow.{p.name}" for p in folders}
    assert packages == set().union(*_contract_layers())


def test_the_files_of_the_common_changes_exist():
    table = PAGE.split("## Five common changes")[1]
    paths = set(re.findall(r"`((?:smriflow|docs|workflows|configs)/[a-z_/<>]+\.(?:py|md|yml))`", table))
    assert len(paths) >= 8
    for path in paths:  # a new file's folder exists; a file to edit exists
        assert (ROOT / path).parent.is_dir() if "<" in path else (ROOT / path).is_file(), path
