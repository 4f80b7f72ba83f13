"""The group QC report ``group_desc-qc_T1w.html``: one violin/strip plot per IQM, flagged images listed.

Each point of a plot is one image of the group table (``qc_group``'s ``group_desc-iqms_T1w.tsv``) and a link
to its subject report; flagged images are drawn in red and listed with their reasons. The plots are inline
SVG made by matplotlib (a link per point via ``Artist.set_url``), with a tooltip per point.
"""

from __future__ import annotations

import inspect
import io
import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from smriflow.reports.blocks import iqm_description, reasons_html
from smriflow.reports.html import escape, page, svg_inline, table
from smriflow.reports.subject import report_filename

__all__ = ["group_report", "iqm_columns", "read_group_table", "strip_plot_svg", "write_group_reports"]

_ID_COLUMNS = ("subject", "session", "acquisition", "reconstruction", "run")
_FLAG, _OK = "#c5221f", "#1a73e8"
_SALT = "smriflow"


def read_group_table(path: str | Path) -> pd.DataFrame:
    """Read a group IQM table (TSV): identifiers as strings, ``n/a`` as missing, ``qc_flag`` as bool.

    Raises
    ------
    ValueError
        When the file cannot be read or has no ``subject`` column.
    """
    ids = dict.fromkeys(_ID_COLUMNS, str)
    try:
        frame = pd.read_csv(
            path, sep="\t", dtype={**ids, "qc_reasons": str}, keep_default_na=False, na_values=["n/a"]
        )
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: cannot read the group table ({exc})") from None
    if "subject" not in frame.columns:
        raise ValueError(f"{path}: the group table has no 'subject' column")
    for col in _ID_COLUMNS:
        if col in frame.columns:
            frame[col] = frame[col].fillna("").astype(str)
    if "qc_flag" in frame.columns:
        frame["qc_flag"] = frame["qc_flag"].astype(str).str.lower().isin(["true", "1"])
    if "qc_reasons" in frame.columns:
        frame["qc_reasons"] = frame["qc_reasons"].fillna("").astype(str)
    return frame


def iqm_columns(frame: pd.DataFrame) -> list[str]:
    """The numeric IQM columns of a group table, in table order."""
    skip = {*_ID_COLUMNS, "qc_flag", "qc_reasons"}
    return [c for c in frame.columns if c not in skip and pd.api.types.is_numeric_dtype(frame[c])]


def _image_label(row: Mapping) -> str:
    parts = [f"sub-{row['subject']}"]
    for key, entity in (
        ("session", "ses"),
        ("acquisition", "acq"),
        ("reconstruction", "rec"),
        ("run", "run"),
    ):
        if str(row.get(key, "") or ""):
            parts.append(f"{entity}-{row[key]}")
    return "_".join(parts)


def _offsets(n: int, width: float = 0.28) -> np.ndarray:
    """Deterministic, evenly spread vertical jitter (golden-ratio sequence) for ``n`` points."""
    return ((np.arange(n) * 0.6180339887) % 1.0 - 0.5) * 2 * width


def strip_plot_svg(
    name: str, values: np.ndarray, labels: list[str], flagged: np.ndarray, links: list[str | None]
) -> str:
    """One IQM: a violin of the group (when 3 values or more vary) and a point per image.

    Parameters
    ----------
    name : str
        The IQM (axis label).
    values : array
        One value per image (NaN points are left out).
    labels : list of str
        Image labels (tooltips and SVG ids).
    flagged : array of bool
        Images drawn in red.
    links : list
        Per image, the href of its subject report, or None (no link).

    Returns
    -------
    str
        An SVG element ready to inline in HTML (each point an ``<a>`` with a ``<title>``).
    """
    from matplotlib import rc_context
    from matplotlib.figure import Figure

    values = np.asarray(values, dtype=float)
    finite = np.isfinite(values)
    with rc_context({"svg.hashsalt": _SALT, "font.size": 8}):
        fig = Figure(figsize=(3.4, 1.2))
        ax = fig.add_axes((0.04, 0.26, 0.92, 0.52))
        shown = values[finite]
        if len(shown) >= 3 and np.ptp(shown) > 0:
            # matplotlib >= 3.10 takes orientation=, older ones vert= (deprecated since 3.11)
            sideways = (
                {"orientation": "horizontal"}
                if "orientation" in inspect.signature(ax.violinplot).parameters
                else {"vert": False}
            )
            parts = ax.violinplot(shown, positions=[0], widths=0.9, showextrema=False, **sideways)
            for body in parts["bodies"]:
                body.set_facecolor("#c6dafc")
                body.set_edgecolor("#8ab4f8")
                body.set_alpha(0.8)
        jitter = _offsets(len(values))
        # one collection for all points (one marker definition in the SVG, a link per point); flagged last,
        # so that they are drawn on top
        order = sorted(np.flatnonzero(finite), key=lambda i: (bool(flagged[i]), i))
        if order:
            points = ax.scatter(
                values[order],
                jitter[order],
                s=12,  # one size: one marker definition, <use>d per point
                c=[_FLAG if flagged[i] else _OK for i in order],
                zorder=3,
            )
            points.set_gid(_point_id(name))
            points.set_urls([links[i] or None for i in order])
        ax.set_yticks([])
        ax.set_ylim(-1, 1)
        for side in ("left", "right", "top"):
            ax.spines[side].set_visible(False)
        fig.text(0.02, 0.86, name, fontsize=9, family="monospace")
        if not finite.any():
            ax.text(0.5, 0.0, "no value", transform=ax.transAxes, ha="center")
        buffer = io.StringIO()
        fig.savefig(buffer, format="svg", metadata={"Date": None})
    svg = svg_inline(buffer.getvalue())
    return _add_tooltips(svg, _point_id(name), [f"{labels[i]}: {values[i]:.4g}" for i in order])


