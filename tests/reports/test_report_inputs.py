"""The subject report's sections for optional inputs: lesions, T2w/FLAIR, T1w runs, surfaces.

Synthetic data: the 3 mm subject of ``_report_data`` with lesions planted in its white matter, a T2w made
by inverting its contrast, JSON records as ContrastToT1w and the run combination write them, and a
FreeSurfer ``$SUBJECTS_DIR`` made from nilearn's packaged fsaverage5 (pial mesh and thickness).
"""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import _report_data
import nibabel as nb
import numpy as np
import pytest

from smriflow.interfaces.reports import SubjectReport
from smriflow.reports import reportlets as rl
from smriflow.reports.sections import lesion_stats, runs_section, surfaces_section
from smriflow.reports.subject import subject_report, write_subject_report
from smriflow.reports.surfaces import subject_surface_folder

SECTIONS = ("runs", "lesions", "contrasts", "surfaces")
T2W_RECORD = {
    "contrast": "T2w",
    "metric": "Mattes mutual information (32 bins), rigid",
    "translation_mm": 7.1234,
    "rotation_deg": 6.0049,
    "n4_profile": "fast",
    "masked_metric": True,
}
RUNS = {
    "method": "average",
    "runs": [
        {
            "file": "sub-01_run-1_T1w.nii.gz",
            "translation_mm": [0, 0, 0],
            "rotation_deg": [0, 0, 0],
            "scale": 1,
        },
        {"file": "sub-01_run-2_T1w.nii.gz", "translation_mm": [1.5, -2.0, 0.25], "rotation_deg": 3.5},
    ],
}


def _like(reference: str, data: np.ndarray, path: Path) -> str:
    img = nb.load(reference)
    nb.Nifti1Image(data, img.affine).to_filename(str(path))
    return str(path)


@pytest.fixture(scope="module")
def subject(tmp_path_factory):
    """The synthetic subject, a lesion mask in its WM (27 + 8 voxels, two components) and a T2w."""
    folder = tmp_path_factory.mktemp("inputs")
    files = _report_data.write_subject(folder)
    dseg = np.asarray(nb.load(files.t1w_dseg).dataobj)
    lesion = np.zeros(dseg.shape, np.uint8)
    centre = np.array(dseg.shape) // 2
    i, j, k = centre
    lesion[i - 1 : i + 2, j - 1 : j + 2, k - 1 : k + 2] = 1  # 3x3x3
    lesion[i + 4 : i + 6, j : j + 2, k : k + 2] = 1  # 2x2x2, two voxels apart from the first
    assert (dseg[lesion > 0] == 2).all()
    files.lesion = _like(files.t1w_mask, lesion, folder / "sub-01_label-lesion_roi.nii.gz")
    in_gm = np.zeros(dseg.shape, np.uint8)
    first = int(np.argwhere(dseg == 1)[:, 0].min())  # the GM of the first sagittal slice that has some
    in_gm[first] = dseg[first] == 1
    files.lesion_gm = _like(files.t1w_mask, in_gm, folder / "sub-01_desc-gm_mask.nii.gz")
    preproc = np.asarray(nb.load(files.t1w_preproc).dataobj)
    t2w = np.where(preproc > 0, 160.0 - preproc, 0.0).astype(np.float32)  # CSF bright, WM dark
    files.t2w = _like(files.t1w_mask, t2w, folder / "sub-01_space-T1w_desc-preproc_T2w.nii.gz")
    files.t2w_record = folder / "sub-01_T2w_to-T1w.json"
    files.t2w_record.write_text(json.dumps(T2W_RECORD))
    files.runs = folder / "sub-01_desc-runs_T1w.json"
    files.runs.write_text(json.dumps(RUNS))
    return files


def render(files, **kwargs) -> str:
    arguments = dict(
        subject="01",
        t1w=files.t1w,
        t1w_preproc=files.t1w_preproc,
        t1w_biasfield=files.t1w_biasfield,
        t1w_mask=files.t1w_mask,
        t1w_dseg=files.t1w_dseg,
        n_cuts=3,
    )
    return subject_report(**{**arguments, **kwargs})


@pytest.fixture(scope="module")
def report(subject) -> str:
    """A report with a lesion mask, a T2w with its record, a FLAIR without one and the runs record."""
    return render(
        subject,
        lesion_mask=subject.lesion,
        contrasts={"T2w": subject.t2w, "FLAIR": subject.t2w},
        contrast_records={"T2w": T2W_RECORD},
        runs=RUNS,
    )


