"""Multi-site harmonization of ROI tables: ComBat / ComBat-GAM (:mod:`smriflow.stats.combat`) on any table.

:func:`harmonize_rois` joins the ROI values (:func:`~smriflow.stats.tables.read_roi_tables`) with
``participants.tsv``, builds the covariates to preserve from a patsy right-hand side (``'age + C(sex) +
C(dx)'``: factors become treatment dummies, as neuroCombat's ``categorical_cols``), checks the input (one
line per problem) and harmonizes every ROI. :func:`run_harmonize` also writes the harmonized table, the
share of variance explained by site before and after per ROI, and one figure per region family.
``smriflow stats roi --harmonize SITE`` calls :func:`harmonize_values` with the GLM's own covariates.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from smriflow.stats.combat import ComBatFit, combat, site_variance_share
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

__all__ = [
    "REGION_FAMILIES",
    "VARIANCE_COLUMNS",
    "HarmonizeResult",
    "harmonize_frame",
    "harmonize_rois",
    "harmonize_values",
    "region_family",
    "run_harmonize",
]

#: Desikan-Killiany (and DKT) cortical regions by lobe, as FreeSurfer's ``mri_annotation2label --lobesStrict``
#: groups them, with the cingulate and the insula apart.
REGION_FAMILIES = {
    "frontal": (
        "superiorfrontal", "rostralmiddlefrontal", "caudalmiddlefrontal", "parsopercularis",
        "parstriangularis", "parsorbitalis", "lateralorbitofrontal", "medialorbitofrontal", "precentral",
        "paracentral", "frontalpole",
    ),
    "parietal": ("superiorparietal", "inferiorparietal", "supramarginal", "postcentral", "precuneus"),
    "temporal": (
        "superiortemporal", "middletemporal", "inferiortemporal", "bankssts", "fusiform",
        "transversetemporal", "entorhinal", "temporalpole", "parahippocampal",
    ),
    "occipital": ("lateraloccipital", "lingual", "cuneus", "pericalcarine"),
    "cingulate": (
        "rostralanteriorcingulate", "caudalanteriorcingulate", "posteriorcingulate", "isthmuscingulate",
    ),
    "insula": ("insula",),
}  # fmt: skip
_FAMILY_OF = {roi: family for family, rois in REGION_FAMILIES.items() for roi in rois}
# Other atlases (Destrieux, smriflow's): a family from a word of the name, else "other".
_FAMILY_WORDS = (
    ("cingul", "cingulate"), ("insula", "insula"), ("front", "frontal"), ("orbital", "frontal"),
    ("pariet", "parietal"), ("tempor", "temporal"), ("occipit", "occipital"),
)  # fmt: skip

VARIANCE_COLUMNS = [
    "roi", "hemi", "family", "site_r2_before", "site_r2_after", "site_r2_unique_before",
    "site_r2_unique_after", "n",
]  # fmt: skip


def region_family(roi: str) -> str:
    """The lobe-level family of a ROI name without hemisphere (``'precuneus'`` → ``'parietal'``)."""
    if roi in _FAMILY_OF:
        return _FAMILY_OF[roi]
    lower = roi.lower()
    return next((family for word, family in _FAMILY_WORDS if word in lower), "other")


@dataclass
class HarmonizeResult:
    """What :func:`harmonize_rois` returns.

    Attributes
    ----------
    before, harmonized : pandas.DataFrame
        Subjects (labels) × ROI keys, the input values and the harmonized ones.
    sites : pandas.Series
        The site of each subject.
    covariates : pandas.DataFrame
        The preserved covariates' design columns (no intercept; smooth terms included).
    smooth_terms : list of str
    variance : pandas.DataFrame
        :data:`VARIANCE_COLUMNS` per ROI (plus ``key``): R² of site alone (``site_r2_*``) and the R² site
        adds to the covariates as ComBat modelled them (``site_r2_unique_*``; with ComBat-GAM the smooth
        terms' B-spline basis), before and after.
    fit : ComBatFit
    missing : MissingReport or None
    excluded : dict
        ``not_in_participants``: subjects of the tables without a row in participants.tsv.
    """

    before: pd.DataFrame
    harmonized: pd.DataFrame
    sites: pd.Series
    covariates: pd.DataFrame
    smooth_terms: list[str]
    variance: pd.DataFrame
    fit: ComBatFit
    site_column: str = "site"
    formula: str = ""
    missing: MissingReport | None = None
    excluded: dict[str, list[str]] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        """A few lines for the terminal."""
        v = self.variance
        method = "ComBat-GAM" if self.smooth_terms else "ComBat"
        counts = ", ".join(f"{s} {n}" for s, n in zip(self.fit.sites, self.fit.n_per_site, strict=True))
        lines = [
            f"harmonize: {method}{'' if self.fit.eb else ' (no empirical Bayes)'} of {v.shape[0]} ROIs, "
            f"{len(self.sites)} subjects, {len(self.fit.sites)} sites ({counts})",
            f"  preserved: {', '.join(self.covariates.columns) or 'nothing'}"
            + (f"; smooth: {', '.join(self.smooth_terms)}" if self.smooth_terms else ""),
            f"  variance explained by site beyond the covariates, median ROI: "
            f"{v['site_r2_unique_before'].median():.2%} -> {v['site_r2_unique_after'].median():.2%}; "
            f"site alone: {v['site_r2_before'].median():.2%} -> {v['site_r2_after'].median():.2%}",
        ]
        if self.missing is not None and (self.missing.dropped or self.missing.imputed):
            lines.append(self.missing.summary())
        if self.excluded.get("not_in_participants"):
            lines.append(f"  not in participants.tsv: {len(self.excluded['not_in_participants'])} subjects")
        lines += [f"wrote {path}" for path in self.files.values()]
        return "\n".join(lines)


def _check_sites(sites: pd.Series, column: str, source: str) -> None:
    missing = sites[sites.isna()]
    if len(missing):
        raise ValueError(
            f"{source}: column '{column}' has {len(missing)} missing values (sub-{missing.index[0]} …); "
            "every subject needs a site"
        )
    counts = sites.astype(str).value_counts()
    if len(counts) < 2:
        raise ValueError(
            f"{source}: column '{column}' has one site only ({counts.index[0]}); nothing to harmonize"
        )
    lonely = counts[counts < 2]
    if len(lonely):
        label = lonely.index[0]
        subject = sites[sites.astype(str) == label].index[0]
        raise ValueError(
            f"{source}: site '{label}' of column '{column}' has 1 subject (sub-{subject}); ComBat needs at "
            "least 2 per site: drop that subject or merge the site with another"
        )


def harmonize_values(
    values: pd.DataFrame,
    sites: pd.Series,
    covariates: pd.DataFrame,
    *,
    smooth: pd.DataFrame | None = None,
    eb: bool = True,
    seed: int | None = 0,
    site_column: str = "site",
    source: str = "participants",
) -> ComBatFit:
    """ComBat of a subjects × ROI frame (index: labels) with the checks that give one-line errors.

    ``covariates`` (and ``smooth``) are design columns without intercept, on the same subjects.
    """
    _check_sites(sites, site_column, source)
    bad = values.isna()
    if bad.to_numpy().any():
        subject = bad.any(axis=1).idxmax()
        key = bad.loc[subject].idxmax()
        raise ValueError(
            f"ROI tables: {int(bad.to_numpy().sum())} missing values (sub-{subject} {key} …); ComBat needs "
            "every ROI of every subject: drop those subjects or ROIs (--roi)"
        )
    constant = values.columns[values.nunique() < 2]
    if len(constant):
        raise ValueError(f"ROI {constant[0]}: the same value for every subject; nothing to harmonize")
    try:
        return combat(
            values.to_numpy(dtype=float),
            sites.astype(str).to_numpy(),
            covariates.to_numpy(dtype=float),
            smooth=None if smooth is None or not smooth.shape[1] else smooth.to_numpy(dtype=float),
            eb=eb,
            seed=seed,
        )
    except ValueError as exc:
        raise ValueError(f"{source}: {str(exc).removeprefix('ComBat: ')}") from exc


def variance_table(
    before: pd.DataFrame, after: pd.DataFrame, sites: pd.Series, covariates: pd.DataFrame, rois: pd.DataFrame
) -> pd.DataFrame:
    """:data:`VARIANCE_COLUMNS` (+ ``key``) per ROI key of ``before``; ``rois``: key, roi, hemi."""
    described = rois.set_index("key").loc[list(before.columns)]
    cov = covariates.to_numpy(dtype=float)
    r2_before, unique_before = site_variance_share(before.to_numpy(dtype=float), sites.to_numpy(), cov)
    r2_after, unique_after = site_variance_share(after.to_numpy(dtype=float), sites.to_numpy(), cov)
    return pd.DataFrame(
        {
            "roi": described["roi"].to_numpy(),
            "hemi": described["hemi"].to_numpy(),
            "family": [region_family(r) for r in described["roi"]],
            "site_r2_before": r2_before,
            "site_r2_after": r2_after,
            "site_r2_unique_before": unique_before,
            "site_r2_unique_after": unique_after,
            "n": len(before),
            "key": list(before.columns),
        }
    )


def harmonize_rois(
    data: RoiData,
    participants: pd.DataFrame,
    *,
    site: str,
    covariates: str = "",
    smooth_terms: list[str] | None = None,
    missing: str | None = None,
    eb: bool = True,
    rois: list[str] | None = None,
    seed: int | None = 0,
    participants_source: str = "participants",
) -> HarmonizeResult:
    """Harmonize the ROIs of ``data`` across the sites of ``participants[site]``.

    Parameters
    ----------
    data : RoiData
        The ROI tables; their covariates (eTIV …) join the participants.
    participants : pandas.DataFrame
        From :func:`~smriflow.stats.participants.load_participants`.
    site : str
        The participants column naming each subject's site (scanner, batch).
    covariates : str
        Patsy right-hand side of the effects to preserve, e.g. ``'age + C(sex) + C(dx)'`` ('' = none).
    smooth_terms : list of str, optional
        Numeric variables preserved as smooth functions (ComBat-GAM), e.g. ``['age']``; removed from the
        linear covariates when listed there too.
    missing : {'drop', 'impute'}, optional
        Policy for missing covariates; without one, a missing covariate is an error.
    eb : bool
        Empirical Bayes (default).
    rois : list of str, optional
        Harmonize only these ROI keys or names.
    seed : int or None
        ComBat-GAM's cross-validation seed.
    """
    smooth_terms = list(dict.fromkeys(smooth_terms or []))
    covariates = covariates.strip()
    frame = participants.join(
        data.covariates.drop(columns=[c for c in data.covariates.columns if c in participants.columns]),
        how="left",
    )
    if site not in frame.columns:
        raise ValueError(
            f"{participants_source}: no site column '{site}'. {did_you_mean(site, map(str, frame.columns))}"
        )
    variables = formula_variables(covariates) if covariates else []
    if site in variables:
        raise ValueError(f"--covariates '{covariates}': the site column '{site}' cannot be a covariate")
    table_subjects = set(data.values.index)
    not_in_participants = sorted(table_subjects - set(frame.index))
    frame = frame.loc[[s for s in frame.index if s in table_subjects]]
    if frame.empty:
        raise ValueError(f"{participants_source}: no subject in common with the ROI tables")
    report = None
    used = [*variables, *[t for t in smooth_terms if t not in variables]]
    if missing is not None and used:
        frame, report = apply_missing_policy(frame, used, missing, source=participants_source)
    for term in smooth_terms:
        if term not in frame.columns:
            raise ValueError(
                f"--smooth-terms {term}: no such column. {did_you_mean(term, map(str, frame.columns))}"
            )
        if frame[term].dtype == object or frame[term].isna().any():
            raise ValueError(f"--smooth-terms {term}: must be a number for every subject")
    if covariates:
        from patsy import dmatrix

        check_model(covariates, frame, source=participants_source)
        design = dmatrix(covariates, frame, return_type="dataframe", NA_action="raise")
        design = design.drop(columns=[c for c in design.columns if c == "Intercept"])
    else:
        design = pd.DataFrame(index=frame.index)
    linear = design.drop(columns=[c for c in design.columns if c in smooth_terms])
    smooth = frame[smooth_terms].astype(float)

    table_rois = data.rois[~data.rois["key"].isin([*used, site])]
    if rois:
        unknown = [r for r in rois if r not in set(table_rois["key"]) and r not in set(table_rois["roi"])]
        if unknown:
            raise ValueError(
                f"--roi {unknown[0]}: not in the tables. {did_you_mean(unknown[0], table_rois['key'])}"
            )
        table_rois = table_rois[table_rois["key"].isin(rois) | table_rois["roi"].isin(rois)]
    before = data.values.loc[frame.index, list(table_rois["key"])].astype(float)
    result = harmonize_frame(
        before,
        frame[site],
        linear,
        table_rois,
        smooth=smooth,
        eb=eb,
        seed=seed,
        site_column=site,
        source=participants_source,
    )
    result.formula = covariates
    result.missing = report
    result.excluded = {"not_in_participants": not_in_participants}
    return result


def harmonize_frame(
    before: pd.DataFrame,
    sites: pd.Series,
    covariates: pd.DataFrame,
    rois: pd.DataFrame,
    *,
    smooth: pd.DataFrame | None = None,
    eb: bool = True,
    seed: int | None = 0,
    site_column: str = "site",
    source: str = "participants",
) -> HarmonizeResult:
    """:func:`harmonize_values` and the variance table, as a :class:`HarmonizeResult`.

    ``before``: subjects × ROI keys; ``covariates``/``smooth``: design columns (no intercept) on the same
    subjects; ``rois``: ``key, roi, hemi`` of the keys (:attr:`RoiData.rois`).
    """
    smooth = pd.DataFrame(index=before.index) if smooth is None else smooth
    fit = harmonize_values(
        before, sites, covariates, smooth=smooth, eb=eb, seed=seed, site_column=site_column, source=source
    )
    after = pd.DataFrame(fit.harmonized, index=before.index, columns=before.columns)
    kept = pd.concat([covariates, smooth], axis=1)
    labels = sites.astype(str)
    # the share of site is measured against the covariates as ComBat modelled them (with ComBat-GAM: the
    # B-spline basis of the smooth terms, not a straight line)
    modelled = pd.DataFrame(fit.design[:, len(fit.sites) :], index=before.index)
    return HarmonizeResult(
        before=before,
        harmonized=after,
        sites=labels,
        covariates=kept,
        smooth_terms=[str(c) for c in smooth.columns],
        variance=variance_table(before, after, labels, modelled, rois),
        fit=fit,
        site_column=site_column,
    )


def _write_tsv(frame: pd.DataFrame, path: Path) -> None:
    atomic_write(
        path,
        lambda tmp: frame.to_csv(
            tmp, sep="\t", index=False, na_rep="n/a", float_format="%.10g", lineterminator="\n"
        ),
    )


def write_harmonize_outputs(result: HarmonizeResult, out: Path, *, figures: bool = True) -> dict[str, str]:
    """Write ``harmonized.tsv``, ``site_variance.tsv``, ``harmonize.json`` and the figures under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    table = result.harmonized.copy()
    table.insert(0, "participant_id", ["sub-" + s for s in table.index])
    files = {"harmonized": str(out / "harmonized.tsv"), "variance": str(out / "site_variance.tsv")}
    _write_tsv(table, Path(files["harmonized"]))
    _write_tsv(result.variance[VARIANCE_COLUMNS], Path(files["variance"]))
    v = result.variance
    meta = {
        "method": "ComBat-GAM" if result.smooth_terms else "ComBat",
        "empirical_bayes": result.fit.eb,
        "site_column": result.site_column,
        "sites": {str(s): int(n) for s, n in zip(result.fit.sites, result.fit.n_per_site, strict=True)},
        "covariates": result.formula,
        "design_columns": list(result.covariates.columns),
        "smooth_terms": result.smooth_terms,
        "n_subjects": len(result.sites),
        "n_rois": len(v),
        "median_site_r2_before": float(v["site_r2_before"].median()),
        "median_site_r2_after": float(v["site_r2_after"].median()),
        "median_site_r2_unique_before": float(v["site_r2_unique_before"].median()),
        "median_site_r2_unique_after": float(v["site_r2_unique_after"].median()),
        "not_in_participants": ["sub-" + s for s in result.excluded.get("not_in_participants", [])],
    }
    files["json"] = str(out / "harmonize.json")
    atomic_write(Path(files["json"]), lambda tmp: Path(tmp).write_text(json.dumps(meta, indent=2) + "\n"))
    if figures:
        from smriflow.stats._harmonize_plots import harmonize_figures

        files.update(harmonize_figures(result.variance, out / "figures", site=result.site_column))
    return files


def run_harmonize(
    tables: list[str | Path],
    participants: str | Path,
    *,
    site: str,
    covariates: str = "",
    smooth_terms: list[str] | None = None,
    missing: str | None = None,
    eb: bool = True,
    rois: list[str] | None = None,
    seed: int | None = 0,
    figures: bool = True,
    output_dir: str | Path,
) -> HarmonizeResult:
    """Read the tables and participants, :func:`harmonize_rois`, and write the results under ``output_dir``.

    Writes ``harmonized.tsv`` (``participant_id`` and the ROI columns under their table names: a table
    ``smriflow stats roi`` reads), ``site_variance.tsv`` (:data:`VARIANCE_COLUMNS`), ``harmonize.json``
    (method, sites and their sizes, covariates, medians) and, unless ``figures=False``,
    ``figures/harmonize_site_variance_<family>.png``.
    """
    data = read_roi_tables(list(tables))
    result = harmonize_rois(
        data,
        load_participants(participants),
        site=site,
        covariates=covariates,
        smooth_terms=smooth_terms,
        missing=missing,
        eb=eb,
        rois=rois,
        seed=seed,
        participants_source=str(participants),
    )
    result.files = write_harmonize_outputs(result, Path(output_dir), figures=figures)
    return result
