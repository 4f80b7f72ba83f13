"""The subject report: self-contained, every section, IQM percentiles, marked blocks, the interface."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser

import _report_data
import nibabel as nb
import numpy as np
import pytest
from scipy.stats import percentileofscore

from smriflow.interfaces.reports import ReportFigures, SubjectReport
from smriflow.reports.blocks import brain_notes, conform_notes, percentile_in_group
from smriflow.reports.figures import FIGURES_VERSION, read_figures, report_figures
from smriflow.reports.html import escape, replace_block, svg_data_uri
from smriflow.reports.subject import report_filename, subject_report, update_subject_report


class Resources(HTMLParser):
    """Every URL an HTML document refers to (src, href, xlink:href, url(...) in styles) and its tags."""

    def __init__(self):
        super().__init__()
        self.urls: list[tuple[str, str]] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        for key, value in attrs:
            if key in ("src", "href", "xlink:href", "data", "poster") and value is not None:
                self.urls.append((tag, value))


def resources(document: str) -> Resources:
    parser = Resources()
    parser.feed(document)
    return parser


@pytest.fixture(scope="module")
def subject(tmp_path_factory):
    return _report_data.write_subject(tmp_path_factory.mktemp("subject_report"))


def render(subject, **kwargs):
    arguments = dict(
        subject=subject.subject,
        t1w=subject.t1w,
        t1w_preproc=subject.t1w_preproc,
        t1w_biasfield=subject.t1w_biasfield,
        t1w_mask=subject.t1w_mask,
        t1w_dseg=subject.t1w_dseg,
        atlas_dseg=subject.atlas_dseg,
        iqms=_report_data.IQMS,
        conform=subject.conform,
        methods="The T1w image was checked.   It was corrected.",
        n_cuts=3,
    )
    return subject_report(**{**arguments, **kwargs})


@pytest.fixture(scope="module")
def report(subject):
    return render(subject)


def test_report_is_self_contained(report):
    found = resources(report)
    assert found.urls, "the report shows images"
    for tag, url in found.urls:
        assert url.startswith(("data:image/svg+xml;base64,", "#")), (tag, url[:60])
    assert "http://" not in re.sub(r'xmlns(:\w+)?="http://[^"]+"', "", report).replace(
        "http://www.w3.org", ""
    )
    assert "https://" not in report
    assert not {"link", "iframe", "object", "embed"} & set(found.tags)
    assert "<script src" not in report and "@import" not in report and "url(" not in report


def test_report_has_every_section(report):
    for anchor in _report_data.SECTIONS:
        assert f'<section id="{anchor}">' in report, anchor
        assert f'href="#{anchor}"' in report, anchor  # reachable from the navigation bar
    images = [url for tag, url in resources(report).urls if tag == "img"]
    assert len(images) == 6  # input, corrected, field, mask, tissues, one atlas (no std_t1w: no flicker)
    assert "No normalized T1w given." in report
    assert "<h3>quadrants</h3>" in report  # the atlas name from its file's atlas- entity
    assert "<title>smriflow report: sub-01</title>" in report


def test_warnings_methods_and_citations(report):
    assert "voxels are anisotropic (ratio 2.0)" in report
    assert "Reoriented from LIA to RAS" in report
    assert "The T1w image was checked. It was corrected." in report  # whitespace normalized
    assert "doi:10.1371/journal.pone.0184661" in report  # MRIQC
    assert re.search(r"Software: smriflow [0-9.]+, nipype [0-9.]+", report)


def test_iqm_table_without_and_with_group(subject, report):
    assert "No group table yet" in report and "group percentile" not in report
    assert '<span class="badge none">not assessed</span>' in report
    group = _report_data.group_table(["01", "02", "03", "04", "05"], flagged={"01": "cjv robust z 4.2 > 3.5"})
    with_group = render(subject, group=group)
    assert "group percentile" in with_group
    for name in ("cjv", "reg_ncc"):
        expected = percentileofscore(group[name], _report_data.IQMS[name], kind="mean")
        row = re.search(rf"<code>{name}</code></td><td[^>]*>([^<]+)</td><td[^>]*>([^<]+)</td>", with_group)
        assert float(row.group(1)) == pytest.approx(_report_data.IQMS[name], rel=1e-3)
        assert float(row.group(2)) == pytest.approx(expected, abs=0.01)
    assert (
        '<span class="badge bad">flagged</span>' in with_group and "cjv robust z 4.2 &gt; 3.5" in with_group
    )


def test_percentile_in_group():
    assert percentile_in_group([1, 2, 3, 4], 3) == pytest.approx(62.5)  # ties count half
    assert percentile_in_group([1, 2, float("nan"), 4], 4) == pytest.approx(
        percentileofscore([1, 2, 4], 4, kind="mean")
    )
    assert percentile_in_group([float("nan")], 1.0) != percentile_in_group([float("nan")], 1.0)  # NaN


def test_update_rewrites_the_marked_blocks(subject, report):
    group = _report_data.group_table(["01", "02", "03"], flagged={"01": "low reg_ncc 0.41 < 0.6"})
    updated = update_subject_report(
        report, subject="sub-01", group=group, methods="Group-level methods text."
    )
    assert "low reg_ncc 0.41 &lt; 0.6" in updated and "group percentile" in updated
    assert "Group-level methods text." in updated and "It was corrected." not in updated
    # the IQM values are now the group table's for this subject
    value = group.loc[0, "cnr"]
    assert re.search(rf"<code>cnr</code></td><td[^>]*>{value:.4g}</td>", updated)
    # the images are untouched
    images = [url for tag, url in resources(report).urls if tag == "img"]
    assert images == [url for tag, url in resources(updated).urls if tag == "img"]
    assert (
        update_subject_report(updated, subject="01", group=group, methods="Group-level methods text.")
        == updated
    )
    with pytest.raises(ValueError, match="sub-09 is not a row of the group table"):
        update_subject_report(report, subject="09", group=group)
    with pytest.raises(ValueError, match="holds 0 'iqms' blocks, expected 1"):
        replace_block("<html></html>", "iqms", "x")


def test_conform_notes():
    assert conform_notes(None) == []
    notes = conform_notes({"warnings": ["w1"], "took_first_volume": True, "n_volumes": 3, "oblique": True})
    assert notes[0] == ("warn", "w1")
    assert ("warn", "4-D input with 3 volumes: only the first one was used.") in notes
    assert any(level == "warn" and "oblique" in text for level, text in notes)
    assert conform_notes({"reoriented_from": None, "affine_source": "sform"}) == []


def test_report_filename():
    assert report_filename("01") == "sub-01.html" == report_filename("sub-01", "")
    assert report_filename("01", "ses-A") == "sub-01_ses-A.html"


def test_report_is_deterministic(subject, report):
    assert render(subject) == report


def test_interface_names_the_report_from_the_source_file(subject, tmp_path):
    std = _report_data.std_t1w(tmp_path)
    result = SubjectReport(
        in_t1w=subject.t1w,
        t1w_preproc=subject.t1w_preproc,
        t1w_biasfield=subject.t1w_biasfield,
        t1w_mask=subject.t1w_mask,
        t1w_dseg=subject.t1w_dseg,
        std_t1w=std,
        atlas_dseg=subject.atlas_dseg,
        atlas_names=["four quadrants"],
        iqms=subject.iqms,
        conform_report=subject.conform,
        source_file="/data/bids/sub-07/ses-2/anat/sub-07_ses-2_T1w.nii.gz",
        n_cuts=3,
    ).run(cwd=tmp_path)
    out = result.outputs.out_report
    assert out.endswith("/sub-07_ses-2.html")
    document = open(out, encoding="utf-8").read()
    assert "<title>smriflow report: sub-07 ses-2</title>" in document
    assert '<div class="flicker">' in document and 'class="top"' in document  # the registration flicker
    assert "<h3>four quadrants</h3>" in document
    values = json.loads(open(subject.iqms).read())
    assert re.search(rf"<code>efc</code></td><td[^>]*>{values['efc']:.4g}</td>", document)


def test_interface_needs_a_subject_label(subject, tmp_path):
    iface = SubjectReport(
        in_t1w=subject.t1w,
        t1w_preproc=subject.t1w_preproc,
        t1w_biasfield=subject.t1w_biasfield,
        t1w_mask=subject.t1w_mask,
        t1w_dseg=subject.t1w_dseg,
        source_file="T1w.nii.gz",
    )
    with pytest.raises(
        ValueError, match=r"SubjectReport: set 'subject', or give a 'source_file' whose name has"
    ):
        iface.run(cwd=tmp_path)


def test_bad_iqm_file_is_named(subject, tmp_path):
    bad = tmp_path / "sub-01_desc-iqms_T1w.json"
    bad.write_text("[1, 2]")
    from smriflow.reports.subject import write_subject_report

    with pytest.raises(ValueError, match=r"sub-01_desc-iqms_T1w\.json: expected a JSON object"):
        write_subject_report(tmp_path / "x.html", iqms_file=bad, subject="01")


def test_images_off_the_mask_grid_are_refused(subject, tmp_path):
    other = tmp_path / "sub-01_T1w_lia.nii.gz"
    img = nb.load(subject.t1w)
    flipped = img.affine @ np.diag([-1.0, 1, 1, 1])
    nb.Nifti1Image(np.asanyarray(img.dataobj), flipped).to_filename(str(other))  # same shape, x flipped
    with pytest.raises(
        ValueError, match=r"sub-01_T1w_lia\.nii\.gz: 't1w' is not on the grid of the brain mask"
    ):
        render(subject, t1w=str(other))


def test_atlas_papers_are_cited_by_either_name():
    from smriflow.reports.blocks import references_html

    assert "doi:10.1016/j.neuroimage.2006.01.021" in references_html(atlases=["desikan_killiany"])
    assert "doi:10.1016/j.neuroimage.2006.01.021" in references_html(atlases=["desikankilliany"])
    assert "doi:10.1016/j.neuroimage.2015.07.075" not in references_html(atlases=["desikankilliany"])
    assert "Template: MNI152NLin2009aSym." in references_html(template="MNI152NLin2009aSym")


_BRAIN_RECORD = {
    "method": "hybrid",
    "path": "learned (refinement check failed)",
    "path_reason": "the refined edge disagreed with the learned mask: refined_dice 0.9 outside [0.93, 1]",
    "start": "pitch +20",
    "retries": 1,
    "starts": [
        {
            "start": "centre of mass",
            "dice_prior": 0.4,
            "ncc": 0.2,
            "scale": 0.3,
            "passed": False,
            "failed": ["scale 0.3 outside [0.45, 1.6]"],
        },
        {"start": "pitch +20", "dice_prior": 0.95, "ncc": 0.61, "scale": 0.66, "passed": True, "failed": []},
    ],
}


def test_brain_notes():
    assert brain_notes(None) == [] and brain_notes({"method": "ants", "refine": True}) == []
    assert brain_notes({"path": "refined", "retries": 0}) == []
    notes = brain_notes(_BRAIN_RECORD)
    assert notes[0] == (
        "warn",
        "Brain extraction (hybrid) used the learned (refinement check failed) mask: the refined edge "
        "disagreed with the learned mask: refined_dice 0.9 outside [0.93, 1].",
    )
    assert notes[1][0] == "info" and "from start 'pitch +20' after 1 rejected start(s)" in notes[1][1]
    stripped = brain_notes({"path": "skull-stripped input", "path_reason": "no second skull strip"})
    assert stripped == [("info", "The input was already skull-stripped: no second skull strip.")]


def _report_with_record(subject, tmp_path, port: str, record: dict) -> str:
    """The HTML of the subject's report with ``record`` (written as JSON) given to the input ``port``."""
    path = tmp_path / f"{port}.json"
    path.write_text(json.dumps(record))
    result = SubjectReport(
        in_t1w=subject.t1w,
        t1w_preproc=subject.t1w_preproc,
        t1w_biasfield=subject.t1w_biasfield,
        t1w_mask=subject.t1w_mask,
        t1w_dseg=subject.t1w_dseg,
        subject="07",
        n_cuts=3,
        **{port: str(path)},
    ).run(cwd=tmp_path)
    return open(result.outputs.out_report, encoding="utf-8").read()


