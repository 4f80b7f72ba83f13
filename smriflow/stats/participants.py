"""BIDS ``participants.tsv``: loading, the missing-value policy and model checks.

Every group analysis (ROI GLM, VBM) reads its covariates through :func:`load_participants`, applies the
user's explicit :func:`apply_missing_policy` and checks its formula with :func:`check_model` before fitting,
so that a typo, a constant predictor or too few subjects is one clear line instead of a patsy or
statsmodels traceback.
"""

from __future__ import annotations

import ast
import csv
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from smriflow.stats.options import MISSING
from smriflow.utils.text import did_you_mean

__all__ = [
    "MISSING_POLICIES",
    "MissingReport",
    "apply_missing_policy",
    "check_model",
    "formula_variables",
    "load_participants",
    "participant_label",
]

MISSING_POLICIES = MISSING.choices  # declared in smriflow.stats.options

#: Values read as missing. BIDS writes ``n/a``; an empty cell is missing too.
NA_VALUES = ("n/a", "")

# Names that are functions or modules inside a patsy formula, never columns.
_FORMULA_FUNCTIONS = {"C", "I", "Q", "np", "center", "standardize", "scale", "bs", "cr", "cc", "te"}
_FORMULA_FUNCTIONS |= {"Treatment", "Sum", "Helmert", "Poly", "Diff", "log", "exp", "sqrt", "abs"}


def participant_label(value: object) -> str:
    """Return the subject label without ``sub-`` (``'sub-0001'`` and ``'0001'`` both give ``'0001'``)."""
    text = str(value).strip()
    return text[4:] if text.startswith("sub-") else text


