"""``smriflow stats vbm``: voxel-based morphometry of grey matter against participants.tsv.

The analysis is :func:`smriflow.stats.vbm.run_vbm`; the same runs as the group workflow ``vbm``
(``smriflow run vbm``). A :class:`ValueError` of the stats layer (a bad value, a map on another grid, an
unknown column) is one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from smriflow.cli._stats_common import non_negative, positive_float, probability, usage_errors
from smriflow.stats.options import MISSING

__all__ = ["add_vbm_parser", "vbm_command"]

# Literal here so that building the parser imports no nilearn; a test checks they equal smriflow.stats.vbm's.
JACOBIAN_CONVENTIONS = ("fsl", "ants")
HEIGHT_CONTROLS = ("fpr", "fdr", "bonferroni")


def add_vbm_parser(stats_subparsers: Any, common: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add ``smriflow stats vbm`` to the ``stats`` sub-commands."""
    parser = stats_subparsers.add_parser(
        "vbm",
        parents=[common],
        help="voxel-based morphometry: modulated GM, second-level GLM, thresholded z map, clusters",
        description=(
            "Voxel-based morphometry of grey matter in template space: smriflow's modulated GM maps "
            "(--derivatives, an anat_preproc output folder) or warped GM maps modulated here by their "
            "Jacobian determinants (--gm-maps, --jacobians, --jacobian-convention; both conventions are the "
            "template->subject determinant and multiply, see docs/vbm.md). Subject IDs come from the "
            "sub-<label> of each file name. Then: study template, GM mask, smoothing, nilearn's "
            "SecondLevelModel on a design from participants.tsv (intercept, dummy-coded categories), the "
            "contrast's z/t/p/effect maps, threshold_stats_img, a cluster table with atlas labels and "
            "figures, all under OUT."
        ),
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--derivatives",
        type=Path,
        metavar="DIR",
        help="anat_preproc derivatives: sub-*/anat/sub-*_space-*_label-GM_desc-modulated_probseg.nii.gz",
    )
    source.add_argument(
        "--gm-maps",
        nargs="+",
        action="extend",
        type=Path,
        metavar="FILE",
        help="warped (unmodulated) GM maps in template space, one per subject (sub-<label> in the name)",
    )
    parser.add_argument(
        "--jacobians",
        nargs="+",
        action="extend",
        type=Path,
        metavar="FILE",
        help="Jacobian determinant of each subject's mapping, on the GM maps' grid (paired by sub-<label>)",
    )
    parser.add_argument(
        "--jacobian-convention",
        choices=JACOBIAN_CONVENTIONS,
        help="who wrote the Jacobians: fsl (fnirt --jout, fslvbm's JAC_nl) or ants "
        "(CreateJacobianDeterminantImage on the forward warp); required with --gm-maps",
    )
    parser.add_argument("--participants", required=True, type=Path, metavar="TSV", help="participants.tsv")
    parser.add_argument(
        "--design", required=True, metavar="FORMULA", help="patsy right-hand side, e.g. 'age + C(sex)'"
    )
    parser.add_argument(
        "--contrast",
        required=True,
        metavar="EXPR",
        help="a design column or variable (age, sex, 'C(sex)[T.M]') or an expression of columns",
    )
    parser.add_argument(
        "--smoothing-fwhm",
        type=non_negative(float),
        default=3.0,
        metavar="MM",
        help="Gaussian smoothing FWHM in mm (default 3; 0: none)",
    )
    mask = parser.add_mutually_exclusive_group()
    mask.add_argument("--mask", type=Path, metavar="FILE", help="analysis mask (resampled to the maps' grid)")
    mask.add_argument(
        "--mask-threshold",
        type=non_negative(float),
        default=0.05,
        metavar="T",
        help="mask = mean modulated GM > T (default 0.05)",
    )
    parser.add_argument(
        "--height-control",
        choices=HEIGHT_CONTROLS,
        default="fpr",
        help="voxel-level threshold: uncorrected (fpr), FDR or Bonferroni (default fpr)",
    )
    parser.add_argument(
        "--alpha", type=probability, default=0.05, help="voxel-level error rate, two-sided (default 0.05)"
    )
    parser.add_argument(
        "--cluster-threshold",
        type=non_negative(int),
        default=50,
        metavar="VOXELS",
        help="minimum cluster size in voxels (default 50)",
    )
    parser.add_argument(
        "--resample",
        type=positive_float,
        metavar="MM",
        help="resample every map to this isotropic voxel size first (e.g. 2)",
    )
    parser.add_argument(
        "--missing",
        choices=MISSING.choices,
        help="missing covariates: drop the subject, or impute (mean / most frequent); default: an error",
    )
    parser.add_argument("--output-dir", required=True, type=Path, metavar="OUT", help="output folder")
    parser.set_defaults(handler=usage_errors(vbm_command))
    return parser


def vbm_command(args: argparse.Namespace) -> int:
    """Handle ``smriflow stats vbm``; print what was written and the strongest clusters to stderr."""
    from smriflow.cli.main import CLIError

    if args.gm_maps and (not args.jacobians or not args.jacobian_convention):
        raise CLIError(
            "smriflow stats vbm: --gm-maps needs --jacobians and --jacobian-convention (fsl or ants)"
        )
    if args.derivatives and (args.jacobians or args.jacobian_convention):
        raise CLIError(
            "smriflow stats vbm: --jacobians/--jacobian-convention go with --gm-maps "
            "(smriflow's derivatives are already modulated)"
        )
    from smriflow.stats.vbm import run_vbm

    result = run_vbm(
        derivatives=args.derivatives,
        gm_maps=args.gm_maps,
        jacobians=args.jacobians,
        jacobian_convention=args.jacobian_convention,
        participants=args.participants,
        design=args.design,
        contrast=args.contrast,
        smoothing_fwhm=args.smoothing_fwhm,
        mask=args.mask,
        mask_threshold=args.mask_threshold,
        height_control=args.height_control,
        alpha=args.alpha,
        cluster_threshold=args.cluster_threshold,
        resample_mm=args.resample,
        missing=args.missing,
        output_dir=args.output_dir,
    )
    print(_summary(result, args), file=sys.stderr)
    return 0


def _summary(result: Any, args: argparse.Namespace) -> str:
    import numpy as np
    import pandas as pd

    table = pd.read_csv(result.files["clusters"], sep="\t", dtype={"cluster_id": str})
    main = table[table["cluster_id"].str.isdigit()]
    main = main.iloc[np.argsort(-np.abs(main["peak_z"].to_numpy()), kind="stable")]
    dropped = f", dropped {', '.join(f'sub-{s}' for s in result.dropped)}" if result.dropped else ""
    lines = [
        f"vbm: {len(result.subjects)} subjects{dropped}, {result.n_voxels} mask voxels, contrast "
        f"'{args.contrast}', {args.height_control} alpha={args.alpha}: |z| > {result.threshold:.3f}, "
        f"clusters >= {args.cluster_threshold} voxels: {len(main)}",
    ]
    for row in main.head(5).itertuples(index=False):
        where = getattr(row, "aal", "")
        lines.append(
            f"  cluster {row.cluster_id}: peak z={row.peak_z:.2f} at ({row.x:g}, {row.y:g}, {row.z:g}) mm, "
            f"{row.cluster_size_mm3:.0f} mm3, {where}"
        )
    lines.append(
        f"wrote {result.files['thresholded']}, {result.files['clusters']} and more under {args.output_dir}"
    )
    return "\n".join(lines)
