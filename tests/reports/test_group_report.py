"""The group QC page: table reading, a linked point per image, flagged images, updated subject reports."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import _report_data
import numpy as np
import pytest

from smriflow.interfaces.reports import GroupQCReport
from smriflow.reports.group import group_report, read_group_table, strip_plot_svg, write_group_reports
from smriflow.reports.html import block

LABELS = ["0002", "0003", "0010", "0011", "0012", "0013"]
FLAGGED = {"0010": "cjv: robust z 4.1 > 3.5; low reg_ncc 0.41 < 0.6"}


@pytest.fixture
def derivatives(tmp_path) -> Path:
    """A derivatives folder: the group TSV, minimal subject reports for all but one image, a description."""
    root = tmp_path / "deriv"
    root.mkdir()
    frame = _report_data.group_table(LABELS, flagged=FLAGGED)
    _report_data.write_group_table(frame, root / "group_desc-iqms_T1w.tsv")
    for label in LABELS[:-1]:  # sub-0013 has no report
        body = block("verdict", "") + block("iqms", "no group") + block("methods", "")
        (root / f"sub-{label}.html").write_text(f"<html><body>{body}</body></html>")
    description = {"GeneratedBy": [{"Name": "smriflow", "Description": "The T1w image was checked."}]}
    (root / "dataset_description.json").write_text(json.dumps(description))
    return root


def hrefs(document: str) -> list[str]:
    return re.findall(r'(?:xlink:)?href="([^"#][^"]*)"', document)


def test_read_group_table_keeps_labels_as_strings(derivatives):
    frame = read_group_table(derivatives / "group_desc-iqms_T1w.tsv")
    assert list(frame["subject"]) == LABELS  # "0002" stays "0002"
    assert list(frame["session"]) == [""] * len(LABELS)
    assert frame["qc_flag"].dtype == bool and list(frame["qc_flag"]) == [label in FLAGGED for label in LABELS]
    assert frame["cjv"].dtype == float


def test_read_group_table_errors(tmp_path):
    bad = tmp_path / "table.tsv"
    bad.write_text("a\tb\n1\t2\n")
    with pytest.raises(ValueError, match=r"table\.tsv: the group table has no 'subject' column"):
        read_group_table(bad)
    with pytest.raises(ValueError, match=r"missing\.tsv: cannot read the group table"):
        read_group_table(tmp_path / "missing.tsv")


def test_strip_plot_links_each_point_with_a_tooltip():
    values = np.array([1.0, 2.0, np.nan, 4.0])
    labels = ["sub-a", "sub-b", "sub-c", "sub-d"]
    svg = strip_plot_svg(
        "cjv", values, labels, np.array([False, True, False, False]), ["a.html", None, "c.html", "d.html"]
    )
    root = ET.fromstring(svg)
    links = [a.get("{http://www.w3.org/1999/xlink}href") for a in root.iter("{http://www.w3.org/2000/svg}a")]
    assert links == ["a.html", "d.html"]  # sub-b has no report, sub-c no value
    titles = [t.text for t in root.iter("{http://www.w3.org/2000/svg}title")]
    assert titles == ["sub-a: 1", "sub-d: 4", "sub-b: 2"]  # flagged points last (drawn on top)
    assert "#c5221f" in svg  # the flagged point is red


def test_group_page_links_only_existing_reports(derivatives, tmp_path):
    group_html, updated = write_group_reports(
        derivatives / "group_desc-iqms_T1w.tsv", tmp_path / "out", derivatives_dir=derivatives
    )
    assert group_html.name == "group_desc-qc_T1w.html"
    document = group_html.read_text()
    links = set(hrefs(document))
    assert links == {f"sub-{label}.html" for label in LABELS[:-1]}
    assert all((derivatives / link).is_file() for link in links)
    assert "sub-0013 (no report)" in document
    # one point per image and metric, each with its value as a tooltip
    assert document.count("<title>sub-0002: ") == len(_report_data.IQMS)
    # the flagged image and both of its reasons
    flagged = re.search(r'<section id="flagged">(.*?)</section>', document, re.S).group(1)
    assert 'href="sub-0010.html"' in flagged
    assert (
        "<li>cjv: robust z 4.1 &gt; 3.5</li>" in flagged and "<li>low reg_ncc 0.41 &lt; 0.6</li>" in flagged
    )
    assert "1 flagged" in document
    # and the subject reports were rewritten with the group's numbers and the methods
    assert [p.name for p in updated] == [f"sub-{label}.html" for label in LABELS[:-1]]
    flagged_copy = (tmp_path / "out" / "sub-0010.html").read_text()
    assert "group percentile" in flagged_copy and "low reg_ncc 0.41 &lt; 0.6" in flagged_copy
    assert "The T1w image was checked." in flagged_copy
    assert '<span class="badge ok">passed</span>' in (tmp_path / "out" / "sub-0002.html").read_text()


def test_group_page_without_derivatives_links_every_image(derivatives):
    document = group_report(read_group_table(derivatives / "group_desc-iqms_T1w.tsv"))
    assert set(hrefs(document)) == {f"sub-{label}.html" for label in LABELS}


def test_group_page_is_deterministic_and_self_contained(derivatives):
    frame = read_group_table(derivatives / "group_desc-iqms_T1w.tsv")
    first = group_report(frame)
    assert group_report(frame) == first
    assert not re.search(r'src="(?!data:)', first) and "<link" not in first
    assert all(not link.startswith(("http", "/", "file:")) for link in hrefs(first))


def test_interface(derivatives, tmp_path):
    result = GroupQCReport(
        in_tsv=str(derivatives / "group_desc-iqms_T1w.tsv"), derivatives_dir=str(derivatives)
    ).run(cwd=tmp_path)
    assert Path(result.outputs.out_report).name == "group_desc-qc_T1w.html"
    assert sorted(p.name for p in Path(result.outputs.out_subject_reports).iterdir()) == sorted(
        f"sub-{label}.html" for label in LABELS[:-1]
    )
    assert GroupQCReport.always_run  # it reads the subject reports, which are not hashed inputs
    (tmp_path / "plain").mkdir()
    plain = GroupQCReport(in_tsv=str(derivatives / "group_desc-iqms_T1w.tsv")).run(cwd=tmp_path / "plain")
    assert list(Path(plain.outputs.out_subject_reports).iterdir()) == []  # an empty folder, still an output


def test_long_reason_lists_are_folded():
    from smriflow.reports.blocks import reasons_html

    html = reasons_html("; ".join(f"r{i}" for i in range(8)))
    shown, folded = html.split("<details>")
    assert [f"<li>r{i}</li>" in shown for i in range(8)] == [True] * 5 + [False] * 3
    assert "<summary>3 more</summary>" in folded and "<li>r7</li>" in folded
    assert "<details>" not in reasons_html("a; b")
