"""The wheel ships the packaged YAML workflows and execution configs (`smriflow run NAME` works anywhere),
and nothing from outside the package (tools/, tests/)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    """smriflow's wheel, built once for this module."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(REPO)],
        check=True,
        capture_output=True,
    )
    (path,) = out.glob("smriflow-*.whl")
    return zipfile.ZipFile(path)


@pytest.mark.slow
def test_wheel_contains_every_workflow_and_config(wheel):
    names = set(wheel.namelist())
    for kind in ("workflows", "configs"):
        expected = {f"smriflow/data/{kind}/{p.name}" for p in (REPO / kind).glob("*.yml")}
        assert expected, kind
        assert expected <= names, sorted(expected - names)
    # only the package: the developer tools (tools/docgen) and the tests stay in the repository
    outside = {n for n in names if not n.startswith(("smriflow/", "smriflow-"))}
    assert not outside, sorted(outside)


@pytest.mark.slow
def test_wheel_contains_the_learned_brain_extractor(wheel):
    """deepbet's ONNX networks and their MIT licence ship inside the package (issue 15)."""
    names = set(wheel.namelist())
    expected = {f"smriflow/data/deepbet/{n}" for n in ("deepbet_bbox.onnx", "deepbet_mask.onnx", "LICENSE")}
    assert expected <= names, sorted(expected - names)
    assert b"MIT License" in wheel.read("smriflow/data/deepbet/LICENSE")