def section_of(document: str, anchor: str) -> str:
    found = re.search(rf'<section id="{anchor}">(.*?)</section>', document, re.S)
    assert found, anchor
    return found.group(1)


def cells(html: str, label: str) -> list[str]:
    """The cells after the cell ``label`` in its table row."""
    row = re.search(rf"<tr><td[^>]*>{re.escape(label)}</td>(.*?)</tr>", html, re.S)
    assert row, label
    return re.findall(r"<td[^>]*>(.*?)</td>", row.group(1))


def png_pixels(svg_html: str) -> np.ndarray:
    """All pixels (RGB, n x 3) of the PNG rasters inside the SVG figures of an HTML fragment."""
    from PIL import Image

    pixels = []
    for uri in re.findall(r'src="data:image/svg\+xml;base64,([^"]+)"', svg_html):
        svg = base64.b64decode(uri).decode()
        for png in re.findall(r"data:image/png;base64,([A-Za-z0-9+/=\s]+)", svg):
            image = Image.open(io.BytesIO(base64.b64decode(png))).convert("RGB")
            pixels.append(np.asarray(image).reshape(-1, 3))
    return np.concatenate(pixels)


def count_color(pixels: np.ndarray, hex_color: str, tolerance: int = 40) -> int:
    rgb = np.array([int(hex_color[i : i + 2], 16) for i in (1, 3, 5)])
    return int((np.abs(pixels.astype(int) - rgb).max(1) <= tolerance).sum())


def test_no_optional_input_no_section(subject):
    document = render(subject)
    for anchor in SECTIONS:
        assert f'<section id="{anchor}">' not in document and f'href="#{anchor}"' not in document
    assert render(subject, surfaces_dir="", contrasts={}, contrast_records={}) == document


def test_lesion_section_numbers(subject, report):
    html = section_of(report, "lesions")
    assert 'href="#lesions"' in report
    voxel_ml = 3.0**3 / 1000
    assert float(cells(html, "lesion volume (ml)")[0]) == pytest.approx(35 * voxel_ml, abs=5e-4)
    assert cells(html, "voxels") == ["35"]
    assert cells(html, "connected components (26-neighbourhood)") == ["2"]
    assert float(cells(html, "largest component (ml)")[0]) == pytest.approx(27 * voxel_ml, abs=5e-4)
    assert cells(html, "labelled WM") == ["100.0 %"] and cells(html, "labelled GM") == ["0.0 %"]
    assert 'class="warn"' not in html


def test_lesion_outline_is_drawn_on_slices_through_it(subject, report):
    lesion = nb.load(subject.lesion)
    cuts = rl.lesion_cuts(lesion, 7)
    data = np.asanyarray(lesion.dataobj) > 0
    inverse = np.linalg.inv(lesion.affine)
    for axis, key in enumerate("xyz"):
        for position in cuts[key]:
            point = np.zeros(3)
            point[axis] = position
            index = int(round(nb.affines.apply_affine(inverse, point)[axis]))
            assert np.take(data, index, axis=axis).any(), (key, position)
    assert len(cuts["x"]) <= 7 and cuts["x"] == sorted(cuts["x"])
    # the yellow outline is in the lesion mosaic and in no other one
    assert count_color(png_pixels(section_of(report, "lesions")), rl.LESION_COLOR) > 20
    assert count_color(png_pixels(section_of(report, "tissues")), rl.LESION_COLOR) == 0


def test_lesion_stats_against_scipy_and_a_lesion_in_grey_matter(subject):
    from scipy import ndimage

    dseg = np.asarray(nb.load(subject.t1w_dseg).dataobj)
    lesion = np.asarray(nb.load(subject.lesion_gm).dataobj)
    stats = lesion_stats(lesion, dseg, (1.0, 1.0, 2.0))
    assert stats["voxels"] == int(lesion.sum()) and stats["volume_ml"] == pytest.approx(lesion.sum() * 0.002)
    assert stats["n_components"] == ndimage.label(lesion, np.ones((3, 3, 3)))[1]
    assert stats["fractions"]["GM"] == 1.0
    html = section_of(render(subject, lesion_mask=subject.lesion_gm), "lesions")
    assert "Only 0.0 % of the lesion voxels are labelled WM" in html
    assert lesion_stats(np.zeros((2, 2, 2)), np.zeros((2, 2, 2)), (1, 1, 1))["fractions"] == {}