def test_brain_record_is_shown_under_the_mask(subject, report, tmp_path):
    assert "brain extraction" not in report.split('id="mask"')[1].split("</section>")[0]
    document = _report_with_record(subject, tmp_path, "brain_record", _BRAIN_RECORD)
    mask_section = document.split('id="mask"')[1].split("</section>")[0]
    assert "learned (refinement check failed)" in mask_section
    assert "start &#x27;centre of mass&#x27;" in mask_section or "start 'centre of mass'" in mask_section
    assert "rejected: scale 0.3 outside [0.45, 1.6]" in mask_section
    summary = document.split('id="summary"')[1].split("</section>")[0]
    assert "Brain extraction (hybrid) used the learned" in summary


def test_denoise_record_joins_the_summary(subject, report, tmp_path):
    assert "denoised" not in report.split('id="summary"')[1].split("</section>")[0]
    record = {
        "denoised": True,
        "mode": "auto",
        "noise": {"relative": 0.058},
        "reason": "noise 5.8 % is above 2.5 %",
        "threshold": 0.025,
    }
    summary = _report_with_record(subject, tmp_path, "denoise_record", record).split('id="summary"')[1]
    note = "The T1w was denoised (non-local means) before tissue segmentation: noise 5.8 % is above 2.5 %."
    assert note in summary.split("</section>")[0]


