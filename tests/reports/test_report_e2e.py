"""End to end: ``smriflow run anat_preproc`` writes ``sub-<label>.html``; ``smriflow run qc_group`` links it.

One run of each on a one-subject BIDS dataset made of the 3 mm copy of the shared T1w (about a minute of
CPU for anat_preproc, a few seconds for the group).
"""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import _anat_data
import _report_data
import pytest

ATLASES = ("desikankilliany", "harvardoxford", "aal")
pytestmark = [pytest.mark.slow, pytest.mark.ants, pytest.mark.shared, pytest.mark.xdist_group("report_e2e")]


def smriflow(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-c", "import sys; from smriflow.cli.main import main; sys.exit(main())", *args]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)


@pytest.fixture(scope="module")
def runs(shared_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("report_e2e")
    anat = root / "bids" / "sub-01" / "anat"
    anat.mkdir(parents=True)
    Path(_anat_data.t1w_3mm(shared_data, anat)).rename(anat / "sub-01_T1w.nii.gz")
    (root / "bids" / "dataset_description.json").write_text('{"Name": "e2e", "BIDSVersion": "1.8.0"}')
    out = root / "out"
    participant = smriflow(
        "run",
        "anat_preproc",
        "--bids-dir",
        str(root / "bids"),
        "--output-dir",
        str(out),
        "--work-dir",
        str(root / "w"),
    )
    assert participant.returncode == 0, participant.stdout + participant.stderr
    before = (out / "sub-01.html").read_text(encoding="utf-8")
    group = smriflow("run", "qc_group", "--output-dir", str(out), "--work-dir", str(root / "wg"))
    assert group.returncode == 0, group.stdout + group.stderr
    return SimpleNamespace(out=out, before=before, after=(out / "sub-01.html").read_text(encoding="utf-8"))


def test_anat_preproc_writes_the_subject_report(runs):
    report = runs.before
    assert "<title>smriflow report: sub-01</title>" in report
    for anchor in _report_data.SECTIONS:
        assert f'<section id="{anchor}">' in report, anchor
    for atlas in ATLASES:
        assert f"<h3>{atlas}</h3>" in report
    assert '<div class="flicker">' in report
    assert "Reoriented from LIA to RAS" in report  # conform's record reached the report
    srcs = re.findall(r'src="([^"]*)"', report)  # 10 figures + the thickness map
    assert len(srcs) == 11 and all(src.startswith("data:image/svg+xml;base64,") for src in srcs)
    # the IQM table shows the values of the IQM derivative
    iqms = json.loads((runs.out / "sub-01" / "anat" / "sub-01_desc-iqms_T1w.json").read_text())
    for name in ("cjv", "cnr", "efc", "reg_ncc"):
        assert re.search(rf"<code>{name}</code></td><td[^>]*>{iqms[name]:.4g}</td>", report), name
    assert "No group table yet" in report


def test_qc_group_links_and_updates_the_report(runs):
    page = (runs.out / "group_desc-qc_T1w.html").read_text(encoding="utf-8")
    links = set(re.findall(r'(?:xlink:)?href="([^"#][^"]*)"', page))
    assert links == {"sub-01.html"} and (runs.out / "sub-01.html").is_file()
    after = runs.after
    assert "group percentile" in after and "No group table yet" not in after
    description = json.loads((runs.out / "dataset_description.json").read_text())
    methods = " ".join(description["GeneratedBy"][0]["Description"].split())
    assert html.escape(methods[:80]) in after  # the methods paragraph, copied from dataset_description.json
    # the images are those of the participant run
    assert re.findall(r'src="([^"]*)"', after) == re.findall(r'src="([^"]*)"', runs.before)
