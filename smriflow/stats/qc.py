"""Group quality control: one table of every image's IQMs, robust z-scores, and a flag with its reasons.

* :func:`collect_iqms` reads every ``*_desc-iqms_T1w.json`` under a derivatives folder.
* :func:`robust_z` scores each IQM against the group: ``z = (x - median) / s`` with
  ``s = max(1.4826 MAD, floor * |median|)`` (the "modified z-score" of Iglewicz and Hoaglin 1993, where
  1.4826 MAD estimates the standard deviation of normal data). The floor (default 5 % of the median)
  keeps a handful of similar images, whose MAD can be nearly 0, from turning differences of a few percent
  into huge z-scores; when the scale is still 0 it is ``1.2533 * mean |x - median|``, and when that is 0
  too (all values equal) every z is 0.
* :func:`group_qc` adds ``qc_flag`` and ``qc_reasons`` by the rules of :class:`QCRules`.

Pure pandas/numpy (no nipype); the rules and an example are in ``docs/qc.md``.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from smriflow.stats.options import QCRules  # the thresholds, declared once there

__all__ = ["ID_COLUMNS", "IQM_PATTERN", "QCRules", "collect_iqms", "group_qc", "robust_z", "write_table"]

#: File names that :func:`collect_iqms` reads.
IQM_PATTERN = "*_desc-iqms_T1w.json"
#: Identifier columns, first in the table (``acquisition``/``reconstruction``/``run`` only when present).
ID_COLUMNS = ("subject", "session", "acquisition", "reconstruction", "run")
_ENTITY_KEYS = {
    "sub": "subject",
    "ses": "session",
    "acq": "acquisition",
    "rec": "reconstruction",
    "run": "run",
}
_MAD_TO_SD = 1.4826  # 1 / Phi^-1(3/4)
_MEANAD_TO_SD = 1.2533  # sqrt(pi / 2)
#: IQMs left out of the robust-z rule: voxel counts and component counts follow the grid, not quality.
NOT_SCORED = re.compile(r"^(summary_\w+_n|mask_n_components)$")


def _entities(name: str) -> dict[str, str]:
    found = {}
    for part in name.split("_")[:-1]:
        key, _, value = part.partition("-")
        if key in _ENTITY_KEYS and value:
            found[_ENTITY_KEYS[key]] = value
    return found


def collect_iqms(derivatives_dir: str | os.PathLike) -> pd.DataFrame:
    """Read every ``*_desc-iqms_T1w.json`` under ``derivatives_dir`` into one table.

    Parameters
    ----------
    derivatives_dir : path
        A smriflow derivatives folder (searched recursively; hidden and ``logs`` folders are skipped).

    Returns
    -------
    pandas.DataFrame
        One row per file, sorted by subject then session: ``subject``, ``session`` (empty when the
        dataset has no sessions), ``acquisition``/``reconstruction``/``run`` when a file name has them,
        then every IQM (sorted by name; NaN where a file lacks one).

    Raises
    ------
    ValueError
        The folder does not exist, holds no IQM file, or a file is not a JSON object of numbers.
    """
    root = Path(derivatives_dir)
    if not root.is_dir():
        raise ValueError(f"{root}: the derivatives folder does not exist")
    files = sorted(
        path
        for path in root.rglob(IQM_PATTERN)
        if not any(part.startswith(".") or part == "logs" for part in path.relative_to(root).parts)
    )
    if not files:
        raise ValueError(f"{root}: no {IQM_PATTERN} file found (run anat_preproc into this folder first)")
    rows = []
    for path in files:
        try:
            values = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ValueError(f"{path}: cannot read the IQMs ({exc})") from None
        if isinstance(values, dict):
            values.pop("notes", None)  # why a null (undefined) metric is undefined: not a number
        if not isinstance(values, dict) or not all(
            v is None or (isinstance(v, int | float) and not isinstance(v, bool)) for v in values.values()
        ):
            raise ValueError(f"{path}: expected a JSON object of numbers (IQM name -> value)")
        entities = _entities(path.name)
        if "subject" not in entities:
            raise ValueError(f"{path}: the file name has no sub-<label> entity")
        rows.append(
            {"session": "", **entities, **{k: math.nan if v is None else float(v) for k, v in values.items()}}
        )
    table = pd.DataFrame(rows)
    ids = [col for col in ID_COLUMNS if col in table.columns]
    for col in ids:
        table[col] = table[col].fillna("").astype(str)
    iqms = sorted(col for col in table.columns if col not in ids)
    table = table[ids + iqms].sort_values(ids, kind="stable").reset_index(drop=True)
    duplicated = table.duplicated(ids)
    if duplicated.any():
        first = table.loc[duplicated, ids].iloc[0].to_dict()
        raise ValueError(f"{root}: two IQM files for the same image {first}")
    return table


def robust_z(values: pd.Series | np.ndarray, scale_floor: float = 0.0) -> np.ndarray:
    """Robust z-score of each value against the others: ``(x - median) / max(1.4826 MAD, floor |median|)``.

    NaNs are ignored in the median and MAD, and stay NaN. When the scale is 0 it is
    ``1.2533 * mean(|x - median|)``; when that is 0 as well every (finite) z is 0.

    Parameters
    ----------
    values : array-like
        One IQM over the group.
    scale_floor : float
        Smallest scale, as a fraction of ``|median|`` (0: the plain modified z-score).

    Examples
    --------
    >>> robust_z([1.0, 2.0, 3.0, 4.0, 100.0]).round(2).tolist()
    [-1.35, -0.67, 0.0, 0.67, 65.41]
    """
    x = np.asarray(values, dtype=np.float64)
    finite = x[np.isfinite(x)]
    if finite.size == 0:
        return np.full(x.shape, np.nan)
    median = np.median(finite)
    deviation = np.abs(finite - median)
    scale = max(_MAD_TO_SD * np.median(deviation), scale_floor * abs(median))
    if scale == 0:
        scale = _MEANAD_TO_SD * deviation.mean()
    if scale == 0:
        return np.where(np.isfinite(x), 0.0, np.nan)
    return (x - median) / scale


def _fmt(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"


def group_qc(table: pd.DataFrame, rules: QCRules | None = None) -> pd.DataFrame:
    """Add ``qc_flag`` (bool) and ``qc_reasons`` (``; ``-separated, readable) to a table of IQMs.

    A row is flagged when any of these holds (each adds one reason):

    * ``volume_brain_cm3`` outside [``brain_volume_min``, ``brain_volume_max``]:
      ``brain volume 512 cm³ below 800 cm³``;
    * ``volume_mask_cm3`` is 0: ``empty brain mask``;
    * ``mask_lcc_fraction`` below ``lcc_min``: ``fragmented brain mask: largest component 93.1% of the mask
      (3 components)``;
    * ``reg_ncc`` below ``ncc_min`` or ``reg_dice`` below ``dice_min``:
      ``low registration similarity: NCC 0.41 below 0.6``;
    * with at least ``min_subjects`` rows, a robust ``|z|`` (with ``scale_floor``) above ``z_threshold``
      on any IQM except the voxel and component counts: ``cjv 0.62 (robust z +8.1)``, listed from the
      largest ``|z|``.

    Parameters
    ----------
    table : pandas.DataFrame
        As returned by :func:`collect_iqms`.
    rules : QCRules, optional
        Thresholds; the defaults of :class:`QCRules` when None.

    Returns
    -------
    pandas.DataFrame
        A copy of ``table`` with the two columns appended.
    """
    rules = QCRules() if rules is None else rules
    out = table.copy()
    ids = [col for col in ID_COLUMNS if col in out.columns]
    iqms = [col for col in out.columns if col not in ids and col not in ("qc_flag", "qc_reasons")]
    reasons: list[list[str]] = [[] for _ in range(len(out))]

    def fixed(column: str, test, message) -> None:
        if column not in out.columns:
            return
        for i, value in enumerate(out[column].to_numpy(dtype=np.float64)):
            if math.isfinite(value) and test(value):
                reasons[i].append(message(value))

    fixed("volume_mask_cm3", lambda v: v <= 0, lambda v: "empty brain mask")
    fixed(
        "volume_brain_cm3",
        lambda v: v < rules.brain_volume_min,
        lambda v: f"brain volume {v:.0f} cm³ below {rules.brain_volume_min:g} cm³",
    )
    fixed(
        "volume_brain_cm3",
        lambda v: v > rules.brain_volume_max,
        lambda v: f"brain volume {v:.0f} cm³ above {rules.brain_volume_max:g} cm³",
    )
    if "mask_lcc_fraction" in out.columns:
        counts = out["mask_n_components"] if "mask_n_components" in out.columns else None
        for i, value in enumerate(out["mask_lcc_fraction"].to_numpy(dtype=np.float64)):
            if math.isfinite(value) and 0 < value < rules.lcc_min:
                extra = f" ({int(counts.iloc[i])} components)" if counts is not None else ""
                reasons[i].append(
                    f"fragmented brain mask: largest component {100 * value:.1f}% of the mask{extra}"
                )
    fixed(
        "reg_ncc",
        lambda v: v < rules.ncc_min,
        lambda v: f"low registration similarity: NCC {v:.3f} below {rules.ncc_min:g}",
    )
    fixed(
        "reg_dice",
        lambda v: v < rules.dice_min,
        lambda v: f"low registration overlap: brain-mask Dice {v:.3f} below {rules.dice_min:g}",
    )
    if len(out) >= rules.min_subjects:
        scored = [col for col in iqms if not NOT_SCORED.match(col)]
        z = (
            np.column_stack([robust_z(out[col], rules.scale_floor) for col in scored])
            if scored
            else np.empty((len(out), 0))
        )
        for i in range(len(out)):
            row = z[i]
            hits = [j for j in np.argsort(-np.abs(np.nan_to_num(row))) if abs(row[j]) > rules.z_threshold]
            for j in hits:
                value = float(out[scored[j]].iloc[i])
                reasons[i].append(f"{scored[j]} {_fmt(value)} (robust z {row[j]:+.1f})")
    out["qc_flag"] = [bool(r) for r in reasons]
    out["qc_reasons"] = ["; ".join(r) for r in reasons]
    return out


def write_table(table: pd.DataFrame, path: str | os.PathLike) -> str:
    """Write the group table as TSV (``n/a`` for missing values, booleans as ``true``/``false``)."""
    out = table.copy()
    if "qc_flag" in out.columns:
        out["qc_flag"] = out["qc_flag"].map({True: "true", False: "false"})
    out.to_csv(path, sep="\t", index=False, na_rep="n/a", float_format="%.6g")
    return str(path)