def test_figures_drawn_apart_give_the_same_report(subject, tmp_path):
    """ReportFigures' files (early, late, both or none) in SubjectReport give the very bytes of a report that
    draws every figure itself."""
    std = _report_data.std_t1w(tmp_path)
    images = dict(
        in_t1w=subject.t1w,
        t1w_preproc=subject.t1w_preproc,
        t1w_biasfield=subject.t1w_biasfield,
        t1w_mask=subject.t1w_mask,
        t1w_dseg=subject.t1w_dseg,
        std_t1w=std,
        atlas_dseg=subject.atlas_dseg,
        n_cuts=3,
    )
    early_inputs = ("in_t1w", "t1w_preproc", "t1w_biasfield", "t1w_mask", "t1w_dseg", "n_cuts")
    late_inputs = ("t1w_preproc", "t1w_mask", "std_t1w", "atlas_dseg", "n_cuts")
    files = {}
    for stage, names in (("early", early_inputs), ("late", late_inputs)):
        (tmp_path / f"{stage}_figures").mkdir()
        node = ReportFigures(stage=stage, **{name: images[name] for name in names})
        files[stage] = node.run(cwd=tmp_path / f"{stage}_figures").outputs.out_figures
        assert read_figures(files[stage])["stage"] == stage
    assert set(read_figures(files["late"])) >= {"registration", "atlases"}
    assert "input" not in read_figures(files["late"]) and "atlases" not in read_figures(files["early"])
    documents = {}
    for name, given in (
        ("self", {}),
        ("early", {"figures": files["early"]}),
        ("late", {"late_figures": files["late"]}),
        ("both", {"figures": files["early"], "late_figures": files["late"]}),
    ):
        (tmp_path / name).mkdir()
        result = SubjectReport(**images, iqms=subject.iqms, subject="07", **given).run(cwd=tmp_path / name)
        documents[name] = open(result.outputs.out_report, "rb").read()
    assert documents["early"] == documents["self"]
    assert documents["late"] == documents["self"]
    assert documents["both"] == documents["self"]
    assert b'<div class="flicker">' in documents["both"] and documents["both"].count(b"<h3>") == 1


