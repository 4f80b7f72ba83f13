"""FreeSurfer / FastSurfer ``*.stats`` files: parsing, tidy long tables and FreeSurfer's wide tables.

:func:`read_stats` reads any ``mri_segstats`` (``aseg.stats``, ``wmparc.stats``, FastSurfer's
``aseg+DKT.stats``) or ``mris_anatomical_stats`` file (``?h.aparc*.stats``, ``?h.BA_exvivo*.stats``): the
``# Measure`` header lines (name, description, value, units), the ``# TableCol`` units and every table column.

:func:`stats_table` reproduces ``aparcstats2table`` / ``asegstats2table`` (FreeSurfer 6/7, default options):

- surface files (``--hemi`` and ``--meas``): the first header cell is ``<hemi>.<parc>.<meas>``, ROI columns
  are ``<hemi>_<struct>_<meas>``, then the header measures in file order: ``<hemi>_MeanThickness_thickness``
  (``--meas thickness`` only), ``<hemi>_WhiteSurfArea_area`` (``--meas area`` only), ``BrainSegVolNotVent``
  and ``eTIV`` (no prefix). Structures missing for a subject are 0.0 (the union of structures, in order of
  appearance, as ``aparcstats2table`` without ``--common-parcs``).
- volume files (``--meas volume|mean|…``): the first header cell is ``Measure:<meas>``, columns are structure
  names, and for ``volume`` the global volumes of the header (``BrainSegVol``, ``lhCortexVol``, …,
  ``EstimatedTotalIntraCranialVol``) in file order, as FreeSurfer's ``AsegStatsParser`` lists them. Differing
  structure sets give their union with 0.0 (``asegstats2table --all-segs``; without it FreeSurfer stops).
- values are written as Python prints a float (``'%s' % value``: ``2.09``, ``1235952.0``), as FreeSurfer does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from smriflow.utils.atomic import atomic_write

__all__ = [
    "APARC_MEASURES",
    "ASEG_EXTRAS",
    "ASEG_MEASURES",
    "StatsFile",
    "collect_long_table",
    "find_stats_files",
    "long_table",
    "read_stats",
    "stats_table",
    "write_wide_table",
]

#: ``aparcstats2table --meas`` → 0-based column of the whitespace-split table row (as FreeSurfer indexes it).
APARC_MEASURES = {
    "area": 2,
    "volume": 3,
    "thickness": 4,
    "thickness.T1": 4,
    "thicknessstd": 5,
    "meancurv": 6,
    "gauscurv": 7,
    "foldind": 8,
    "curvind": 9,
}
#: ``asegstats2table --meas`` → 0-based column of the table row.
ASEG_MEASURES = {
    "volume": 3,
    "Area_mm2": 3,
    "nvoxels": 2,
    "nvertices": 2,
    "mean": 5,
    "std": 6,
    "max": 8,
    "snr": 10,
}
#: ``asegstats2table --meas volume``: the ``# Measure <struct>, <key>,`` lines kept, and their column names.
ASEG_EXTRAS = {
    ("lhCortex", "lhCortexVol"): "lhCortexVol",
    ("rhCortex", "rhCortexVol"): "rhCortexVol",
    ("Cortex", "CortexVol"): "CortexVol",
    ("lhCorticalWhiteMatter", "lhCorticalWhiteMatterVol"): "lhCorticalWhiteMatterVol",
    ("rhCorticalWhiteMatter", "rhCorticalWhiteMatterVol"): "rhCorticalWhiteMatterVol",
    ("CorticalWhiteMatter", "CorticalWhiteMatterVol"): "CorticalWhiteMatterVol",
    ("lhCerebralWhiteMatter", "lhCerebralWhiteMatterVol"): "lhCerebralWhiteMatterVol",
    ("rhCerebralWhiteMatter", "rhCerebralWhiteMatterVol"): "rhCerebralWhiteMatterVol",
    ("CerebralWhiteMatter", "CerebralWhiteMatterVol"): "CerebralWhiteMatterVol",
    ("SubCortGray", "SubCortGrayVol"): "SubCortGrayVol",
    ("TotalGray", "TotalGrayVol"): "TotalGrayVol",
    ("SuperTentorial", "SuperTentorialVol"): "SuperTentorialVol",
    ("SupraTentorial", "SupraTentorialVol"): "SupraTentorialVol",
    ("SupraTentorialNotVent", "SupraTentorialVolNotVent"): "SupraTentorialVolNotVent",
    ("SupraTentorialNotVentVox", "SupraTentorialVolNotVentVox"): "SupraTentorialVolNotVentVox",
    ("IntraCranialVol", "ICV"): "IntraCranialVol",
    ("EstimatedTotalIntraCranialVol", "eTIV"): "EstimatedTotalIntraCranialVol",
    ("Mask", "MaskVol"): "MaskVol",
    ("BrainVol-to-eTIV", "BrainVol-to-eTIV"): "BrainVol-to-eTIV",
    ("BrainSegVol-to-eTIV", "BrainSegVol-to-eTIV"): "BrainSegVol-to-eTIV",
    ("MaskVol-to-eTIV", "MaskVol-to-eTIV"): "MaskVol-to-eTIV",
    ("lhSurfaceHoles", "lhSurfaceHoles"): "lhSurfaceHoles",
    ("rhSurfaceHoles", "rhSurfaceHoles"): "rhSurfaceHoles",
    ("SurfaceHoles", "SurfaceHoles"): "SurfaceHoles",
    ("BrainSeg", "BrainSegVol"): "BrainSegVol",
    ("BrainSegNotVent", "BrainSegVolNotVent"): "BrainSegVolNotVent",
    ("BrainSegNotVentSurf", "BrainSegVolNotVentSurf"): "BrainSegVolNotVentSurf",
}
# aparcstats2table: header measures appended to every table, or for one --meas only (column name = key).
_APARC_EXTRAS = {
    ("EstimatedTotalIntraCranialVol", "eTIV"): None,
    ("BrainSegNotVent", "BrainSegVolNotVent"): None,
    ("Cortex", "WhiteSurfArea"): "area",
    ("Cortex", "MeanThickness"): "thickness",
}
_UNPREFIXED = ("eTIV", "BrainSegVolNotVent")


@dataclass
class Measure:
    """One ``# Measure`` header line."""

    structure: str
    name: str
    description: str
    value: float
    units: str


