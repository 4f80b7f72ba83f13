"""ROI-wise GLM: one ordinary least-squares fit per ROI (and hemisphere), statsmodels underneath.

For every ROI column ``Y`` of the tables, ``FORMULA`` with ``{roi}`` replaced by ``Y`` is fitted with
statsmodels OLS on the subjects that have both the covariates (after the missing-value policy) and ``Y``.
The design matrix is built once by patsy from the right-hand side (as ``statsmodels.formula.api.ols`` builds
it), and subjects missing ``Y`` are dropped per ROI, as ``smf.ols`` does; the tests compare every number with
``smf.ols`` itself. The tested term is a design column (``--predictor age``; a two-level factor ``sex``
stands for its one column ``C(sex)[T.M]``) or a linear contrast (``--contrast 'C(sex)[T.M]'``, statsmodels'
``t_test`` syntax). Its p values across all ROI × hemisphere fits are corrected with statsmodels'
``multipletests`` (``bonferroni``, ``holm``, ``fdr_bh``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from smriflow.stats.options import ALPHA, CORRECTION, MISSING
from smriflow.stats.participants import (
    MissingReport,
    apply_missing_policy,
    check_model,
    formula_variables,
    load_participants,
)
from smriflow.stats.tables import RoiData, read_roi_tables
from smriflow.utils.atomic import atomic_write
from smriflow.utils.text import did_you_mean

if TYPE_CHECKING:  # pragma: no cover
    from smriflow.stats.harmonize import HarmonizeResult

__all__ = [
    "CORRECTIONS",
    "RESULT_COLUMNS",
    "RoiGlmResult",
    "corrected_threshold",
    "fit_roi_glm",
    "run_roi_glm",
]

CORRECTIONS = CORRECTION.choices  # declared in smriflow.stats.options
RESULT_COLUMNS = [
    "roi", "hemi", "term", "coef", "se", "t", "p", "p_corrected", "ci_low", "ci_high", "r2", "r2_adj", "n",
]  # fmt: skip
_Y = "roi_value_"


@dataclass
class RoiGlmResult:
    """What :func:`fit_roi_glm` returns.

    Attributes
    ----------
    table : pandas.DataFrame
        :data:`RESULT_COLUMNS`, one row per ROI (× hemisphere), in table order; plus ``key`` (the source
        column), kept out of the written TSV.
    term : str
        The tested design column or contrast.
    correction, alpha : str, float
    threshold : float
        The largest p value that the correction rejects (``alpha/m`` when none is rejected).
    design : pandas.DataFrame
        The subjects fitted and the formula's variables (after the missing-value policy).
    missing : MissingReport
    excluded : dict
        Why subjects of the tables were left out: ``not_in_participants`` (labels).
    files : dict
        Written files (by :func:`run_roi_glm`).
    harmonized : HarmonizeResult or None
        With ``harmonize``: the ComBat of the fitted ROIs (the fits used the harmonized values).
    """

    table: pd.DataFrame
    term: str
    formula: str
    correction: str
    alpha: float
    threshold: float
    design: pd.DataFrame
    missing: MissingReport
    excluded: dict[str, list[str]] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    data: RoiData | None = None
    harmonized: HarmonizeResult | None = None

    def summary(self) -> str:
        """A few lines for the terminal."""
        n_sig = int((self.table["p_corrected"] <= self.alpha).sum())
        lines = [
            f"roi_glm: {len(self.table)} fits of '{self.formula}', term {self.term}, n={len(self.design)}",
            self.missing.summary(),
        ]
        if self.harmonized is not None:
            v = self.harmonized.variance
            lines.append(
                f"harmonized across {len(self.harmonized.fit.sites)} sites of "
                f"'{self.harmonized.site_column}' (ComBat, covariates of the formula preserved): variance "
                "explained by site beyond the covariates, median ROI "
                f"{v['site_r2_unique_before'].median():.2%} -> {v['site_r2_unique_after'].median():.2%}"
            )
        if self.excluded.get("not_in_participants"):
            lines.append(f"  not in participants.tsv: {len(self.excluded['not_in_participants'])} subjects")
        if len(self.table):
            best = self.table.loc[self.table["p"].idxmin()]
            lines.append(
                f"{n_sig} of {len(self.table)} significant ({self.correction}, alpha {self.alpha}); "
                f"strongest: {best['hemi'] + ' ' if best['hemi'] else ''}{best['roi']} "
                f"t={best['t']:.3f} p={best['p']:.3g}"
            )
        lines += [f"wrote {path}" for path in self.files.values()]
        return "\n".join(lines)


def corrected_threshold(pvalues: np.ndarray, reject: np.ndarray, alpha: float) -> float:
    """The p value at or below which a test is significant after correction (``alpha/m`` if none is)."""
    if reject.any():
        return float(np.max(pvalues[reject]))
    return float(alpha / max(len(pvalues), 1))


def _resolve_term(predictor: str, columns: list[str], formula: str) -> str:
    if predictor in columns:
        return predictor
    candidates = [c for c in columns if c.startswith(f"C({predictor})[") or c.startswith(f"{predictor}[")]
    if len(candidates) == 1:
        return candidates[0]
    if len(candidates) > 1:
        raise ValueError(
            f"--predictor {predictor}: a factor with {len(candidates)} design columns "
            f"({', '.join(candidates)}); test one of them or use --contrast"
        )
    raise ValueError(
        f"--predictor {predictor}: not a term of '{formula}'. {did_you_mean(predictor, columns)}"
    )


def fit_roi_glm(
    data: RoiData,
    participants: pd.DataFrame,
    *,
    formula: str,
    predictor: str | None = None,
    contrast: str | None = None,
    missing: str = MISSING.default,
    correction: str = CORRECTION.default,
    alpha: float = ALPHA.default,
    rois: list[str] | None = None,
    harmonize: str | None = None,
    participants_source: str = "participants",
) -> RoiGlmResult:
    """Fit one OLS per ROI and test ``predictor`` (or ``contrast``) with a multiple-comparison correction.

    Parameters
    ----------
    data : RoiData
        From :func:`~smriflow.stats.tables.read_roi_tables`; its covariates (eTIV …) join the participants.
    participants : pandas.DataFrame
        From :func:`~smriflow.stats.participants.load_participants` (index: labels).
    formula : str
        ``'{roi} ~ age + eTIV + C(sex)'``: the left-hand side must be ``{roi}``.
    predictor, contrast : str
        Exactly one: a design column/variable, or a statsmodels ``t_test`` contrast of design columns.
    missing : {'drop', 'impute'}
        Policy for missing covariates (ROI values missing for one ROI only drop that subject from that fit).
    correction : {'bonferroni', 'holm', 'fdr_bh'}
    alpha : float
        Level of the correction and of the (1 - alpha) confidence intervals.
    rois : list of str, optional
        Restrict to these ROI keys (column names) or ROI names.
    harmonize : str, optional
        A participants column naming each subject's site: the fitted ROIs are first harmonized with ComBat
        (:func:`~smriflow.stats.harmonize.harmonize_frame`) preserving the formula's covariates (its design
        columns), on the subjects of the fits; every fitted ROI must then have a value for every subject.

    Returns
    -------
    RoiGlmResult
    """
    import statsmodels.api as sm
    from patsy import dmatrix
    from statsmodels.stats.multitest import multipletests

    CORRECTION.check("correction", correction)
    alpha = ALPHA.check("alpha", alpha)
    if (predictor is None) == (contrast is None):
        raise ValueError("give exactly one of --predictor and --contrast")
    lhs, tilde, rhs = formula.partition("~")
    if not tilde or lhs.strip() != "{roi}":
        raise ValueError(
            f"--formula '{formula}': the left-hand side must be {{roi}}, e.g. '{{roi}} ~ age + C(sex)'"
        )
    if not rhs.strip():
        raise ValueError(f"--formula '{formula}': no right-hand side")

    covariates = data.covariates
    clash = [c for c in covariates.columns if c in participants.columns]
    frame = participants.join(covariates.drop(columns=clash), how="left")
    variables = formula_variables(formula)
    in_tables = data.values.index
    not_in_participants = sorted(set(in_tables) - set(frame.index))
    in_table_set = set(in_tables)
    frame = frame.loc[[s for s in frame.index if s in in_table_set]]
    if frame.empty:
        raise ValueError(
            f"{participants_source}: no subject in common with the ROI tables "
            f"(tables: sub-{in_tables[0] if len(in_tables) else '?'} …; participants: "
            f"sub-{participants.index[0] if len(participants) else '?'} …)"
        )
    if harmonize is not None:
        if harmonize not in frame.columns:
            hint = did_you_mean(harmonize, map(str, frame.columns))
            raise ValueError(f"--harmonize {harmonize}: no such column in {participants_source}. {hint}")
        if harmonize in variables:
            raise ValueError(
                f"--harmonize {harmonize}: the site column is also a term of '{formula}'; "
                "remove it from the formula (harmonization removes the site effects)"
            )
    frame, report = apply_missing_policy(frame, variables, missing, source=participants_source)
    columns = check_model(formula, frame, source=participants_source)
    term = contrast if contrast is not None else _resolve_term(predictor, columns, formula)
    design = dmatrix(rhs, frame, return_type="dataframe", NA_action="raise")

    table_rois = data.rois
    if rois:
        wanted = set(rois)
        unknown = [r for r in rois if r not in set(table_rois["key"]) and r not in set(table_rois["roi"])]
        if unknown:
            raise ValueError(
                f"--roi {unknown[0]}: not in the tables. {did_you_mean(unknown[0], table_rois['key'])}"
            )
        table_rois = table_rois[table_rois["key"].isin(wanted) | table_rois["roi"].isin(wanted)]
    table_rois = table_rois[~table_rois["key"].isin(variables)]  # never regress a covariate on itself
    harmonized = None
    if harmonize is not None and len(table_rois):
        from smriflow.stats.harmonize import harmonize_frame

        before = data.values.loc[design.index, list(table_rois["key"])].astype(float)
        harmonized = harmonize_frame(
            before,
            frame[harmonize],
            design.drop(columns=[c for c in design.columns if c == "Intercept"]),
            table_rois,
            site_column=harmonize,
            source=participants_source,
        )
        harmonized.formula = rhs.strip()
        values = data.values.copy()
        values.loc[design.index, list(table_rois["key"])] = harmonized.harmonized
        data = RoiData(values=values, rois=data.rois, covariates=data.covariates, sources=data.sources)

    rows = []
    for key, roi, hemi in zip(table_rois["key"], table_rois["roi"], table_rois["hemi"], strict=True):
        y = data.values.loc[design.index, key]
        keep = y.notna().to_numpy()
        if keep.sum() <= design.shape[1]:
            raise ValueError(
                f"ROI {key}: {int(keep.sum())} subjects with a value for {design.shape[1]} parameters"
            )
        fit = sm.OLS(y[keep].astype(float), design.loc[keep]).fit()
        test = fit.t_test(term)
        ci_low, ci_high = np.asarray(test.conf_int(alpha=alpha)).ravel()[:2]
        rows.append(
            {
                "roi": roi,
                "hemi": hemi,
                "term": term,
                "coef": float(np.ravel(test.effect)[0]),
                "se": float(np.ravel(test.sd)[0]),
                "t": float(np.ravel(test.tvalue)[0]),
                "p": float(np.ravel(test.pvalue)[0]),
                "ci_low": float(ci_low),
                "ci_high": float(ci_high),
                "r2": float(fit.rsquared),
                "r2_adj": float(fit.rsquared_adj),
                "n": int(fit.nobs),
                "key": key,
            }
        )
    if not rows:
        raise ValueError("no ROI left to fit (every ROI column is a covariate of the formula)")
    table = pd.DataFrame(rows)
    reject, p_corrected, _, _ = multipletests(table["p"].to_numpy(), alpha=alpha, method=correction)
    table["p_corrected"] = p_corrected
    table = table[[*RESULT_COLUMNS, "key"]]
    threshold = corrected_threshold(table["p"].to_numpy(), reject, alpha)
    used = frame[variables].copy()
    return RoiGlmResult(
        table=table,
        term=term,
        formula=formula,
        correction=correction,
        alpha=alpha,
        threshold=threshold,
        design=used,
        missing=report,
        excluded={"not_in_participants": not_in_participants},
        data=data,
        harmonized=harmonized,
    )


def _write_tsv(frame: pd.DataFrame, path: Path) -> None:
    atomic_write(
        path,
        lambda tmp: frame.to_csv(
            tmp, sep="\t", index=False, na_rep="n/a", float_format="%.10g", lineterminator="\n"
        ),
    )


def run_roi_glm(
    tables: list[str | Path],
    participants: str | Path,
    *,
    formula: str,
    predictor: str | None = None,
    contrast: str | None = None,
    missing: str = MISSING.default,
    correction: str = CORRECTION.default,
    alpha: float = ALPHA.default,
    rois: list[str] | None = None,
    atlas: str | None = None,
    harmonize: str | None = None,
    figures: bool = True,
    output_dir: str | Path,
) -> RoiGlmResult:
    """Read the tables and participants, :func:`fit_roi_glm`, and write the results under ``output_dir``.

    Writes ``roi_glm.tsv`` (:data:`RESULT_COLUMNS`, floats with 10 significant digits), ``missing.tsv``
    (dropped/imputed subjects per column), ``design.tsv`` (the fitted subjects and variables),
    ``roi_glm.json`` (formula, term, correction, threshold, counts) and, unless ``figures=False``,
    ``figures/`` (see :mod:`smriflow.stats.plots`). With ``harmonize``, also ``harmonize/`` (the harmonized
    values, the site variance before/after and its figures, see
    :func:`~smriflow.stats.harmonize.run_harmonize`). Identical inputs give byte-identical files.
    """
    data = read_roi_tables(list(tables))
    frame = load_participants(participants)
    result = fit_roi_glm(
        data,
        frame,
        formula=formula,
        predictor=predictor,
        contrast=contrast,
        missing=missing,
        correction=correction,
        alpha=alpha,
        rois=rois,
        harmonize=harmonize,
        participants_source=str(participants),
    )
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    _write_tsv(result.table[RESULT_COLUMNS], out / "roi_glm.tsv")
    _write_tsv(result.missing.to_frame(), out / "missing.tsv")
    _write_tsv(
        result.design.rename_axis("participant_id")
        .reset_index()
        .assign(participant_id=lambda f: "sub-" + f["participant_id"]),
        out / "design.tsv",
    )
    meta = {
        "formula": formula,
        "term": result.term,
        "correction": correction,
        "alpha": alpha,
        "corrected_threshold": result.threshold,
        "n_tests": len(result.table),
        "n_significant": int((result.table["p_corrected"] <= alpha).sum()),
        "n_subjects": len(result.design),
        "missing_policy": missing,
        "not_in_participants": ["sub-" + s for s in result.excluded["not_in_participants"]],
        "tables": [str(t) for t in tables],
        "participants": str(participants),
    }
    if harmonize is not None:
        meta["harmonize"] = harmonize
    atomic_write(out / "roi_glm.json", lambda tmp: Path(tmp).write_text(json.dumps(meta, indent=2) + "\n"))
    result.files = {
        "table": str(out / "roi_glm.tsv"),
        "missing": str(out / "missing.tsv"),
        "design": str(out / "design.tsv"),
        "json": str(out / "roi_glm.json"),
    }
    if result.harmonized is not None:
        from smriflow.stats.harmonize import write_harmonize_outputs

        written = write_harmonize_outputs(result.harmonized, out / "harmonize", figures=figures)
        result.files.update({f"harmonize_{k}": v for k, v in written.items()})
    if figures:
        from smriflow.stats.plots import roi_glm_figures

        result.files.update(roi_glm_figures(result, out / "figures", predictor=predictor, atlas=atlas))
    return result