def test_late_figures_without_registration_or_template(subject, report, tmp_path):
    """No normalized T1w, or a template that is not installed: the late figures say so as the report does."""
    frame = dict(t1w_mask=subject.t1w_mask, t1w_preproc=subject.t1w_preproc, n_cuts=3)
    none = report_figures("late", **frame, atlas_dseg=subject.atlas_dseg)
    assert none["registration"] is None and len(none["atlases"]) == 1
    assert render(subject, figures=[none]) == report
    std = _report_data.std_t1w(tmp_path)
    missing = report_figures("late", **frame, std_t1w=std, template="NoSuchTemplate")
    assert set(missing["registration"]) == {"error"} and missing["atlases"] == []
    document = render(subject, figures=[missing], std_t1w=std, template="NoSuchTemplate", atlas_dseg=[])
    assert document == render(subject, std_t1w=std, template="NoSuchTemplate", atlas_dseg=[])
    assert escape(missing["registration"]["error"]) in document.split('id="registration"')[1]


def test_figures_given_are_used_and_those_of_other_settings_refused(subject, report, tmp_path):
    images = dict(t1w_preproc=subject.t1w_preproc, t1w_mask=subject.t1w_mask, n_cuts=3)
    early = report_figures(
        "early", **images, t1w=subject.t1w, t1w_biasfield=subject.t1w_biasfield, t1w_dseg=subject.t1w_dseg
    )
    late = report_figures("late", **images, atlas_dseg=subject.atlas_dseg)
    assert render(subject, figures=[early]) == report == render(subject, figures=[late, early])
    # the report shows the figures it is given instead of drawing them again
    marker = '<svg xmlns="http://www.w3.org/2000/svg"><title>given</title></svg>'
    shown = render(subject, figures=[{**late, "atlases": [marker]}, {**early, "tissues": marker}])
    assert shown.count(svg_data_uri(marker)) == 2 and svg_data_uri(late["atlases"][0]) not in shown
    with pytest.raises(
        ValueError, match=r"^the early 'figures' were drawn with n_cuts=3, the report asks for 4$"
    ):
        render(subject, figures=[early], n_cuts=4)
    std = _report_data.std_t1w(tmp_path)
    for changed, message in (
        ({"std_t1w": std}, "std_t1w=False, the report asks for True"),
        ({"atlas_dseg": []}, "atlases=1, the report asks for 0"),
        ({"template": "MNI152NLin6Asym"}, "template=MNI152NLin2009aSym, the report asks for MNI152NLin6Asym"),
    ):
        with pytest.raises(ValueError, match=rf"^the late 'figures' were drawn with {message}$"):
            render(subject, figures=[late], **changed)
    with pytest.raises(ValueError, match=r"^'figures': the early figures are given twice$"):
        render(subject, figures=[early, early])
    with pytest.raises(ValueError, match=r"^stage: 'middle' is not one of early, late$"):
        report_figures("middle", **images)
    with pytest.raises(ValueError, match=r"^the early figures need t1w_biasfield, t1w_dseg$"):
        report_figures("early", **images, t1w=subject.t1w)
    bad = tmp_path / "figures.json"
    for content in ({"version": 0}, {"version": 1, "n_cuts": 3}, {"version": FIGURES_VERSION, "stage": "x"}):
        bad.write_text(json.dumps(content))
        with pytest.raises(ValueError, match=r"figures\.json: not a figures file of this smriflow"):
            read_figures(bad)