def load_participants(path: str | Path) -> pd.DataFrame:
    """Read a BIDS ``participants.tsv`` into a frame indexed by subject label.

    Parameters
    ----------
    path : str or Path
        The tab-separated file. Its ``participant_id`` column may hold ``sub-<label>`` or ``<label>``.

    Returns
    -------
    pandas.DataFrame
        One row per participant, indexed by the label without ``sub-`` (index name ``participant_id``, as
        strings: ``'0001'`` stays ``'0001'``), in file order. ``n/a`` and empty cells are missing (NaN);
        columns whose non-missing values are all numbers are float, the others strings.

    Raises
    ------
    ValueError
        One line naming the file: unreadable or empty file, no ``participant_id`` column, an empty row or an
        empty ``participant_id``, duplicated participants.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: participants file not found")
    with path.open(newline="", encoding="utf-8-sig") as handle:
        rows = list(csv.reader(handle, delimiter="\t"))
    if not rows or not any(cell.strip() for cell in rows[0]):
        raise ValueError(f"{path}: empty file (expected a header with a participant_id column)")
    header = [cell.strip() for cell in rows[0]]
    if "participant_id" not in header:
        raise ValueError(
            f"{path}: no 'participant_id' column. {did_you_mean('participant_id', [h for h in header if h])}"
        )
    body: list[list[str]] = []
    id_col = header.index("participant_id")
    for line_number, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            if line_number == len(rows):  # a trailing line of tabs only
                continue
            raise ValueError(f"{path}: line {line_number} is empty")
        if len(row) != len(header):
            raise ValueError(
                f"{path}: line {line_number} has {len(row)} fields, the header has {len(header)}"
            )
        if not row[id_col].strip() or row[id_col].strip() in NA_VALUES:
            raise ValueError(f"{path}: line {line_number} has an empty participant_id")
        body.append([cell.strip() for cell in row])
    if not body:
        raise ValueError(f"{path}: no participants (only a header)")
    frame = pd.DataFrame(body, columns=header, dtype=object)
    frame["participant_id"] = [participant_label(v) for v in frame["participant_id"]]
    duplicated = frame["participant_id"][frame["participant_id"].duplicated()].unique().tolist()
    if duplicated:
        shown = ", ".join(f"sub-{d}" for d in duplicated[:10])
        raise ValueError(f"{path}: duplicated participant_id: {shown}")
    frame = frame.set_index("participant_id")
    for column in frame.columns:
        values = frame[column].where(~frame[column].isin(NA_VALUES))
        numbers = pd.to_numeric(values, errors="coerce")
        if numbers.notna().sum() == values.notna().sum() and values.notna().any():
            frame[column] = numbers.astype(float)
        else:
            frame[column] = values.astype(object)
    frame.index = frame.index.astype(str)
    return frame


@dataclass
class MissingReport:
    """What :func:`apply_missing_policy` did, per column.

    Attributes
    ----------
    policy : str
        ``drop`` or ``impute``.
    columns : list of str
        The columns the policy was applied to.
    dropped : dict
        Column → subject labels dropped because that column was missing (``drop``; a subject missing several
        columns is listed under each).
    imputed : dict
        Column → subject labels whose value was imputed (``impute``).
    fill_values : dict
        Column → the value imputed (mean of numbers, most frequent category; ties → first in sort order).
    n_before, n_after : int
        Subjects before and after.
    """

    policy: str
    columns: list[str]
    dropped: dict[str, list[str]] = field(default_factory=dict)
    imputed: dict[str, list[str]] = field(default_factory=dict)
    fill_values: dict[str, object] = field(default_factory=dict)
    n_before: int = 0
    n_after: int = 0

    def to_frame(self) -> pd.DataFrame:
        """Tidy table: column, participant_id (``sub-<label>``), action (dropped/imputed), value (imputed
        value or n/a)."""
        rows = [(c, f"sub-{s}", "dropped", None) for c, subs in self.dropped.items() for s in subs]
        rows += [
            (c, f"sub-{s}", "imputed", self.fill_values[c]) for c, subs in self.imputed.items() for s in subs
        ]
        return pd.DataFrame(rows, columns=["column", "participant_id", "action", "value"])

    def summary(self) -> str:
        """One line per column that lost or gained values, e.g. ``age: dropped 2 (sub-01, sub-07)``."""
        lines = [f"missing values: policy {self.policy}, {self.n_before} -> {self.n_after} subjects"]
        for column, subjects in self.dropped.items():
            lines.append(f"  {column}: dropped {len(subjects)} ({_listed(subjects)})")
        for column, subjects in self.imputed.items():
            lines.append(
                f"  {column}: imputed {len(subjects)} with {self.fill_values[column]!r} ({_listed(subjects)})"
            )
        return "\n".join(lines)


def _listed(subjects: Sequence[str], limit: int = 20) -> str:
    shown = ", ".join(f"sub-{s}" for s in subjects[:limit])
    return shown + (f", … ({len(subjects) - limit} more)" if len(subjects) > limit else "")


def _check_columns(frame: pd.DataFrame, columns: Iterable[str], source: str) -> list[str]:
    columns = list(dict.fromkeys(columns))
    for column in columns:
        if column not in frame.columns:
            raise ValueError(
                f"{source}: unknown column '{column}'. {did_you_mean(column, map(str, frame.columns))}"
            )
    return columns


def apply_missing_policy(
    frame: pd.DataFrame, columns: Iterable[str], policy: str, *, source: str = "participants"
) -> tuple[pd.DataFrame, MissingReport]:
    """Apply the user's missing-value policy to ``columns`` of ``frame``.

    Parameters
    ----------
    frame : pandas.DataFrame
        Subjects in rows (e.g. from :func:`load_participants`, possibly joined with ROI values).
    columns : iterable of str
        The columns the analysis uses; missing values elsewhere are left alone.
    policy : {'drop', 'impute'}
        ``drop`` removes every subject missing any of ``columns``. ``impute`` fills numbers with the column
        mean and categories with the most frequent value (ties: the first in sort order), both computed over
        the subjects that have the value.
    source : str
        Named in error messages (the file the frame came from).

    Returns
    -------
    frame : pandas.DataFrame
        A new frame (the input is not modified).
    report : MissingReport
        The dropped or imputed subjects per column.

    Raises
    ------
    ValueError
        Unknown policy or column; a column entirely missing under ``impute``; no subject left under ``drop``.
    """
    if policy not in MISSING_POLICIES:
        raise ValueError(f"missing-value policy must be one of {', '.join(MISSING_POLICIES)}; got '{policy}'")
    columns = _check_columns(frame, columns, source)
    out = frame.copy()
    report = MissingReport(policy=policy, columns=columns, n_before=len(frame))
    labels = [str(i) for i in frame.index]
    if policy == "drop":
        keep = np.ones(len(frame), dtype=bool)
        for column in columns:
            missing = frame[column].isna().to_numpy()
            if missing.any():
                report.dropped[column] = [s for s, m in zip(labels, missing, strict=True) if m]
            keep &= ~missing
        out = out.loc[keep]
        if not len(out):
            raise ValueError(f"{source}: no subject has all of {', '.join(columns)} (policy drop)")
    else:
        for column in columns:
            missing = frame[column].isna().to_numpy()
            if not missing.any():
                continue
            present = frame[column].dropna()
            if present.empty:
                raise ValueError(f"{source}: column '{column}' has no value to impute from (all missing)")
            if pd.api.types.is_numeric_dtype(present) and not pd.api.types.is_bool_dtype(present):
                value: object = float(present.astype(float).mean())
            else:
                counts = present.astype(str).value_counts()
                best = counts[counts == counts.max()].index
                value = sorted(best)[0]
            out[column] = out[column].where(~missing, value)
            report.imputed[column] = [s for s, m in zip(labels, missing, strict=True) if m]
            report.fill_values[column] = value
    report.n_after = len(out)
    return out, report


def formula_variables(formula: str) -> list[str]:
    """Return the column names a patsy formula's right-hand side uses, in order of appearance.

    ``'{roi} ~ age + eTIV + C(sex)'`` gives ``['age', 'eTIV', 'sex']``; ``np.log(age)`` gives ``age``,
    ``Q('weird name')`` gives ``weird name``. The left-hand side (a ``{roi}`` placeholder or a column) is
    ignored.
    """
    from patsy import ModelDesc

    rhs = formula.split("~", 1)[1] if "~" in formula else formula
    try:
        desc = ModelDesc.from_formula(rhs)
    except Exception as exc:  # patsy raises PatsyError with a multi-line caret drawing
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(f"formula '{formula}': cannot be parsed ({first})") from exc
    names: list[str] = []
    for term in desc.rhs_termlist:
        for factor in term.factors:
            tree = ast.parse(factor.code, mode="eval")
            skip = set()
            for node in ast.walk(tree):
                if isinstance(node, ast.Call):
                    if isinstance(node.func, ast.Name) and node.func.id == "Q" and node.args:
                        arg = node.args[0]
                        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                            names.append(arg.value)
                    skip.add(id(node.func))
                if isinstance(node, ast.Attribute):
                    skip.add(id(node.value))
            for node in ast.walk(tree):
                if isinstance(node, ast.Name) and id(node) not in skip and node.id not in _FORMULA_FUNCTIONS:
                    names.append(node.id)
    return list(dict.fromkeys(names))


def _check_numeric_use(name: str, values: pd.Series, rhs: str, source: str) -> None:
    """A mostly numeric column used as a number (not in ``C(...)``) must hold numbers only.

    Otherwise patsy would silently turn it into a factor (``age[T.21]``, …) because of one typo.
    """
    if values.dtype != object or re.search(rf"\bC\(\s*{re.escape(name)}\b", rhs):
        return
    present = values.dropna()
    numbers = pd.to_numeric(present, errors="coerce")
    if numbers.notna().sum() * 2 < len(present):  # mostly words: a real categorical column
        return
    label, bad = next((k, v) for k, v in present[numbers.isna()].items())
    raise ValueError(
        f"{source}: column '{name}' is used as a number but holds {bad!r} (sub-{label}); fix that value, "
        f"or write C({name}) to treat the column as a category"
    )


def check_model(
    formula: str,
    frame: pd.DataFrame,
    *,
    predictor: str | None = None,
    source: str = "participants",
) -> list[str]:
    """Check that a formula can be fitted on ``frame`` and return its design-matrix column names.

    Parameters
    ----------
    formula : str
        Patsy formula; its left-hand side is ignored (``'{roi} ~ age + C(sex)'`` or ``'age + C(sex)'``).
    frame : pandas.DataFrame
        The subjects that will be fitted (after the missing-value policy).
    predictor : str, optional
        A design column or a variable that must be in the model (e.g. ``age``, or ``C(sex)[T.M]``).
    source : str
        Named in error messages.

    Returns
    -------
    list of str
        The design-matrix columns (``Intercept``, ``C(sex)[T.M]``, ``age`` …).

    Raises
    ------
    ValueError
        One line: unknown column (with a did-you-mean), a variable with no variance (a single value or a
        single category), missing values left in a used column, fewer subjects than parameters + 1, or a
        predictor that is not in the model.
    """
    from patsy import dmatrix

    variables = formula_variables(formula)
    _check_columns(frame, variables, source)
    rhs = formula.split("~", 1)[1] if "~" in formula else formula
    for name in variables:
        values = frame[name]
        _check_numeric_use(name, values, rhs, source)
        if values.isna().any():
            raise ValueError(
                f"{source}: column '{name}' has {int(values.isna().sum())} missing values; "
                "choose a missing-value policy (drop or impute)"
            )
        if values.nunique() < 2:
            only = values.iloc[0] if len(values) else "no subjects"
            only = only.item() if isinstance(only, np.generic) else only
            raise ValueError(f"{source}: predictor '{name}' has no variance (all {only!r}, n={len(values)})")
    design = dmatrix(rhs, frame, return_type="dataframe", NA_action="raise")
    columns = [str(c) for c in design.columns]
    n, p = design.shape
    if n <= p:
        raise ValueError(
            f"{source}: {n} subjects for {p} model parameters ({', '.join(columns)}); need at least {p + 1}"
        )
    rank = np.linalg.matrix_rank(design.to_numpy())
    if rank < p:
        raise ValueError(
            f"{source}: the design of '{rhs.strip()}' is rank deficient ({rank} < {p} columns: "
            f"{', '.join(columns)}); two predictors are collinear"
        )
    if predictor is not None and predictor not in columns and predictor not in variables:
        raise ValueError(
            f"formula '{formula}': predictor '{predictor}' is not in the model. "
            f"{did_you_mean(predictor, columns + variables)}"
        )
    return columns
