"""Pipeline comparison: agreement of the same ROI measure of the same subjects across pipelines.

For every ROI and every pair of pipelines (A, B), on the subjects having both values (and passing QC in every
pipeline when a QC column is given): ``n``, Pearson ``r`` (scipy), ``icc2_1`` (two-way random effects,
absolute agreement, single rater: Shrout & Fleiss ICC(2,1), McGraw & Wong ICC(A,1)), ``icc3_1`` (two-way
mixed, consistency, single rater: ICC(3,1) / ICC(C,1)), ``mean_diff`` = mean(A − B), ``sd_diff`` (ddof 1) and
the Bland–Altman 95 % limits of agreement ``loa_low``/``loa_high`` = mean_diff ∓ 1.96 sd_diff.

With the two-way ANOVA mean squares of the n × 2 table (rows: subjects, columns: pipelines),
``MSR`` (subjects), ``MSC`` (pipelines) and ``MSE`` (residual), k = 2:

- ICC(2,1) = (MSR − MSE) / (MSR + (k − 1) MSE + k (MSC − MSE) / n)
- ICC(3,1) = (MSR − MSE) / (MSR + (k − 1) MSE)

The tests check these against statsmodels' ``anova_lm`` of ``value ~ C(subject) + C(pipeline)``.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from smriflow.stats.participants import participant_label
from smriflow.stats.tables import SUBJECT_COLUMNS, read_roi_table, read_table_file, split_hemi
from smriflow.utils.atomic import atomic_write
from smriflow.utils.text import did_you_mean

__all__ = [
    "COMPARE_COLUMNS",
    "CompareResult",
    "compare_pipelines",
    "icc_two_way",
    "load_pipelines",
    "run_compare",
]

COMPARE_COLUMNS = [
    "roi", "hemi", "pipeline_a", "pipeline_b", "n", "pearson_r", "icc2_1", "icc3_1",
    "mean_diff", "sd_diff", "loa_low", "loa_high",
]  # fmt: skip
_TRUE = {"true", "1", "yes", "pass", "passed", "ok", "1.0"}
_FALSE = {"false", "0", "no", "fail", "failed", "0.0"}


def icc_two_way(values: np.ndarray) -> tuple[float, float]:
    """ICC(2,1) and ICC(3,1) of an n × k matrix (subjects × raters), from the two-way ANOVA mean squares."""
    values = np.asarray(values, dtype=float)
    n, k = values.shape
    grand = values.mean()
    ss_rows = k * ((values.mean(axis=1) - grand) ** 2).sum()
    ss_cols = n * ((values.mean(axis=0) - grand) ** 2).sum()
    ss_err = ((values - grand) ** 2).sum() - ss_rows - ss_cols
    msr = ss_rows / (n - 1)
    msc = ss_cols / (k - 1)
    mse = ss_err / ((n - 1) * (k - 1))
    icc2 = (msr - mse) / (msr + (k - 1) * mse + k * (msc - mse) / n)
    icc3 = (msr - mse) / (msr + (k - 1) * mse)
    return float(icc2), float(icc3)


@dataclass
class CompareResult:
    """What :func:`compare_pipelines` returns: ``table`` (:data:`COMPARE_COLUMNS` + ``key``), the per-pipeline
    values (``pipelines``: name → subjects × ROI keys), the QC exclusions and the written files."""

    table: pd.DataFrame
    pipelines: dict[str, pd.DataFrame]
    subjects: list[str]
    qc_excluded: list[str] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)

    def pair_values(self, key: str, a: str, b: str) -> tuple[np.ndarray, np.ndarray]:
        """The values of ROI ``key`` in pipelines ``a`` and ``b`` on the compared subjects with both."""
        va = self.pipelines[a].loc[self.subjects, key].to_numpy(dtype=float)
        vb = self.pipelines[b].loc[self.subjects, key].to_numpy(dtype=float)
        ok = np.isfinite(va) & np.isfinite(vb)
        return va[ok], vb[ok]

    def summary(self) -> str:
        """A few lines for the terminal."""
        lines = [
            f"compare: {len(self.pipelines)} pipelines ({', '.join(self.pipelines)}), "
            f"{self.table['key'].nunique()} ROIs, {len(self.subjects)} subjects"
        ]
        if self.qc_excluded:
            lines.append(f"  excluded by QC: {len(self.qc_excluded)} subjects")
        for (a, b), part in self.table.groupby(["pipeline_a", "pipeline_b"], sort=False):
            worst = part.loc[part["icc2_1"].idxmin()]
            lines.append(
                f"  {a} vs {b}: median r {part['pearson_r'].median():.3f}, median ICC(2,1) "
                f"{part['icc2_1'].median():.3f}, lowest ICC(2,1) {worst['icc2_1']:.3f} "
                f"({worst['hemi'] + ' ' if worst['hemi'] else ''}{worst['roi']})"
            )
        lines += [f"wrote {path}" for path in self.files.values()]
        return "\n".join(lines)


def _as_bool(series: pd.Series, column: str, source: str) -> pd.Series:
    text = series.astype(str).str.strip().str.lower()
    bad = ~text.isin(_TRUE | _FALSE) & series.notna()
    if bad.any():
        raise ValueError(f"{source}: --qc-column {column}: {series[bad].iloc[0]!r} is neither true nor false")
    return text.isin(_TRUE)


def load_pipelines(
    tables: list[str | Path],
    *,
    names: list[str] | None = None,
    pipeline_column: str | None = None,
    subject_column: str | None = None,
    qc_column: str | None = None,
) -> tuple[dict[str, pd.DataFrame], dict[str, pd.Series], pd.DataFrame]:
    """Read the pipelines' tables.

    Returns
    -------
    values : dict
        Pipeline → subjects × ROI keys (floats).
    qc : dict
        Pipeline → boolean QC pass per subject (empty without ``qc_column``).
    rois : pandas.DataFrame
        ``key, roi, hemi`` of the ROI keys common to all pipelines, in the first pipeline's order.
    """
    tables = [Path(t) for t in tables]
    values: dict[str, pd.DataFrame] = {}
    qc: dict[str, pd.Series] = {}
    if pipeline_column is not None:
        if len(tables) != 1:
            raise ValueError("--pipeline-column: give exactly one --table (it holds every pipeline)")
        frame = read_table_file(tables[0])
        source = str(tables[0])
        for column in (pipeline_column, qc_column, subject_column):
            if column is not None and column not in frame.columns:
                raise ValueError(f"{source}: no column '{column}'. {did_you_mean(column, frame.columns)}")
        subject = subject_column or next((c for c in SUBJECT_COLUMNS if c in frame.columns), None)
        if subject is None:
            raise ValueError(
                f"{source}: no subject column ({', '.join(SUBJECT_COLUMNS)}); give --subject-column"
            )
        roi_columns = [c for c in frame.columns if split_hemi(c)[0]]
        if not roi_columns:
            raise ValueError(f"{source}: no ROI column with a hemisphere in its name (lh_, L_, Left- …)")
        for name, part in frame.groupby(pipeline_column, sort=False):
            part = part.copy()
            part.index = pd.Index([participant_label(s) for s in part[subject]], name="participant_id")
            if part.index.duplicated().any():
                raise ValueError(
                    f"{source}: subject sub-{part.index[part.index.duplicated()][0]} twice in {name}"
                )
            numbers = part[roi_columns].apply(pd.to_numeric, errors="coerce")
            values[str(name)] = numbers.astype(float)
            if qc_column:
                qc[str(name)] = _as_bool(part[qc_column], qc_column, source)
        rois = pd.DataFrame([(c, *split_hemi(c)[::-1]) for c in roi_columns], columns=["key", "roi", "hemi"])
        rois = rois[["key", "roi", "hemi"]]
    else:
        if len(tables) < 2:
            raise ValueError("--table: give two or more tables (one per pipeline), or --pipeline-column")
        if names is not None and len(names) != len(tables):
            raise ValueError(f"--name: {len(names)} names for {len(tables)} tables")
        names = names or [t.stem for t in tables]
        if len(set(names)) != len(names):
            raise ValueError(f"--name: pipeline names must differ ({', '.join(names)}); use --name")
        rois = None
        for name, path in zip(names, tables, strict=True):
            data = read_roi_table(path)
            values[name] = data.values
            if rois is None:
                rois = data.rois[["key", "roi", "hemi"]]
            if qc_column:
                frame = read_table_file(path)
                if qc_column not in frame.columns:
                    raise ValueError(
                        f"{path}: no column '{qc_column}'. {did_you_mean(qc_column, frame.columns)}"
                    )
                subject = next((c for c in SUBJECT_COLUMNS if c in frame.columns), frame.columns[0])
                flags = _as_bool(frame[qc_column], qc_column, str(path))
                flags.index = [participant_label(s) for s in frame[subject]]
                qc[name] = flags
                values[name] = values[name].drop(columns=[qc_column], errors="ignore")
    if len(values) < 2:
        raise ValueError(f"need two or more pipelines, found {len(values)} ({', '.join(values)})")
    if (rois["hemi"] != "").any():  # demographic columns (age, sex codes) of generic tables are not ROIs
        rois = rois[rois["hemi"] != ""]
    common = [k for k in rois["key"] if all(k in v.columns for v in values.values())]
    if not common:
        raise ValueError("the pipelines' tables have no ROI column in common")
    rois = rois[rois["key"].isin(common)].reset_index(drop=True)
    return values, qc, rois


def compare_pipelines(
    values: dict[str, pd.DataFrame], rois: pd.DataFrame, qc: dict[str, pd.Series] | None = None
) -> CompareResult:
    """Per ROI and pipeline pair: n, Pearson r, ICC(2,1), ICC(3,1), mean difference, limits of agreement."""
    from scipy.stats import pearsonr

    names = list(values)
    subjects = sorted(set.intersection(*(set(v.index) for v in values.values())))
    excluded: list[str] = []
    if qc:
        passing = [s for s in subjects if all(bool(q.get(s, False)) for q in qc.values())]
        excluded = sorted(set(subjects) - set(passing))
        subjects = passing
    if len(subjects) < 3:
        raise ValueError(f"{len(subjects)} subjects in common to every pipeline (after QC); need at least 3")
    rows = []
    for key, roi, hemi in zip(rois["key"], rois["roi"], rois["hemi"], strict=True):
        for a, b in itertools.combinations(names, 2):
            va = values[a].loc[subjects, key].to_numpy(dtype=float)
            vb = values[b].loc[subjects, key].to_numpy(dtype=float)
            ok = np.isfinite(va) & np.isfinite(vb)
            va, vb = va[ok], vb[ok]
            if len(va) < 3:
                raise ValueError(f"ROI {key}: {len(va)} subjects with values in {a} and {b}; need at least 3")
            diff = va - vb
            icc2, icc3 = icc_two_way(np.column_stack([va, vb]))
            sd = float(np.std(diff, ddof=1))
            rows.append(
                {
                    "roi": roi,
                    "hemi": hemi,
                    "pipeline_a": a,
                    "pipeline_b": b,
                    "n": int(len(va)),
                    "pearson_r": float(pearsonr(va, vb).statistic),
                    "icc2_1": icc2,
                    "icc3_1": icc3,
                    "mean_diff": float(diff.mean()),
                    "sd_diff": sd,
                    "loa_low": float(diff.mean() - 1.96 * sd),
                    "loa_high": float(diff.mean() + 1.96 * sd),
                    "key": key,
                }
            )
    table = pd.DataFrame(rows)[[*COMPARE_COLUMNS, "key"]]
    return CompareResult(table=table, pipelines=values, subjects=subjects, qc_excluded=excluded)


def run_compare(
    tables: list[str | Path],
    *,
    names: list[str] | None = None,
    pipeline_column: str | None = None,
    subject_column: str | None = None,
    qc_column: str | None = None,
    figures: bool = True,
    output_dir: str | Path,
) -> CompareResult:
    """Load, :func:`compare_pipelines`, and write ``compare.tsv``, ``compare.json`` and ``figures/``."""
    values, qc, rois = load_pipelines(
        list(tables), names=names, pipeline_column=pipeline_column, subject_column=subject_column,
        qc_column=qc_column,
    )  # fmt: skip
    result = compare_pipelines(values, rois, qc)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    tsv = out / "compare.tsv"
    atomic_write(
        tsv,
        lambda tmp: result.table[COMPARE_COLUMNS].to_csv(
            tmp, sep="\t", index=False, float_format="%.10g", lineterminator="\n"
        ),
    )
    meta = {
        "pipelines": list(values),
        "n_subjects": len(result.subjects),
        "qc_column": qc_column,
        "qc_excluded": ["sub-" + s for s in result.qc_excluded],
        "tables": [str(t) for t in tables],
    }
    atomic_write(out / "compare.json", lambda tmp: Path(tmp).write_text(json.dumps(meta, indent=2) + "\n"))
    result.files = {"table": str(tsv), "json": str(out / "compare.json")}
    if figures:
        from smriflow.stats.plots import compare_figures

        result.files.update(compare_figures(result, out / "figures"))
    return result
