"""The subject report's "Cortical thickness" section: the map drawn on slices, its summary and regions.

Synthetic data: the 3 mm subject of ``_report_data``, a thickness map of 5 mm (the top of the colour
scale, viridis yellow) on its grey matter, and a record shaped as ``CorticalThickness`` writes it.
"""

from __future__ import annotations

import json
from pathlib import Path

import _report_data
import nibabel as nb
import numpy as np
import pytest
from test_report_inputs import cells, count_color, png_pixels, section_of

from smriflow.interfaces.reports import SubjectReport
from smriflow.reports.subject import subject_report

YELLOW = "#fde725"  # viridis at its maximum (5 mm)
RECORD = {
    "subject": "sub-01",
    "voxels": 1234,
    "mean_mm": {"lh": 2.456, "rh": 2.511},
    "plausible_mm": [1.0, 4.5],
    "iqms": {"thickness_mean_lh": 2.456, "thickness_mean_rh": 2.511, "thickness_frac_below": 0.02,
             "thickness_frac_above": 0.15},
    "regions": {"lh": {"bankssts": 2.1, "cuneus": 1.9}, "rh": {"bankssts": 2.2, "cuneus": 2.05}},
}  # fmt: skip


@pytest.fixture(scope="module")
def subject(tmp_path_factory):
    folder = tmp_path_factory.mktemp("thickness")
    files = _report_data.write_subject(folder)
    ref = nb.load(files.t1w_dseg)
    grey = np.asarray(ref.dataobj) == 1
    for name, data in (("thickness", np.where(grey, 5.0, 0.0)), ("zero", np.zeros(grey.shape))):
        path = folder / f"sub-01_{name}.nii.gz"
        nb.Nifti1Image(data.astype(np.float32), ref.affine).to_filename(str(path))
        setattr(files, name, str(path))
    files.record = folder / "thickness.json"
    files.record.write_text(json.dumps(RECORD))
    return files


def _inputs(files, **kwargs):
    return dict(
        in_t1w=files.t1w,
        t1w_preproc=files.t1w_preproc,
        t1w_biasfield=files.t1w_biasfield,
        t1w_mask=files.t1w_mask,
        t1w_dseg=files.t1w_dseg,
        subject="01",
        n_cuts=3,
        **kwargs,
    )


def test_section_through_the_interface(subject, tmp_path):
    result = SubjectReport(
        **_inputs(subject, thickness=subject.thickness, thickness_record=str(subject.record))
    )
    document = Path(result.run(cwd=tmp_path).outputs.out_report).read_text(encoding="utf-8")
    assert 'href="#thickness"' in document
    html = section_of(document, "thickness")
    assert cells(html, "mean, left hemisphere (mm)") == ["2.46"]
    assert cells(html, "mean, right hemisphere (mm)") == ["2.51"]
    assert cells(html, "share above 4.5 mm") == ["15.0 %"] and cells(html, "share below 1 mm") == ["2.0 %"]
    assert 'class="warn"' in html  # 15 % above 4.5 mm
    assert cells(html, "cuneus") == ["1.90", "2.05"] and cells(html, "bankssts") == ["2.10", "2.20"]
    assert count_color(png_pixels(html), YELLOW, tolerance=30) > 50  # the 5 mm ribbon is drawn


def test_an_empty_map_draws_no_colour_and_no_record_is_said(subject):
    base = {k: v for k, v in _inputs(subject).items() if k not in ("in_t1w",)}
    html = section_of(subject_report(t1w=subject.t1w, thickness=subject.zero, **base), "thickness")
    assert count_color(png_pixels(html), YELLOW, tolerance=30) == 0
    assert "No record was given." in html and "share above" not in html


def test_no_thickness_no_section_and_off_grid_refused(subject, tmp_path):
    base = {k: v for k, v in _inputs(subject).items() if k not in ("in_t1w",)}
    document = subject_report(t1w=subject.t1w, **base)
    assert '<section id="thickness">' not in document and 'href="#thickness"' not in document
    ref = nb.load(subject.thickness)
    off = tmp_path / "off.nii.gz"
    nb.Nifti1Image(np.zeros((10, 10, 10), np.float32), ref.affine).to_filename(str(off))
    with pytest.raises(ValueError, match="thickness"):
        subject_report(t1w=subject.t1w, thickness=str(off), **base)