def test_contrast_section(report):
    html = section_of(report, "contrasts")
    assert 'href="#contrasts"' in report
    assert html.index("<h3>FLAIR</h3>") < html.index("<h3>T2w</h3>")
    t2w = html[html.index("<h3>T2w</h3>") :]
    assert cells(t2w, "translation (mm)") == ["7.12"] and cells(t2w, "rotation (degrees)") == ["6.00"]
    assert cells(t2w, "metric") == ["Mattes mutual information (32 bins), rigid"]
    assert cells(t2w, "metric in the T1w brain mask") == ["yes"]
    flair = html[: html.index("<h3>T2w</h3>")]
    assert "No registration record was given." in flair
    assert len(re.findall(r"<img ", html)) == 2
    # the T1w's outlines are over the contrast: red brain mask, magenta WM
    pixels = png_pixels(html)
    assert count_color(pixels, rl.MASK_COLOR) > 20 and count_color(pixels, "#ff2bd6") > 20


def test_contrast_off_the_grid_is_refused(subject, tmp_path):
    small = tmp_path / "sub-01_space-T1w_FLAIR.nii.gz"
    nb.Nifti1Image(np.zeros((5, 5, 5), np.float32), np.eye(4)).to_filename(str(small))
    with pytest.raises(ValueError, match=r"sub-01_space-T1w_FLAIR\.nii\.gz: 'FLAIR' is not on the grid"):
        render(subject, contrasts={"FLAIR": str(small)})


def test_runs_table(report):
    html = section_of(report, "runs")
    assert "Method: <b>average</b> (each run was registered rigidly to the first" in html
    first, second = cells(html, "1"), cells(html, "2")
    assert first == ["sub-01_run-1_T1w.nii.gz", "(0.00, 0.00, 0.00)", "(0.00, 0.00, 0.00)", "1.000"]
    assert second == ["sub-01_run-2_T1w.nii.gz", "(1.50, -2.00, 0.25)", "3.50", "n/a"]  # no scale given
    assert report.index('href="#input"') < report.index('href="#runs"') < report.index('href="#bias"')


def test_runs_record_shapes(subject):
    listed = runs_section([{"run": 0, "scale": 1.0}, {"run": 1, "scale": 0.5, "translation_mm": 7.0}])
    assert "Method: <b>average</b>" in listed and "0.500" in listed and "7.00" in listed
    first = runs_section(
        {"method": "first", "runs": [{"file": "a.nii.gz"}, {"file": "b.nii.gz"}], "used": "a.nii.gz"}
    )
    assert "the first run was used" in first and "The image processed is <code>a.nii.gz</code>." in first
    assert cells(first, "2") == ["b.nii.gz", "n/a", "n/a", "n/a"]
    # one run: nothing was combined, so no section
    single = {"method": "average", "runs": [{"file": "a.nii.gz"}], "used": "a.nii.gz"}
    assert runs_section(single) == ""
    document = render(subject, runs=single)
    assert 'id="runs"' not in document and 'href="#runs"' not in document
    with pytest.raises(ValueError, match=r"r\.json: expected a JSON object with 'method' and 'runs'"):
        runs_section({"runs": "run-1"}, "r.json")
    with pytest.raises(ValueError, match=r"r\.json: run 1 of 'runs' is not a JSON object"):
        runs_section({"runs": [{}, 3]}, "r.json")


def test_unreadable_records_are_named(subject, tmp_path):
    bad = tmp_path / "runs.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match=r"runs\.json: cannot read the record of the T1w runs"):
        write_subject_report(tmp_path / "x.html", runs_file=bad, subject="01")
    with pytest.raises(ValueError, match=r"runs\.json: cannot read the FLAIR registration record"):
        write_subject_report(tmp_path / "x.html", contrast_record_files={"FLAIR": bad}, subject="01")


def test_report_with_inputs_is_deterministic(subject, report):
    assert (
        render(
            subject,
            lesion_mask=subject.lesion,
            contrasts={"T2w": subject.t2w, "FLAIR": subject.t2w},
            contrast_records={"T2w": T2W_RECORD},
            runs=RUNS,
        )
        == report
    )


