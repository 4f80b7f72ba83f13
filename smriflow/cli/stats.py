"""``smriflow stats``: group statistics from ROI tables (FreeSurfer or smriflow) without writing a workflow.

``smriflow stats fs-table`` builds ``asegstats2table``/``aparcstats2table`` tables, ``smriflow stats roi``
fits one OLS per ROI, ``smriflow stats harmonize`` removes site effects (ComBat), ``smriflow stats compare``
compares pipelines. The same analyses run as group workflows
(``smriflow run roi_glm`` / ``compare_pipelines``); both call :mod:`smriflow.stats`.

Every bad value is one line on stderr and exit code 2 (a :class:`ValueError` of the stats layer becomes a
:class:`~smriflow.cli.main.CLIError`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from smriflow.cli._stats_common import non_negative, param_type, usage_errors
from smriflow.cli.stats_vbm import add_vbm_parser
from smriflow.stats.options import ALPHA, CORRECTION, MISSING

__all__ = ["add_stats_parser"]

# Literal here so that building the parser imports no pandas; tests check they equal smriflow.stats'.
APARC_MEASURES = (
    "area",
    "volume",
    "thickness",
    "thickness.T1",
    "thicknessstd",
    "meancurv",
    "gauscurv",
    "foldind",
    "curvind",
)
ASEG_MEASURES = ("volume", "Area_mm2", "nvoxels", "nvertices", "mean", "std", "max", "snr")


def add_stats_parser(subparsers: Any, common: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``stats`` command and its sub-commands (``fs-table``, ``roi``, ``compare``, …)."""
    parser = subparsers.add_parser(
        "stats",
        parents=[common],
        help="group statistics: FreeSurfer tables, ROI-wise GLM, harmonization, pipeline comparison",
        description="Group statistics from ROI tables. Run `smriflow stats COMMAND --help` for each.",
    )
    stats = parser.add_subparsers(
        title="stats commands", dest="stats_command", metavar="COMMAND", required=True
    )
    _add_fs_table(stats, common)
    _add_roi_table(stats, common)
    _add_roi(stats, common)
    _add_harmonize(stats, common)
    _add_compare(stats, common)
    # more `smriflow stats` commands register here, each with its own add_*_parser(stats, common)
    add_vbm_parser(stats, common)
    return parser


# -- fs-table ---------------------------------------------------------------------------------------------
def _add_fs_table(stats: Any, common: argparse.ArgumentParser) -> None:
    parser = stats.add_parser(
        "fs-table",
        parents=[common],
        help="FreeSurfer stats files of many subjects -> one table (as asegstats2table/aparcstats2table)",
        description=(
            "Read SUBJECTS_DIR/<subject>/stats/<stats>.stats (aseg, wmparc: volume tables; aparc, "
            "aparc.a2009s, aparc.DKTatlas, BA_exvivo…: surface tables, one hemisphere) of FreeSurfer 6/7 or "
            "FastSurfer and write the wide table of asegstats2table/aparcstats2table (same column names and "
            "values), or --format long: one row per subject, structure and measure, header measures "
            "(eTIV, MeanThickness…) included, with units (with --meas: the rows of that measure only, "
            "a table `smriflow stats roi` reads as it is)."
        ),
    )
    parser.add_argument("--subjects-dir", required=True, type=Path, metavar="DIR", help="SUBJECTS_DIR")
    parser.add_argument(
        "--subject",
        nargs="+",
        action="extend",
        metavar="S",
        help="subjects (folder names; default: every folder of DIR that has the stats file)",
    )
    parser.add_argument(
        "--stats",
        required=True,
        metavar="NAME",
        help="stats file without hemisphere and extension: aseg, wmparc, aparc, aparc.a2009s, "
        "aparc.DKTatlas, BA_exvivo, BA_exvivo.thresh, …",
    )
    parser.add_argument("--hemi", choices=("lh", "rh"), help="hemisphere (surface stats files only)")
    parser.add_argument(
        "--meas",
        metavar="MEAS",
        help=f"measure; surface: {', '.join(APARC_MEASURES)} (default thickness); "
        f"volume: {', '.join(ASEG_MEASURES)} (default volume)",
    )
    parser.add_argument(
        "--format", choices=("wide", "long"), default="wide", help="wide (FreeSurfer's) or tidy long table"
    )
    parser.add_argument("-o", "--output", required=True, type=Path, metavar="TABLE.tsv", help="output table")
    parser.set_defaults(handler=usage_errors(fs_table_command))