@dataclass
class StatsFile:
    """A parsed FreeSurfer stats file.

    Attributes
    ----------
    path : Path
    kind : {'surface', 'volume'}
        ``mris_anatomical_stats`` (first column StructName) or ``mri_segstats`` (Index, SegId, …).
    hemi : str
        ``lh``/``rh`` for surface files (``# hemi`` line or file name), else ``''``.
    subject : str
        ``# subjectname`` when present, else ''.
    measures : list of Measure
        The ``# Measure`` lines, in file order.
    columns : list of str
        ``# ColHeaders``.
    units : dict
        Column → units (``# TableCol N Units``), ``NA`` for names and indices.
    rows : list of list of str
        The table rows, split on white space (as FreeSurfer splits them).
    """

    path: Path
    kind: str
    hemi: str = ""
    subject: str = ""
    measures: list[Measure] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)
    units: dict[str, str] = field(default_factory=dict)
    rows: list[list[str]] = field(default_factory=list)

    def table(self) -> pd.DataFrame:
        """The table as a frame: numeric columns as floats, StructName as strings."""
        frame = pd.DataFrame(self.rows, columns=self.columns)
        for column in frame.columns:
            if column != "StructName":
                frame[column] = pd.to_numeric(frame[column])
        return frame


def _parse_measure(line: str, path: Path, number: int) -> Measure:
    parts = [p.strip() for p in line[len("# Measure") :].split(",")]
    if len(parts) == 5:
        structure, name, description, value, units = parts
    elif len(parts) == 4:  # FreeSurfer 6 writes "Cortex, CortexVol Total cortical gray matter volume, …"
        structure, key_description, value, units = parts
        name, _, description = key_description.partition(" ")
    else:
        raise ValueError(f"{path}:{number}: malformed '# Measure' line ({len(parts)} fields, expected 5)")
    try:
        number_value = float(value)
    except ValueError as exc:
        raise ValueError(
            f"{path}:{number}: '# Measure {structure}, {name}' has no number ({value!r})"
        ) from exc
    return Measure(structure, name, description, number_value, units)


