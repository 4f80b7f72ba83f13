"""containers/pins.py: the versions CI pins in the image are those of smriflow's dependency closure here."""

from __future__ import annotations

import importlib.util
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("pins", REPO / "containers" / "pins.py")
pins = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(pins)


def test_every_dependency_and_theirs_is_pinned_to_the_installed_version_and_test_tools_are_not():
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    found = pins.installed_closure(dependencies)
    for line in dependencies:
        name = canonicalize_name(Requirement(line).name)
        assert found[name] == metadata.version(name)
    assert found["scipy"] == metadata.version("scipy")  # not listed by smriflow: a dependency's dependency
    assert "pytest" not in found and "ruff" not in found  # the test extra is not smriflow's to run


def test_a_requirement_whose_marker_is_false_is_not_needed():
    assert pins.installed_closure(['numpy; python_version < "3"']) == {}
    assert pins.installed_closure(['packaging; python_version >= "3"']) == {
        "packaging": metadata.version("packaging")
    }


def test_a_missing_dependency_is_named():
    with pytest.raises(SystemExit, match="no-such-distribution-xyz"):
        pins.installed_closure(["no-such-distribution-xyz>=1"])


def test_main_prints_pip_constraints(capsys):
    assert pins.main([str(REPO / "pyproject.toml")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("# ")
    assert f"numpy=={metadata.version('numpy')}" in lines
    assert all(str(Requirement(line).specifier).startswith("==") for line in lines[1:])