def fs_table_command(args: argparse.Namespace) -> int:
    """Handle ``smriflow stats fs-table``."""
    from smriflow.stats.freesurfer import collect_long_table, stats_table, write_wide_table

    if args.format == "wide":
        table = stats_table(
            args.subjects_dir, args.stats, subjects=args.subject, hemi=args.hemi, meas=args.meas
        )
        write_wide_table(table, args.output)
        what = f"{len(table)} subjects x {table.shape[1]} columns"
    else:
        table = collect_long_table(
            args.subjects_dir, args.stats, subjects=args.subject, hemi=args.hemi, meas=args.meas
        )
        args.output.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(args.output, sep="\t", index=False, na_rep="n/a")
        what = f"{len(table)} rows"
    print(f"wrote {args.output} ({what})", file=sys.stderr)
    return 0


# -- roi-table --------------------------------------------------------------------------------------------
def _add_roi_table(stats: Any, common: argparse.ArgumentParser) -> None:
    parser = stats.add_parser(
        "roi-table",
        parents=[common],
        help="any ROI tables (smriflow's per-subject volumes, FreeSurfer's) -> one wide or long table",
        description=(
            "Read ROI tables as `smriflow stats roi` reads them (smriflow's "
            "sub-<label>_atlas-<atlas>_volumes.tsv and _desc-summary_volumes.tsv, FreeSurfer's wide "
            "tables, long or generic tables) and write them as one wide table (participant_id, the ROI "
            "columns, the covariates) or one long table (participant_id, roi, hemi, measure, atlas, value)."
        ),
    )
    parser.add_argument(
        "--table", required=True, nargs="+", action="extend", type=Path, metavar="TABLE", help="ROI tables"
    )
    parser.add_argument("--format", choices=("wide", "long"), default="wide", help="output layout")
    parser.add_argument("-o", "--output", required=True, type=Path, metavar="TABLE.tsv", help="output table")
    parser.set_defaults(handler=usage_errors(roi_table_command))


def roi_table_command(args: argparse.Namespace) -> int:
    """Handle ``smriflow stats roi-table``."""
    from smriflow.stats.tables import read_roi_tables

    data = read_roi_tables(args.table)
    table = data.wide() if args.format == "wide" else data.long()
    if args.format == "long":
        table = table.assign(participant_id="sub-" + table["participant_id"])
    args.output.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.output, sep="\t", index=False, na_rep="n/a", float_format="%.10g", lineterminator="\n")
    print(f"wrote {args.output} ({len(data.values)} subjects, {data.values.shape[1]} ROIs)", file=sys.stderr)
    return 0