# --- surfaces ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fsaverage5():
    """Pial mesh and thickness of both fsaverage5 hemispheres (nilearn's packaged data, no download)."""
    from nilearn import datasets

    meshes = datasets.load_fsaverage("fsaverage5")["pial"].parts
    thickness = datasets.load_fsaverage_data("fsaverage5", data_type="thickness").data.parts
    return {hemi: (meshes[hemi], np.asarray(thickness[hemi], np.float32)) for hemi in ("left", "right")}


@pytest.fixture(scope="module")
def subjects_dir(tmp_path_factory, fsaverage5) -> Path:
    """A $SUBJECTS_DIR with sub-01 and 03 (no sub- prefix): fsaverage5's pial, thickness, a 2-region aparc."""
    root = tmp_path_factory.mktemp("subjects_dir")
    for name in ("sub-01", "03"):
        _report_data.write_fsaverage5_subject(root / name)
    (root / "sub-02" / "mri").mkdir(parents=True)  # a FreeSurfer subject with volumes only
    return root


def test_surfaces_through_the_interface(subject, subjects_dir, fsaverage5, tmp_path):
    """Every optional input given to SubjectReport: all four sections, surfaces with numpy's means."""
    result = SubjectReport(
        in_t1w=subject.t1w,
        t1w_preproc=subject.t1w_preproc,
        t1w_biasfield=subject.t1w_biasfield,
        t1w_mask=subject.t1w_mask,
        t1w_dseg=subject.t1w_dseg,
        subject="01",
        lesion_mask=subject.lesion,
        t2w_t1w=subject.t2w,
        t2w_record=str(subject.t2w_record),
        runs_record=str(subject.runs),
        surfaces_dir=str(subjects_dir),
        n_cuts=3,
    ).run(cwd=tmp_path)
    document = Path(result.outputs.out_report).read_text(encoding="utf-8")
    for anchor in SECTIONS:
        assert f'<section id="{anchor}">' in document and f'href="#{anchor}"' in document
    assert "<h3>FLAIR</h3>" not in document and cells(section_of(document, "contrasts"), "translation (mm)")
    html = section_of(document, "surfaces")
    assert f"From <code>{subjects_dir / 'sub-01'}</code>" in html
    assert len(re.findall(r'<img alt="cortical thickness" src="data:image/svg\+xml;base64,', html)) == 1
    svg = base64.b64decode(re.search(r'src="data:image/svg\+xml;base64,([^"]+)"', html).group(1)).decode()
    for view in ("left lateral", "left medial", "right lateral", "right medial"):
        assert view in svg
    for hemi in ("left", "right"):
        mesh, thickness = fsaverage5[hemi]
        cortex = thickness[thickness > 0].astype(np.float64)
        row = cells(html, hemi)
        assert row[:2] == [str(len(thickness)), str(cortex.size)]
        assert float(row[2]) == pytest.approx(cortex.mean(), abs=5e-4)
    assert "Mean thickness per region of aparc (2 regions)" in html
    for region, inside in (("anterior", lambda y: y > -20), ("posterior", lambda y: y <= -20)):
        expected = []
        for hemi in ("left", "right"):
            mesh, thickness = fsaverage5[hemi]
            keep = inside(mesh.coordinates[:, 1])
            keep[:50] = False
            expected.append(thickness[keep].astype(np.float64).mean())
        assert [float(v) for v in cells(html, region)] == pytest.approx(expected, abs=5e-4)
    assert "unknown" not in html


def test_no_surfaces_for_the_subject(subjects_dir, tmp_path):
    html = surfaces_section(subjects_dir, "02")
    assert (
        f"No surfaces for sub-02 in {subjects_dir} (looked for a pial mesh with a thickness map in " in html
    )
    assert "sub-02, 02)" in html and "<img" not in html and html.count("<p") == 2  # how + one line
    missing = tmp_path / "nowhere"
    assert f"No surfaces for sub-01: {missing} is not a folder." in surfaces_section(missing, "01")
    with_session = surfaces_section(subjects_dir, "02", "A")
    assert (
        "No surfaces for sub-02_ses-A in" in with_session
        and "sub-02_ses-A, sub-02/ses-A, sub-02, 02)" in with_session
    )


