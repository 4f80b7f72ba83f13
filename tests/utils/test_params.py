"""smriflow.utils.params.Param: what a declaration accepts, and how it says so."""

from __future__ import annotations

import pytest

from smriflow.utils.params import Param

CHOICE = Param("holm", "correction", choices=("holm", "fdr_bh"))
OPEN = Param(0.05, "alpha", low=0.0, high=1.0, low_open=True, high_open=True)
POSITIVE = Param(3.5, "z", low=0.0, low_open=True)
NON_NEGATIVE = Param(0.05, "floor", low=0.0)
FREE = Param(5, "count")


@pytest.mark.parametrize(
    ("param", "good", "bad", "message"),
    [
        (CHOICE, ["fdr_bh"], ["fdr", 1], "'p' must be one of {'holm', 'fdr_bh'}. 'fdr' was provided."),
        (OPEN, [0.5, 1e-9], [0.0, 1.0, 2, "0.5", True], "'p' must be in (0, 1). 0.0 was provided."),
        (POSITIVE, [0.1, 3], [0, -1.0], "'p' must be positive. 0 was provided."),
        (NON_NEGATIVE, [0, 0.2], [-1], "'p' must be 0 or more. -1 was provided."),
        (FREE, [0, -3, 10], [2.5, "5", False], "'p' must be of type int. 2.5 was provided."),
    ],
)  # fmt: skip
def test_check_accepts_and_refuses(param, good, bad, message):
    for value in good:
        assert param.check("p", value) == value
    for value in bad:
        with pytest.raises(ValueError, match=r"^'p' must be "):
            param.check("p", value)
    with pytest.raises(ValueError) as info:
        param.check("p", bad[0])
    assert str(info.value) == message


def test_a_float_parameter_takes_an_int_as_a_float():
    value = POSITIVE.check("z", 3)
    assert value == 3.0 and isinstance(value, float)
    assert POSITIVE.type_name == "float" and FREE.type_name == "int" and CHOICE.type_name == "str"


def test_parse_reads_command_line_text():
    assert OPEN.parse("alpha", "0.01") == 0.01
    with pytest.raises(ValueError, match=r"^'alpha' must be in \(0, 1\)\. 'five' was provided\.$"):
        OPEN.parse("alpha", "five")
    with pytest.raises(ValueError, match=r"^'alpha' must be in \(0, 1\)\. 5\.0 was provided\.$"):
        OPEN.parse("alpha", "5")


def test_a_declaration_with_a_bad_default_is_refused():
    with pytest.raises(ValueError, match=r"^'default' must be one of \{'a', 'b'\}\. 'c' was provided\.$"):
        Param("c", "x", choices=("a", "b"))
    with pytest.raises(ValueError, match=r"^'default' must be a bool, int, float or str\. \[1\] was"):
        Param([1], "x")