# -- roi --------------------------------------------------------------------------------------------------
def _add_roi(stats: Any, common: argparse.ArgumentParser) -> None:
    parser = stats.add_parser(
        "roi",
        parents=[common],
        help="one OLS per ROI (and hemisphere) from an R-style formula, with multiple-comparison correction",
        description=(
            "Fit FORMULA (e.g. '{roi} ~ age + eTIV + C(sex)') by OLS (statsmodels) for every ROI of the "
            "tables, joined with participants.tsv on the subject, and test the predictor (or contrast) "
            "across all ROIs with the chosen correction. Writes OUT/roi_glm.tsv (roi, hemi, term, coef, se, "
            "t, p, p_corrected, ci_low, ci_high, r2, r2_adj, n), OUT/missing.tsv, OUT/design.tsv and "
            "figures under OUT/figures/."
        ),
    )
    parser.add_argument(
        "--table",
        required=True,
        nargs="+",
        action="extend",
        type=Path,
        metavar="TABLE.tsv",
        help="ROI table: FreeSurfer wide (aparcstats2table/asegstats2table), smriflow's "
        "sub-<label>_atlas-<atlas>_volumes.tsv / _desc-summary_volumes.tsv, or a long table (repeatable)",
    )
    parser.add_argument("--participants", required=True, type=Path, metavar="TSV", help="participants.tsv")
    parser.add_argument(
        "--formula", required=True, metavar="FORMULA", help="patsy formula with a {roi} left-hand side"
    )
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--predictor", metavar="TERM", help="the tested term: a variable or design column")
    target.add_argument(
        "--contrast",
        metavar="EXPR",
        help="a linear contrast of design columns, e.g. 'C(sex)[T.M]' or 'age - eTIV' (statsmodels t_test)",
    )
    for option, param in (("--missing", MISSING), ("--correction", CORRECTION)):
        help_text = f"{param.doc} (default {param.default})"
        parser.add_argument(option, choices=param.choices, default=param.default, help=help_text)
    parser.add_argument(
        "--alpha",
        type=param_type(ALPHA, "alpha"),
        default=ALPHA.default,
        help=f"{ALPHA.doc}: the family-wise / FDR level (default {ALPHA.default})",
    )
    parser.add_argument(
        "--roi",
        nargs="+",
        action="extend",
        metavar="ROI",
        help="restrict to these ROI columns (default: every ROI of the tables)",
    )
    parser.add_argument(
        "--atlas",
        metavar="NAME",
        help="volume atlas to paint the t map on (desikan_killiany, destrieux, aal …; default: guessed "
        "from the table, none when it cannot be)",
    )
    parser.add_argument(
        "--harmonize",
        metavar="SITE_COLUMN",
        help="first remove the site effects of this participants column with ComBat, preserving the "
        "formula's covariates (writes OUT/harmonize/, see `smriflow stats harmonize`)",
    )
    parser.add_argument("--no-figures", action="store_true", help="write the tables only")
    parser.add_argument("--output-dir", required=True, type=Path, metavar="OUT", help="output folder")
    parser.set_defaults(handler=usage_errors(roi_command))


def roi_command(args: argparse.Namespace) -> int:
    """Handle ``smriflow stats roi``."""
    from smriflow.stats.roi_glm import run_roi_glm

    result = run_roi_glm(
        args.table,
        args.participants,
        formula=args.formula,
        predictor=args.predictor,
        contrast=args.contrast,
        missing=args.missing,
        correction=args.correction,
        alpha=args.alpha,
        rois=args.roi,
        atlas=args.atlas,
        harmonize=args.harmonize,
        figures=not args.no_figures,
        output_dir=args.output_dir,
    )
    print(result.summary(), file=sys.stderr)
    return 0


# -- harmonize --------------------------------------------------------------------------------------------
def _add_harmonize(stats: Any, common: argparse.ArgumentParser) -> None:
    parser = stats.add_parser(
        "harmonize",
        parents=[common],
        help="remove site (scanner) effects from ROI tables: ComBat, ComBat-GAM, covariates preserved",
        description=(
            "Harmonize every ROI of the tables across the sites of a participants.tsv column with ComBat "
            "(Johnson 2007; Fortin 2018 for cortical thickness): additive and multiplicative site effects "
            "are removed with empirical Bayes while the effects of the covariates (e.g. 'age + C(sex) + "
            "C(dx)') are preserved; with --smooth-terms, ComBat-GAM (Pomponio 2020) keeps a nonlinear effect "
            "of those variables. The values equal neuroHarmonize's. Writes OUT/harmonized.tsv (a table "
            "`smriflow stats roi` reads), OUT/site_variance.tsv (variance explained by site per ROI, before "
            "and after), OUT/harmonize.json and one figure per region family under OUT/figures/."
        ),
    )
    parser.add_argument(
        "--table",
        required=True,
        nargs="+",
        action="extend",
        type=Path,
        metavar="TABLE.tsv",
        help="ROI tables as `smriflow stats roi` reads them (FreeSurfer wide, smriflow, long; repeatable)",
    )
    parser.add_argument("--participants", required=True, type=Path, metavar="TSV", help="participants.tsv")
    parser.add_argument("--site", required=True, metavar="COLUMN", help="participants column of the site")
    parser.add_argument(
        "--covariates",
        default="",
        metavar="TERMS",
        help="effects to preserve, a patsy right-hand side such as 'age + C(sex) + C(dx)' (default: none)",
    )
    parser.add_argument(
        "--smooth-terms",
        nargs="+",
        action="extend",
        metavar="VAR",
        help="numeric variables preserved as smooth functions (ComBat-GAM, e.g. age)",
    )
    parser.add_argument(
        "--missing",
        choices=("drop", "impute"),
        help="what to do with missing covariates (default: a missing covariate is an error)",
    )
    parser.add_argument("--no-eb", action="store_true", help="no empirical Bayes (per-site estimates as is)")
    parser.add_argument(
        "--roi", nargs="+", action="extend", metavar="ROI", help="harmonize only these ROI columns or names"
    )
    parser.add_argument(
        "--seed", type=non_negative(int), default=0, help="seed of ComBat-GAM's cross-validation (default 0)"
    )
    parser.add_argument("--no-figures", action="store_true", help="write the tables only")
    parser.add_argument("--output-dir", required=True, type=Path, metavar="OUT", help="output folder")
    parser.set_defaults(handler=usage_errors(harmonize_command))


