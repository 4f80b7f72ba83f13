"""Validation: every shipped YAML passes; every file of the bad corpus fails with exactly its messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from smriflow.config.errors import SpecError
from smriflow.engine.registry import packaged_workflows
from smriflow.engine.validate import validate_file

BAD_SPECS = sorted((Path(__file__).parents[1] / "data" / "bad_specs").glob("*.yml"))


def expected_messages(path: Path) -> list[str]:
    """The ``# expect: line:col: ...`` header lines of a corpus file, with the file name prefixed."""
    lines = path.read_text().splitlines()
    return [f"{path}:{line[len('# expect: ') :]}" for line in lines if line.startswith("# expect: ")]


def test_corpus_is_large_enough():
    assert len(BAD_SPECS) >= 15


@pytest.mark.parametrize("path", BAD_SPECS, ids=[p.stem for p in BAD_SPECS])
def test_bad_spec_reports_exactly_the_expected_messages(path: Path):
    expected = expected_messages(path)
    assert expected, f"{path.name} has no '# expect:' line"
    with pytest.raises(SpecError) as info:
        validate_file(path)
    assert str(info.value).splitlines() == expected
    # The user never sees a raw validator message.
    for banned in ("pydantic", "Traceback", "TraitError", "errors.pydantic.dev", "Value error,"):
        assert banned not in str(info.value)


@pytest.mark.parametrize("name", sorted(packaged_workflows()))
def test_shipped_workflows_are_valid(name: str):
    loaded = validate_file(packaged_workflows()[name])
    assert loaded.spec.name == f"{name}_wf"


def test_all_problems_are_reported_at_once():
    problems = pytest.raises(SpecError, validate_file, BAD_SPECS[0].parent / "many_errors.yml").value.problems
    assert [p.key_path for p in problems] == [
        "outputs.extra.from",
        "nodes.smooth.resources.n_procs",
        "nodes.stats.interface",
    ]
    assert all(p.line is not None and p.col is not None for p in problems)


def test_missing_file_is_one_line_error(tmp_path: Path):
    with pytest.raises(SpecError) as info:
        validate_file(tmp_path / "nope.yml")
    assert str(info.value) == f"{tmp_path / 'nope.yml'}: file not found."


def test_not_a_mapping(tmp_path: Path):
    path = tmp_path / "list.yml"
    path.write_text("- a\n- b\n")
    with pytest.raises(SpecError) as info:
        validate_file(path)
    assert str(info.value) == f"{path}:1:1: a workflow file must be a YAML mapping."


def test_nested_workflow_problems_name_the_nested_file(tmp_path: Path):
    (tmp_path / "inner.yml").write_text(
        "smriflow: 1\nname: inner_wf\ndoc: d\ninputs: [x]\noutputs: {y: s.out_fil}\n"
        "nodes:\n  s:\n    interface: SmoothImage\n    in: {in_file: inputs.x}\n"
    )
    (tmp_path / "outer.yml").write_text(
        "smriflow: 1\nname: outer_wf\ndoc: d\ninputs: [x]\noutputs: {y: inner.y}\n"
        "nodes:\n  inner:\n    workflow: inner.yml\n    in: {x: inputs.x}\n"
    )
    with pytest.raises(SpecError) as info:
        validate_file(tmp_path / "outer.yml")
    assert str(info.value) == (
        f"{tmp_path / 'inner.yml'}:5:14: outputs.y.from: "
        "'s.out_fil' is not an output of node s (SmoothImage). Did you mean 'out_file'? Available: out_file"
    )


def test_workflow_including_itself(tmp_path: Path):
    path = tmp_path / "loop.yml"
    path.write_text(
        "smriflow: 1\nname: loop_wf\ndoc: d\ninputs: [x]\noutputs: {y: again.y}\n"
        "nodes:\n  again:\n    workflow: loop.yml\n    in: {x: inputs.x}\n"
    )
    with pytest.raises(SpecError) as info:
        validate_file(path)
    assert str(info.value) == f"{path}:8:15: nodes.again.workflow: workflow 'loop.yml' includes itself."
