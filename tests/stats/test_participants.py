"""participants.tsv loading, the missing-value policies and the model checks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from smriflow.stats.participants import (
    apply_missing_policy,
    check_model,
    formula_variables,
    load_participants,
    participant_label,
)


def _write(tmp_path, text: str, name: str = "participants.tsv"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.fixture
def table(tmp_path):
    text = (
        "participant_id\tage\tsex\tsite\n"
        "sub-01\t20.5\tF\tA\n"
        "02\tn/a\tM\tB\n"
        "sub-03\t30\tn/a\tA\n"
        "sub-04\t40\tF\t\n"
        "sub-05\t25\tM\tA\n"
    )
    return _write(tmp_path, text)


def test_load_participants_labels_types_and_missing(table):
    frame = load_participants(table)
    assert list(frame.index) == ["01", "02", "03", "04", "05"]
    assert frame.index.name == "participant_id"
    assert frame["age"].dtype == float
    assert frame["age"].isna().tolist() == [False, True, False, False, False]
    assert frame.loc["01", "age"] == 20.5
    assert frame["sex"].isna().tolist() == [False, False, True, False, False]
    assert frame["site"].isna().tolist() == [False, False, False, True, False]
    assert frame.loc["05", "sex"] == "M"


def test_load_participants_keeps_leading_zeros(tmp_path):
    frame = load_participants(_write(tmp_path, "participant_id\tage\n0001\t20\nsub-0002\t21\n"))
    assert list(frame.index) == ["0001", "0002"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("subject\tage\n01\t3\n", "no 'participant_id' column. Available: age, subject"),
        ("participant_ID\tage\n01\t3\n", "no 'participant_id' column. Did you mean 'participant_ID'?"),
        ("participant_id\tage\nsub-01\t3\n01\t4\n", "duplicated participant_id: sub-01"),
        ("participant_id\tage\nsub-01\t3\n\t\nsub-02\t4\n", "line 3 is empty"),
        ("participant_id\tage\nn/a\t3\n", "line 2 has an empty participant_id"),
        ("participant_id\tage\n", "no participants (only a header)"),
        ("", "empty file"),
        ("participant_id\tage\nsub-01\t3\t4\n", "line 2 has 3 fields, the header has 2"),
    ],
)
def test_load_participants_errors(tmp_path, text, message):
    path = _write(tmp_path, text)
    with pytest.raises(ValueError, match="^" + __import__("re").escape(f"{path}: {message}")):
        load_participants(path)


def test_load_participants_missing_file(tmp_path):
    with pytest.raises(ValueError, match="participants file not found"):
        load_participants(tmp_path / "nope.tsv")


def test_participant_label():
    assert participant_label("sub-0001") == "0001"
    assert participant_label(" 0001 ") == "0001"


def test_drop_policy_reports_subjects_per_column(table):
    frame = load_participants(table)
    out, report = apply_missing_policy(frame, ["age", "sex"], "drop")
    assert list(out.index) == ["01", "04", "05"]
    assert report.dropped == {"age": ["02"], "sex": ["03"]}
    assert report.imputed == {}
    assert (report.n_before, report.n_after) == (5, 3)
    assert "age: dropped 1 (sub-02)" in report.summary()
    assert frame["age"].isna().sum() == 1  # input untouched


def test_impute_policy_mean_and_mode(table):
    frame = load_participants(table)
    out, report = apply_missing_policy(frame, ["age", "sex", "site"], "impute")
    assert len(out) == 5
    assert out.loc["02", "age"] == pytest.approx(np.mean([20.5, 30, 40, 25]))
    # F and M are tied (2 each): the first in sort order
    assert out.loc["03", "sex"] == "F"
    assert out.loc["04", "site"] == "A"
    assert report.imputed == {"age": ["02"], "sex": ["03"], "site": ["04"]}
    assert report.fill_values["sex"] == "F"
    tidy = report.to_frame()
    assert tidy.shape == (3, 4)
    assert tidy.loc[tidy.column == "age", "participant_id"].item() == "sub-02"


def test_missing_policy_errors(table):
    frame = load_participants(table)
    with pytest.raises(ValueError, match="^missing-value policy must be one of drop, impute; got 'mean'$"):
        apply_missing_policy(frame, ["age"], "mean")
    with pytest.raises(ValueError, match="^participants: unknown column 'agee'. Did you mean 'age'\\?"):
        apply_missing_policy(frame, ["agee"], "drop")
    frame["empty"] = np.nan
    with pytest.raises(ValueError, match="column 'empty' has no value to impute from"):
        apply_missing_policy(frame, ["empty"], "impute")
    with pytest.raises(ValueError, match="no subject has all of empty"):
        apply_missing_policy(frame, ["empty"], "drop")


def test_formula_variables():
    assert formula_variables("{roi} ~ age + eTIV + C(sex)") == ["age", "eTIV", "sex"]
    assert formula_variables("y ~ np.log(age) + age:C(site) + Q('weird name')") == [
        "age",
        "site",
        "weird name",
    ]
    assert formula_variables("age + I(age ** 2)") == ["age"]
    with pytest.raises(ValueError, match="^formula 'y ~ age \\+': cannot be parsed"):
        formula_variables("y ~ age +")


def _frame(n=10, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {"age": rng.uniform(20, 30, n), "sex": ["F", "M"] * (n // 2), "const": 1.0},
        index=[f"{i:02d}" for i in range(n)],
    )


def test_check_model_returns_design_columns():
    assert check_model("{roi} ~ age + C(sex)", _frame()) == ["Intercept", "C(sex)[T.M]", "age"]


def test_check_model_errors():
    frame = _frame()
    with pytest.raises(ValueError, match="^participants: unknown column 'agee'. Did you mean 'age'\\?"):
        check_model("{roi} ~ agee", frame)
    with pytest.raises(
        ValueError, match="^participants: predictor 'const' has no variance \\(all 1.0, n=10\\)$"
    ):
        check_model("{roi} ~ age + const", frame)
    with pytest.raises(ValueError, match="^participants: 3 subjects for 3 model parameters"):
        check_model("{roi} ~ age + C(sex)", frame.iloc[:3])
    frame["age2"] = frame["age"] * 2
    with pytest.raises(ValueError, match="rank deficient"):
        check_model("age + age2", frame)
    with pytest.raises(ValueError, match="predictor 'sexx' is not in the model. Did you mean 'sex'\\?"):
        check_model("age + C(sex)", frame, predictor="sexx")
    frame.loc["00", "age"] = np.nan
    with pytest.raises(ValueError, match="column 'age' has 1 missing values; choose a missing-value policy"):
        check_model("age", frame)