def harmonize_command(args: argparse.Namespace) -> int:
    """Handle ``smriflow stats harmonize``."""
    from smriflow.stats.harmonize import run_harmonize

    result = run_harmonize(
        args.table,
        args.participants,
        site=args.site,
        covariates=args.covariates,
        smooth_terms=args.smooth_terms,
        missing=args.missing,
        eb=not args.no_eb,
        rois=args.roi,
        seed=args.seed,
        figures=not args.no_figures,
        output_dir=args.output_dir,
    )
    print(result.summary(), file=sys.stderr)
    return 0


# -- compare ----------------------------------------------------------------------------------------------
def _add_compare(stats: Any, common: argparse.ArgumentParser) -> None:
    parser = stats.add_parser(
        "compare",
        parents=[common],
        help="agreement of ROI measures between pipelines (Pearson r, ICC, Bland-Altman)",
        description=(
            "Compare the same ROI measure of the same subjects from two or more pipelines: per ROI and "
            "pair, Pearson r, ICC(2,1), ICC(3,1), mean difference and 95 % limits of agreement. Give one "
            "table per pipeline (--table, repeated), or one table with a pipeline column "
            "(--pipeline-column, as the ABIDE cortical-thickness table). Writes OUT/compare.tsv and "
            "figures under OUT/figures/."
        ),
    )
    parser.add_argument(
        "--table",
        required=True,
        nargs="+",
        action="extend",
        type=Path,
        metavar="TABLE",
        help="ROI tables, one per pipeline (repeatable; or one table with --pipeline-column)",
    )
    parser.add_argument(
        "--name",
        action="append",
        metavar="NAME",
        help="pipeline name of each --table, in order (default: the file names)",
    )
    parser.add_argument(
        "--pipeline-column", metavar="COLUMN", help="one table holds every pipeline; this column names them"
    )
    parser.add_argument(
        "--subject-column", metavar="COLUMN", help="subject column (default: participant_id, SubjID, …)"
    )
    parser.add_argument(
        "--qc-column",
        metavar="COLUMN",
        help="keep only subjects for which this column is true in every pipeline (e.g. QC_pass)",
    )
    parser.add_argument("--no-figures", action="store_true", help="write the table only")
    parser.add_argument("--output-dir", required=True, type=Path, metavar="OUT", help="output folder")
    parser.set_defaults(handler=usage_errors(compare_command))


def compare_command(args: argparse.Namespace) -> int:
    """Handle ``smriflow stats compare``."""
    from smriflow.stats.compare import run_compare

    result = run_compare(
        args.table,
        names=args.name,
        pipeline_column=args.pipeline_column,
        subject_column=args.subject_column,
        qc_column=args.qc_column,
        figures=not args.no_figures,
        output_dir=args.output_dir,
    )
    print(result.summary(), file=sys.stderr)
    return 0
