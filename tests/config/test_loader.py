"""The YAML loader keeps positions, rejects duplicate keys and reads YAML 1.2."""

from __future__ import annotations

import pytest

from smriflow.config.errors import Problem, SpecError, did_you_mean
from smriflow.config.loader import format_key_path, loads_yaml


def test_positions_are_one_based_and_cover_keys_and_values():
    data, pos = loads_yaml("a: 1\nb:\n  c: [x, y]\n", "f.yml")
    assert data == {"a": 1, "b": {"c": ["x", "y"]}}
    assert pos.keys[("b", "c")] == (3, 3)
    assert pos.values[("b", "c", 1)] == (3, 10)
    # An absent path falls back to its nearest existing ancestor.
    assert pos.of_value(("b", "c", "zzz")) == (3, 6)


def test_yaml_1_2_has_no_yes_no_booleans():
    data, _ = loads_yaml("a: yes\nb: off\nc: true\n")
    assert data == {"a": "yes", "b": "off", "c": True}


def test_duplicate_key_is_rejected_with_position():
    with pytest.raises(SpecError) as info:
        loads_yaml("a: 1\nb: 2\na: 3\n", "f.yml")
    assert str(info.value) == "f.yml:3:1: duplicate key 'a'. Each key may appear once in a mapping."


def test_syntax_error_is_located():
    with pytest.raises(SpecError) as info:
        loads_yaml("a: [1, 2\nb: 3\n", "f.yml")
    assert str(info.value).startswith("f.yml:2:2: invalid YAML:")


def test_problems_sort_by_position_and_deduplicate():
    late = Problem("f.yml", 9, 1, "b", "late")
    early = Problem("f.yml", 2, 5, "a", "early")
    error = SpecError([late, early, late])
    assert str(error) == "f.yml:2:5: a: early.\nf.yml:9:1: b: late."


def test_did_you_mean():
    assert (
        did_you_mean("out_fle", ["out_file", "out_bias"])
        == "Did you mean 'out_file'? Available: out_bias, out_file"
    )
    assert did_you_mean("zzz", ["a"], list_all=False) == ""


def test_format_key_path():
    assert format_key_path(("nodes", "n4", "map_over", 0)) == "nodes.n4.map_over[0]"
