"""Open the subject and group reports in headless Chromium: every image loads, no console error, links work.

Uses Playwright's Python API on the system's Chromium (Debian ``chromium``; ``playwright install`` is never
run, nothing is downloaded). Skipped when Chromium or Playwright is missing, failed instead when
``SMRIFLOW_REQUIRE_SHARED=1`` (CI, where ``.ci/run`` installs Chromium).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import _report_data
import pytest

from smriflow.reports.group import write_group_reports
from smriflow.reports.subject import write_subject_report

# every <img> and SVG <image> of the page, with whether it decoded to a non-empty picture
_IMAGES_JS = """() => {
  const imgs = Array.from(document.images).map(i => ({
    what: 'img ' + (i.alt || ''), ok: i.complete && i.naturalWidth > 0 && i.naturalHeight > 0}));
  const svgImages = Array.from(document.querySelectorAll('svg image')).map(i => {
    const box = i.getBBox();
    return {what: 'svg image', ok: box.width > 0 && box.height > 0};
  });
  return imgs.concat(svgImages);
}"""


def _require(condition: bool, message: str) -> None:
    if condition:
        return
    if os.environ.get("SMRIFLOW_REQUIRE_SHARED") == "1":
        pytest.fail(message + " (SMRIFLOW_REQUIRE_SHARED=1)")
    pytest.skip(message)


@pytest.fixture(scope="module")
def browser():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    _require(chromium is not None, "chromium is not installed (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _require(False, "playwright is not installed (pip install smriflow[test])")
    with sync_playwright() as playwright:
        # --disable-gpu: headless software rendering (the GPU process stalls screenshots in containers)
        launched = playwright.chromium.launch(
            executable_path=chromium, args=["--disable-gpu", "--no-sandbox"]
        )
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def reports(tmp_path_factory) -> Path:
    """A derivatives folder with two subject reports (one of them flagged), the group table and page."""
    root = tmp_path_factory.mktemp("browser")
    deriv = root / "deriv"
    deriv.mkdir()
    std = _report_data.std_t1w(root)
    for label in ("01", "02"):
        subject = _report_data.write_subject(root / label, label, seed=int(label))
        write_subject_report(
            deriv / f"sub-{label}.html",
            iqms_file=subject.iqms,
            subject=label,
            t1w=subject.t1w,
            t1w_preproc=subject.t1w_preproc,
            t1w_biasfield=subject.t1w_biasfield,
            t1w_mask=subject.t1w_mask,
            t1w_dseg=subject.t1w_dseg,
            std_t1w=std,
            atlas_dseg=subject.atlas_dseg,
            conform=subject.conform,
            methods="Methods.",
            n_cuts=4,
        )
    frame = _report_data.group_table(["01", "02", "03"], flagged={"02": "low reg_ncc 0.41 < 0.6"})
    tsv = _report_data.write_group_table(frame, deriv / "group_desc-iqms_T1w.tsv")
    write_group_reports(tsv, deriv, derivatives_dir=deriv)  # the subject reports updated in place
    return deriv


def open_page(browser, path: Path):
    """Load a file:// page; return it with the console errors and page errors it produced."""
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("requestfailed", lambda request: errors.append(f"failed to load {request.url}"))
    page.goto(path.as_uri(), wait_until="load")
    return page, errors


def test_subject_report_in_chromium(browser, reports, tmp_path):
    page, errors = open_page(browser, reports / "sub-02.html")
    images = page.evaluate(_IMAGES_JS)
    assert len([i for i in images if i["what"].startswith("img")]) == 8  # 6 mosaics + 2 flicker layers
    assert [i["what"] for i in images if not i["ok"]] == []
    # the flicker's top layer is animated
    animation = page.eval_on_selector(".flicker img.top", "e => getComputedStyle(e).animationName")
    assert animation == "smriflow-flicker"
    assert "flagged" in page.inner_text("#summary")  # the group verdict reached the report
    page.screenshot(path=str(tmp_path / "sub-02.png"), full_page=True)
    assert (tmp_path / "sub-02.png").stat().st_size > 10_000
    assert errors == []
    page.close()


