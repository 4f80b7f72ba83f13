"""The wheel ships the packaged YAML workflows and execution configs (`smriflow run NAME` works anywhere)."""

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


@pytest.mark.slow
def test_wheel_contains_the_learned_brain_extractor(tmp_path: Path):
    """deepbet's ONNX networks and their MIT licence ship inside the package (issue 15)."""
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path), str(REPO)],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("smriflow-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        expected = {f"smriflow/data/deepbet/{n}" for n in ("deepbet_bbox.onnx", "deepbet_mask.onnx", "LICENSE")}
        assert expected <= names, sorted(expected - names)
        assert b"MIT License" in zf.read("smriflow/data/deepbet/LICENSE")