def read_stats(path: str | Path) -> StatsFile:
    """Parse one FreeSurfer or FastSurfer stats file.

    Raises
    ------
    ValueError
        One line naming the file: missing, no ``# ColHeaders`` line, a malformed ``# Measure`` line, a row
        whose number of fields differs from the header's.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: stats file not found")
    stats = StatsFile(path=path, kind="volume")
    col_units: dict[int, str] = {}
    col_names: dict[int, str] = {}
    for number, raw in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        line = raw.rstrip()
        if not line.strip():
            continue
        if "#" in line:  # FreeSurfer: a line holding '#' is not a table row
            body = line.lstrip("#").strip()
            if line.startswith("# Measure"):
                stats.measures.append(_parse_measure(line, path, number))
            elif body.startswith("ColHeaders"):
                stats.columns = body.split()[1:]
            elif body.startswith("TableCol"):
                fields = body.split(None, 3)
                if len(fields) >= 4 and fields[1].isdigit():
                    if fields[2] == "Units":
                        col_units[int(fields[1])] = fields[3].strip()
                    elif fields[2] == "ColHeader":
                        col_names[int(fields[1])] = fields[3].strip()
            elif body.startswith("hemi "):
                stats.hemi = body.split()[1]
            elif body.startswith("subjectname "):
                stats.subject = body.split()[1]
            continue
        stats.rows.append(line.split())
    if not stats.columns:
        raise ValueError(f"{path}: not a FreeSurfer stats table (no '# ColHeaders' line)")
    for offset, row in enumerate(stats.rows):
        if len(row) != len(stats.columns):
            raise ValueError(
                f"{path}: table row {offset + 1} has {len(row)} fields, "
                f"'# ColHeaders' has {len(stats.columns)}"
            )
    stats.kind = "surface" if stats.columns[0] == "StructName" else "volume"
    if stats.kind == "surface" and not stats.hemi:
        match = re.match(r"^(lh|rh)\.", path.name)
        stats.hemi = match.group(1) if match else ""
    stats.units = {col_names.get(i, c): col_units.get(i, "NA") for i, c in enumerate(stats.columns, start=1)}
    stats.units = {c: stats.units.get(c, "NA") for c in stats.columns}
    return stats


def long_table(stats: StatsFile, subject: str) -> pd.DataFrame:
    """Tidy table of one stats file: every header measure and every numeric table cell, with units.

    Columns: ``participant_id, stats, hemi, roi, seg_id, measure, value, units, section`` where ``stats`` is
    the file name without hemisphere and extension (``aparc``, ``aseg``), ``section`` is ``header`` (the
    ``# Measure`` lines: roi = their structure, e.g. ``Cortex``, measure = their key, e.g. ``MeanThickness``)
    or ``table``.
    """
    name = re.sub(r"^(lh|rh)\.", "", stats.path.name)
    name = name[: -len(".stats")] if name.endswith(".stats") else name
    rows = [
        (subject, name, stats.hemi, m.structure, pd.NA, m.name, m.value, m.units, "header")
        for m in stats.measures
    ]
    table = stats.table()
    roi_column = "StructName"
    skip = {"StructName", "Index", "SegId"}
    for record in table.to_dict("records"):
        seg_id = record.get("SegId", pd.NA)
        for column in stats.columns:
            if column in skip:
                continue
            rows.append(
                (
                    subject,
                    name,
                    stats.hemi,
                    record[roi_column],
                    seg_id,
                    column,
                    float(record[column]),
                    stats.units.get(column, "NA"),
                    "table",
                )
            )
    columns = ["participant_id", "stats", "hemi", "roi", "seg_id", "measure", "value", "units", "section"]
    frame = pd.DataFrame(rows, columns=columns)
    frame["seg_id"] = frame["seg_id"].astype("Int64")
    return frame


def find_stats_files(
    subjects_dir: str | Path, stats: str, *, subjects: list[str] | None = None, hemi: str | None = None
) -> list[tuple[str, Path]]:
    """Return ``(subject, path)`` of ``SUBJECTS_DIR/<subject>/stats/[<hemi>.]<stats>.stats``.

    Without ``subjects``, every sub-folder holding the file, sorted. Raises ValueError naming the missing file
    or the missing ``--hemi`` for a surface stats file.
    """
    subjects_dir = Path(subjects_dir)
    if not subjects_dir.is_dir():
        raise ValueError(f"--subjects-dir {subjects_dir}: not a folder")
    stats = stats[: -len(".stats")] if stats.endswith(".stats") else stats
    filename = f"{hemi}.{stats}.stats" if hemi else f"{stats}.stats"
    if subjects is None:
        subjects = sorted(p.name for p in subjects_dir.iterdir() if (p / "stats" / filename).is_file())
        if not subjects:
            surface = any(subjects_dir.glob(f"*/stats/lh.{stats}.stats"))
            if surface and not hemi:
                raise ValueError(
                    f"--stats {stats}: a surface stats file (lh.{stats}.stats): give --hemi lh or rh"
                )
            raise ValueError(f"--subjects-dir {subjects_dir}: no subject has stats/{filename}")
    found = []
    for subject in subjects:
        path = subjects_dir / subject / "stats" / filename
        if not path.is_file():
            if not hemi and (subjects_dir / subject / "stats" / f"lh.{stats}.stats").is_file():
                raise ValueError(
                    f"--stats {stats}: a surface stats file (lh.{stats}.stats): give --hemi lh or rh"
                )
            raise ValueError(f"{path}: stats file not found")
        found.append((subject, path))
    return found


def _aparc_row(stats: StatsFile, meas: str) -> dict[str, float]:
    column = APARC_MEASURES[meas]
    values = {row[0]: float(row[column]) for row in stats.rows}
    for m in stats.measures:
        extra = (m.structure, m.name)
        if extra in _APARC_EXTRAS and _APARC_EXTRAS[extra] in (None, meas):
            values[m.name] = m.value
    return values


def _aseg_row(stats: StatsFile, meas: str) -> dict[str, float]:
    column = ASEG_MEASURES[meas]
    values: dict[str, float] = {}
    for row in stats.rows:
        values.setdefault(row[4], float(row[column]))
    if meas == "volume":
        for m in stats.measures:
            name = ASEG_EXTRAS.get((m.structure, m.name))
            if name is not None:
                values[name] = m.value
    return values


def stats_table(
    subjects_dir: str | Path,
    stats: str,
    *,
    subjects: list[str] | None = None,
    hemi: str | None = None,
    meas: str | None = None,
) -> pd.DataFrame:
    """The wide table of ``aparcstats2table``/``asegstats2table`` for ``subjects``.

    Parameters
    ----------
    subjects_dir : str or Path
        FreeSurfer's SUBJECTS_DIR.
    stats : str
        ``aseg``, ``wmparc``, ``aparc``, ``aparc.a2009s``, ``aparc.DKTatlas``, ``BA_exvivo``, FastSurfer's
        ``aseg+DKT`` … (the file name without hemisphere and ``.stats``).
    subjects : list of str, optional
        Subject folder names (default: all that have the file).
    hemi : {'lh', 'rh'}, optional
        Required for surface stats files.
    meas : str, optional
        Surface: a key of :data:`APARC_MEASURES` (default ``thickness``); volume: of :data:`ASEG_MEASURES`
        (default ``volume``).

    Returns
    -------
    pandas.DataFrame
        Index: subjects (named like FreeSurfer's first header cell, e.g. ``lh.aparc.thickness`` or
        ``Measure:volume``); columns named as FreeSurfer names them; float values.
    """
    files = find_stats_files(subjects_dir, stats, subjects=subjects, hemi=hemi)
    parsed = [(subject, read_stats(path)) for subject, path in files]
    kind = parsed[0][1].kind
    stats_name = stats[: -len(".stats")] if stats.endswith(".stats") else stats
    if kind == "surface":
        meas = meas or "thickness"
        if meas not in APARC_MEASURES:
            raise ValueError(
                f"--meas {meas}: not a surface measure; choose one of {', '.join(APARC_MEASURES)}"
            )
        rows = [(s, _aparc_row(f, meas)) for s, f in parsed]
        header = f"{hemi}.{stats_name}.{meas}"
    else:
        meas = meas or "volume"
        if meas not in ASEG_MEASURES:
            raise ValueError(f"--meas {meas}: not a volume measure; choose one of {', '.join(ASEG_MEASURES)}")
        if hemi:
            raise ValueError(f"--hemi {hemi}: {stats_name} is a volume stats file (no hemisphere)")
        rows = [(s, _aseg_row(f, meas)) for s, f in parsed]
        header = f"Measure:{meas}"
    for (_, f), (_, values) in zip(parsed, rows, strict=True):
        if f.kind != kind:
            raise ValueError(f"{f.path}: a {f.kind} stats file among {kind} ones")
        if not values:
            raise ValueError(f"{f.path}: no table rows")
    columns = list(dict.fromkeys(key for _, values in rows for key in values))
    frame = pd.DataFrame(
        [[values.get(c, 0.0) for c in columns] for _, values in rows],
        index=pd.Index([s for s, _ in rows], name=header),
        columns=columns,
        dtype=float,
    )
    if kind == "surface":
        frame.columns = [c if c in _UNPREFIXED else f"{hemi}_{c}_{meas}" for c in columns]
    return frame


def write_wide_table(table: pd.DataFrame, path: str | Path) -> Path:
    """Write a :func:`stats_table` frame as FreeSurfer does: tab-separated, floats as ``'%s' % value``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["\t".join([str(table.index.name), *map(str, table.columns)])]
    for subject, row in zip(table.index, table.itertuples(index=False), strict=True):
        lines.append("\t".join([str(subject), *(str(float(v)) for v in row)]))
    atomic_write(path, lambda tmp: Path(tmp).write_text("\n".join(lines) + "\n"))
    return path


def collect_long_table(
    subjects_dir: str | Path,
    stats: str,
    *,
    subjects: list[str] | None = None,
    hemi: str | None = None,
    meas: str | None = None,
) -> pd.DataFrame:
    """:func:`long_table` of many subjects; a surface file without ``hemi`` gives both hemispheres.

    With ``meas`` (an ``aparcstats2table``/``asegstats2table`` measure such as ``thickness``), only the table
    rows of that measure's column (``ThickAvg``) are kept: a table that ``smriflow stats roi`` reads as it is.
    """
    hemis: list[str | None] = [hemi]
    files: list[tuple[str, Path]] = []
    if hemi is None:
        try:
            files = find_stats_files(subjects_dir, stats, subjects=subjects)
        except ValueError as exc:
            if "give --hemi" not in str(exc):
                raise
            hemis = ["lh", "rh"]
    if not files:
        files = [f for h in hemis for f in find_stats_files(subjects_dir, stats, subjects=subjects, hemi=h)]
    frames = []
    for subject, path in files:
        parsed = read_stats(path)
        frame = long_table(parsed, subject)
        if meas is not None:
            positions = APARC_MEASURES if parsed.kind == "surface" else ASEG_MEASURES
            if meas not in positions:
                raise ValueError(
                    f"--meas {meas}: not a {parsed.kind} measure; choose one of {', '.join(positions)}"
                )
            column = parsed.columns[positions[meas]]
            frame = frame[(frame["section"] == "table") & (frame["measure"] == column)]
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)