def test_group_report_in_chromium(browser, reports, tmp_path):
    page, errors = open_page(browser, reports / "group_desc-qc_T1w.html")
    assert [i["what"] for i in page.evaluate(_IMAGES_JS) if not i["ok"]] == []
    plots = page.locator("#iqms svg")
    assert plots.count() == len(_report_data.IQMS)
    page.screenshot(path=str(tmp_path / "group.png"), full_page=True)
    assert (tmp_path / "group.png").stat().st_size > 10_000
    # clicking sub-02's point opens its report (in a new tab: the links have target=_blank)
    point = page.locator("#iqm-cjv svg a").nth(1)
    with page.context.expect_page() as opened:
        point.click()
    report = opened.value
    report.wait_for_load_state("load")
    assert report.url.endswith("/sub-02.html")
    assert "sub-02" in report.title()
    assert errors == []
    report.close()
    page.close()


def test_optional_sections_in_chromium(browser, tmp_path):
    """Lesions, a T2w, the runs table and surfaces (fsaverage5) render and every picture decodes."""
    import json

    import nibabel as nb
    import numpy as np

    subject = _report_data.write_subject(tmp_path / "data")
    dseg = nb.load(subject.t1w_dseg)
    lesion = np.asarray(dseg.dataobj) == 2
    lesion[: dseg.shape[0] // 2] = False  # the right half of the white matter
    nb.Nifti1Image(lesion.astype(np.uint8), dseg.affine).to_filename(tmp_path / "lesion.nii.gz")
    runs = tmp_path / "runs.json"
    runs.write_text(
        json.dumps({"method": "average", "runs": [{"file": "run-1"}, {"file": "run-2", "scale": 1.1}]})
    )
    _report_data.write_fsaverage5_subject(tmp_path / "fs" / "sub-01")
    report = write_subject_report(
        tmp_path / "sub-01.html",
        runs_file=runs,
        subject="01",
        t1w=subject.t1w,
        t1w_preproc=subject.t1w_preproc,
        t1w_biasfield=subject.t1w_biasfield,
        t1w_mask=subject.t1w_mask,
        t1w_dseg=subject.t1w_dseg,
        lesion_mask=tmp_path / "lesion.nii.gz",
        contrasts={"T2w": subject.t1w},
        surfaces_dir=tmp_path / "fs",
        n_cuts=3,
    )
    page, errors = open_page(browser, report)
    images = page.evaluate(_IMAGES_JS)
    assert len([i for i in images if i["what"].startswith("img")]) == 8  # 5 of every report + 3
    assert [i["what"] for i in images if not i["ok"]] == []
    for anchor in ("runs", "lesions", "contrasts", "surfaces"):
        assert page.locator(f"#{anchor} h2").is_visible()
    box = page.locator('#surfaces img[alt="cortical thickness"]').bounding_box()
    assert box["width"] > 500 and box["height"] > 400
    page.screenshot(path=str(tmp_path / "optional.png"), full_page=True)
    assert errors == []
    page.close()


def test_the_checks_catch_a_broken_page(browser, tmp_path):
    """The same checks on a page with a broken image and a console error report both."""
    broken = tmp_path / "broken.html"
    broken.write_text(
        '<html><body><img alt="bad" src="data:image/png;base64,AAAA">'
        '<img alt="good" src="data:image/svg+xml;base64,'
        'PHN2ZyB4bWxucz0iaHR0cDovL3d3dy53My5vcmcvMjAwMC9zdmciIHdpZHRoPSI0IiBoZWlnaHQ9IjQiLz4=">'
        '<script>console.error("boom")</script></body></html>'
    )
    page, errors = open_page(browser, broken)
    assert [(i["what"], i["ok"]) for i in page.evaluate(_IMAGES_JS)] == [
        ("img bad", False),
        ("img good", True),
    ]
    assert errors == ["boom"]
    page.close()
