"""The wheel ships the packaged YAML workflows and execution configs (`smriflow run NAME` works anywhere),
and nothing from outside the package (tools/, tests/)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_contains_every_workflow_and_config(tmp_path: Path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path), str(REPO)],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("smriflow-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for kind in ("workflows", "configs"):
        expected = {f"smriflow/data/{kind}/{p.name}" for p in (REPO / kind).glob("*.yml")}
        assert expected, kind
        assert expected <= names, sorted(expected - names)
    # only the package: the developer tools (tools/docgen) and the tests stay in the repository
    outside = {n for n in names if not n.startswith(("smriflow/", "smriflow-"))}
    assert not outside, sorted(outside)