def _add_tooltips(svg: str, gid: str, titles: list[str]) -> str:
    """Wrap the n-th marker of the collection ``gid`` in a group titled ``titles[n]`` (a hover tooltip).

    matplotlib draws the markers of a collection as ``<path>`` or, when it shares one definition, ``<use>``
    elements, in the order of the points (inside an ``<a>`` when the point has a URL); marker definitions
    sit in a ``<defs>`` block first and are left alone.
    """
    start = svg.find(f'<g id="{gid}">')
    if start < 0:
        return svg
    depth, end = 0, len(svg)
    for tag in re.finditer(r"<g\b[^>]*>|</g>", svg[start:]):
        depth += -1 if tag.group(0) == "</g>" else 1
        if depth == 0:
            end = start + tag.end()
            break
    body = svg[start:end]
    cut = body.rfind("</defs>") + len("</defs>") if "</defs>" in body else 0
    names = iter(titles)
    marks = re.sub(
        r"<(?:path|use)\b[^>]*/>",
        lambda m: f"<g><title>{escape(next(names, ''))}</title>{m.group(0)}</g>",
        body[cut:],
    )
    return svg[:start] + body[:cut] + marks + svg[end:]


def _point_id(name: str) -> str:
    return "pts-" + re.sub(r"[^A-Za-z0-9_-]", "-", name)


def group_report(
    frame: pd.DataFrame, *, reports: Mapping[str, str] | None = None, title: str = "smriflow group QC"
) -> str:
    """Render the group QC page.

    Parameters
    ----------
    frame : pandas.DataFrame
        The group table (:func:`read_group_table`).
    reports : mapping, optional
        Image label (``sub-01`` or ``sub-01_ses-A``) -> href of its subject report. Images without an
        entry get no link (e.g. their report does not exist). Default: ``sub-<label>.html`` for every image.

    Returns
    -------
    str
        The HTML document (deterministic).
    """
    rows = frame.to_dict("records")
    labels = [_image_label(r) for r in rows]
    if reports is None:
        reports = {
            lab: report_filename(r["subject"], r.get("session", ""))
            for lab, r in zip(labels, rows, strict=True)
        }
    links = [reports.get(lab) for lab in labels]
    flagged = (
        frame["qc_flag"].to_numpy(bool) if "qc_flag" in frame.columns else np.zeros(len(frame), dtype=bool)
    )
    iqms = iqm_columns(frame)
    n_flagged = int(flagged.sum())
    summary = (
        f"<p>{len(frame)} image{'s' if len(frame) != 1 else ''}, {len(iqms)} metrics; "
        f'<b class="{"bad" if n_flagged else "ok"}">{n_flagged} flagged</b>.</p>'
        '<p class="how">Each point is one image; click it to open its report (hover shows its value). '
        f'Flagged images are <b style="color:{_FLAG}">red</b>, the others <b style="color:{_OK}">blue</b>; '
        "the shaded shape is the distribution of the group.</p>"
    )
    flagged_rows = []
    for i in np.flatnonzero(flagged):
        name = escape(labels[i])
        cell = f'<a href="{escape(links[i])}">{name}</a>' if links[i] else name
        flagged_rows.append([cell, reasons_html(str(rows[i].get("qc_reasons", "")))])
    flagged_html = (
        table(["image", "reasons"], flagged_rows)
        if flagged_rows
        else '<p class="ok">No image was flagged.</p>'
    )
    all_rows = []
    for i, lab in enumerate(labels):
        cell = f'<a href="{escape(links[i])}">{escape(lab)}</a>' if links[i] else escape(lab) + " (no report)"
        verdict = '<span class="bad">flagged</span>' if flagged[i] else '<span class="ok">ok</span>'
        all_rows.append([cell, verdict])
    plots = []
    for name in iqms:
        svg = strip_plot_svg(name, frame[name].to_numpy(float), labels, flagged, links)
        hint = escape(iqm_description(name))
        plots.append(f'<figure id="iqm-{escape(name)}">{svg}<p class="caption">{hint}</p></figure>')
    body = (
        f'<section id="summary"><h1>{escape(title)}</h1>{summary}</section>'
        f'<section id="flagged"><h2>Flagged images</h2>{flagged_html}</section>'
        f'<section id="iqms"><h2>Metrics</h2><div class="grid">{"".join(plots)}</div></section>'
        f'<section id="images"><h2>All images</h2>{table(["image", "group QC"], all_rows)}</section>'
    )
    nav = [
        ("summary", "Summary"),
        ("flagged", f"Flagged ({n_flagged})"),
        ("iqms", "Metrics"),
        ("images", "Images"),
    ]
    return page(title, nav, body)