def test_subject_surface_folder(subjects_dir, fsaverage5, tmp_path):
    assert subject_surface_folder(subjects_dir, "sub-01") == subjects_dir / "sub-01"
    assert subject_surface_folder(subjects_dir, "03") == subjects_dir / "03"  # without the sub- prefix
    assert subject_surface_folder(subjects_dir, "02") is None  # mri/ only
    assert subject_surface_folder(subjects_dir, "01", "A") == subjects_dir / "sub-01"  # no session folder
    # fMRIPrep derivatives: sub-<label>/ses-<label>/anat GIFTIs, preferred for that session
    anat = tmp_path / "sub-05" / "ses-A" / "anat"
    anat.mkdir(parents=True)
    mesh, thickness = fsaverage5["left"]
    surf = nb.gifti.GiftiImage()
    surf.add_gifti_data_array(
        nb.gifti.GiftiDataArray(mesh.coordinates.astype(np.float32), "NIFTI_INTENT_POINTSET")
    )
    surf.add_gifti_data_array(nb.gifti.GiftiDataArray(mesh.faces.astype(np.int32), "NIFTI_INTENT_TRIANGLE"))
    nb.save(surf, anat / "sub-05_ses-A_hemi-L_pial.surf.gii")
    shape = nb.gifti.GiftiImage(darrays=[nb.gifti.GiftiDataArray(thickness, "NIFTI_INTENT_SHAPE")])
    nb.save(shape, anat / "sub-05_ses-A_hemi-L_thickness.shape.gii")
    assert subject_surface_folder(tmp_path, "05", "A") == tmp_path / "sub-05" / "ses-A"
    assert subject_surface_folder(tmp_path, "05") == tmp_path / "sub-05"


def test_tissue_notes_name_the_channels_and_carry_the_warnings():
    from smriflow.reports.blocks import tissue_notes

    assert tissue_notes(None) == [] and tissue_notes({"means": [1, 2, 3]}) == []
    used = {"multichannel": {"channels": ["T1w", "T2w"], "changed_fraction": 0.0412}}
    assert tissue_notes(used) == [
        ("info", "Tissues segmented from T1w + T2w (multichannel); 4.1% of brain voxels changed label.")
    ]
    alone = {"multichannel": {"channels": ["T1w"]}, "warnings": ["multichannel=true but no T2w or FLAIR"]}
    assert tissue_notes(alone) == [("warn", "multichannel=true but no T2w or FLAIR")]
    grid = {"segmentation_grid": {"voxel_size_mm": 1.0, "shape": [256, 256, 256]}}
    assert tissue_notes(grid) == [
        (
            "info",
            "Tissues segmented on an isotropic 1 mm grid (coarse or anisotropic voxels), the memberships "
            "averaged back onto the T1w grid.",
        )
    ]


def test_denoise_notes_say_what_was_done_and_what_was_not():
    from smriflow.anat.denoise import denoise_if_noisy
    from smriflow.reports.blocks import denoise_notes

    rng = np.random.default_rng(0)
    r = np.sqrt(((np.indices((48, 48, 48)) - 23.5) ** 2).sum(0))
    mask = r < 21
    image = np.where(r < 12, 1000.0, np.where(r < 17, 600.0, 250.0)).astype(np.float32)  # WM, GM, CSF
    noisy = image + rng.normal(0, 50.0, image.shape).astype(np.float32)  # 5 % of the WM
    _, coarse = denoise_if_noisy(noisy, mask, (3.0, 3.0, 3.0))
    [(level, text)] = denoise_notes(coarse)
    assert level == "warn" and text.startswith("Noise ") and text.endswith("but voxels of 3 mm (> 1.5 mm).")
    _, never = denoise_if_noisy(noisy, mask, (1.0, 1.0, 1.0), mode="never")
    assert denoise_notes(never)[0][1].endswith("not denoised: denoise=never.")
    done = {"denoised": True, "reason": "noise 5.0 % is above 2.5 %", "noise": {"relative": 0.05}}
    assert denoise_notes(done) == [
        (
            "info",
            "The T1w was denoised (non-local means) before tissue segmentation: noise 5.0 % is above 2.5 %.",
        )
    ]
    _, clean = denoise_if_noisy(image, mask, (1.0, 1.0, 1.0))
    assert denoise_notes(clean) == [] and denoise_notes(None) == []