def write_group_reports(
    tsv: str | Path,
    out_dir: str | Path,
    *,
    derivatives_dir: str | Path | None = None,
    update_subject_reports: bool = True,
    subjects_dir: str | Path | None = None,
    title: str = "smriflow group QC",
) -> tuple[Path, list[Path]]:
    """Write the group QC page and, optionally, subject reports re-rendered with the group's percentiles.

    Parameters
    ----------
    tsv : path
        The group table (``group_desc-iqms_T1w.tsv``).
    out_dir : path
        Where to write ``group_desc-qc_T1w.html`` and the updated ``sub-<label>.html`` copies.
    derivatives_dir : path, optional
        The derivatives folder holding the subject reports (``sub-<label>.html`` at its top) and
        ``dataset_description.json``. The group page links only the reports found there, and each is
        copied with its verdict and IQM table rewritten (and its methods filled from
        ``dataset_description.json`` when it has a ``GeneratedBy[0].Description``). Without it, every image
        is linked to ``sub-<label>.html`` and nothing is updated.
    update_subject_reports : bool
        Write the updated copies (only with ``derivatives_dir``).
    subjects_dir : path, optional
        Where to write the updated copies (default: ``out_dir``).

    Returns
    -------
    group_html : Path
    subject_reports : list of Path
        The updated copies, in table order.
    """
    import json

    from smriflow.reports.subject import update_subject_report

    frame = read_group_table(tsv)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if subjects_dir is not None:
        Path(subjects_dir).mkdir(parents=True, exist_ok=True)
    rows = frame.to_dict("records")
    reports = None
    updated: list[Path] = []
    if derivatives_dir:
        root = Path(derivatives_dir)
        reports = {}
        methods = None
        description = root / "dataset_description.json"
        if description.is_file():
            try:
                methods = json.loads(description.read_text(encoding="utf-8"))["GeneratedBy"][0]["Description"]
            except (ValueError, KeyError, IndexError, TypeError):
                methods = None
        for row in rows:
            # sub-<label>_ses-<label>.html, else sub-<label>.html (anat_preproc's name for one session)
            candidates = [
                report_filename(row["subject"], row.get("session", "")),
                report_filename(row["subject"]),
            ]
            name = next((c for c in candidates if (root / c).is_file()), None)
            if name is None:
                continue
            reports[_image_label(row)] = name
            if update_subject_reports and name not in {p.name for p in updated}:
                document = (root / name).read_text(encoding="utf-8")
                document = update_subject_report(
                    document,
                    subject=row["subject"],
                    session=row.get("session", ""),
                    group=frame,
                    methods=methods,
                )
                target = Path(subjects_dir or out) / name
                target.write_text(document, encoding="utf-8")
                updated.append(target)
    group_html = out / "group_desc-qc_T1w.html"
    group_html.write_text(group_report(frame, reports=reports, title=title), encoding="utf-8")
    return group_html, updated
