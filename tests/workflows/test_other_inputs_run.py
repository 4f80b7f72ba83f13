"""``smriflow run anat_preproc`` on a subject with two T1w runs, a T2w and a lesion mask, and on one with two
sessions, run with ``--longitudinal`` (the shared T1w at 3 mm; the T2w synthesized and moved).

One run covers both subjects: the optional outputs exist for the first and are absent (not an error) for the
second; averaged runs and merged sessions lose their run-/ses- entities; the report shows each input.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import nibabel as nb
import numpy as np
import pytest
from _anat_data import FREESURFER, T1W, downsample
from scipy import ndimage

from smriflow.anat.contrasts import rigid_matrix, synthesize_t2w
from smriflow.cli.main import main

T2W_MOVE = rigid_matrix([4.0, 0.0, 3.0], [5.0, -3.0, 2.0])
RUN_MOVE = rigid_matrix([0.0, 3.0, 0.0], [-4.0, 2.0, 0.0])


def _write(img: nb.Nifti1Image, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.to_filename(str(path))
    return path


@pytest.fixture(scope="module")
def other_inputs_run(shared_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("other_inputs")
    bids = root / "bids"
    t1w = downsample(nb.load(shared_data / T1W))
    data = np.asarray(t1w.dataobj, dtype=np.float32)
    anat = bids / "sub-01" / "anat"
    _write(t1w, anat / "sub-01_run-1_T1w.nii.gz")
    _write(nb.Nifti1Image(data * 1.3, RUN_MOVE @ t1w.affine), anat / "sub-01_run-2_T1w.nii.gz")
    _write(synthesize_t2w(t1w, move=T2W_MOVE), anat / "sub-01_T2w.nii.gz")
    # a 6 mm sphere at the deepest white-matter point (FreeSurfer aseg of the same image)
    aseg = np.asarray(downsample(nb.load(shared_data / FREESURFER / "aseg.mgz"), labels=True).dataobj)
    depth = ndimage.distance_transform_edt(np.isin(aseg, (2, 41)), sampling=3.0)
    centre = np.unravel_index(np.argmax(depth), depth.shape)
    grid = np.indices(aseg.shape)
    lesion = sum((grid[i] - centre[i]) ** 2 for i in range(3)) * 9.0 <= 36.0
    _write(nb.Nifti1Image(lesion.astype(np.uint8), t1w.affine), anat / "sub-01_label-lesion_roi.nii.gz")
    _write(t1w, bids / "sub-02" / "ses-A" / "anat" / "sub-02_ses-A_T1w.nii.gz")
    moved = nb.Nifti1Image(data * 0.8, RUN_MOVE @ t1w.affine)
    _write(moved, bids / "sub-02" / "ses-B" / "anat" / "sub-02_ses-B_T1w.nii.gz")
    (bids / "dataset_description.json").write_text('{"Name": "other inputs", "BIDSVersion": "1.10.0"}')

    # a FreeSurfer subjects folder holding sub-01 only: fsaverage5's pial meshes and thickness
    from nilearn import datasets

    meshes = datasets.load_fsaverage("fsaverage5")["pial"].parts
    thickness = datasets.load_fsaverage_data("fsaverage5", data_type="thickness").data.parts
    surf = root / "subjects" / "sub-01" / "surf"
    surf.mkdir(parents=True)
    for hemi, prefix in (("left", "lh"), ("right", "rh")):
        mesh = meshes[hemi]
        nb.freesurfer.write_geometry(str(surf / f"{prefix}.pial"), mesh.coordinates, mesh.faces)
        nb.freesurfer.write_morph_data(str(surf / f"{prefix}.thickness"), np.asarray(thickness[hemi], "f4"))

    out = root / "out"
    argv = ["run", "anat_preproc", "--bids-dir", bids, "--output-dir", out, "--work-dir", root / "work"]
    argv += ["--longitudinal", "--set", "atlases=[aal]", "--set", "multichannel=true"]
    argv += ["--set", f"surfaces_dir={root / 'subjects'}"]
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(io.StringIO()):
        code = main([str(a) for a in argv])
    return code, stdout.getvalue(), bids, out, t1w, int(lesion.sum())


def _names(folder: Path) -> set[str]:
    return {path.name for path in folder.iterdir()}


def _sources(out: Path, name: str) -> list[str]:
    sidecar = json.loads((out / name).with_name(name.replace(".nii.gz", ".json")).read_text())
    return sidecar["Sources"]


@pytest.mark.shared
@pytest.mark.slow
@pytest.mark.ants
@pytest.mark.xdist_group("other_inputs")  # one worker runs the module's run once
def test_runs_averaged_t2w_registered_and_lesion_kept(other_inputs_run):
    code, stdout, bids, out, t1w, lesion_voxels = other_inputs_run
    assert code == 0, stdout
    names = _names(out / "sub-01" / "anat")
    assert {
        "sub-01_desc-preproc_T1w.nii.gz",
        "sub-01_space-T1w_desc-preproc_T2w.nii.gz",
        "sub-01_from-T1w_to-T2w_mode-image_xfm.mat",
        "sub-01_label-lesion_mask.nii.gz",
    } <= names
    assert not any("run-" in name or "FLAIR" in name for name in names)  # runs averaged; no FLAIR given
    assert _sources(out / "sub-01" / "anat", "sub-01_desc-preproc_T1w.nii.gz") == [
        f"bids:raw:sub-01/anat/{name}"
        for name in (
            "sub-01_run-1_T1w.nii.gz",
            "sub-01_run-2_T1w.nii.gz",
            "sub-01_T2w.nii.gz",
            "sub-01_label-lesion_roi.nii.gz",
        )
    ]
    # the T2w, moved by 6.2 mm and 5°, lands on the unmoved synthetic T2w of the T1w grid
    preproc = nb.load(out / "sub-01" / "anat" / "sub-01_desc-preproc_T1w.nii.gz")
    t2w = np.asarray(nb.load(out / "sub-01" / "anat" / "sub-01_space-T1w_desc-preproc_T2w.nii.gz").dataobj)
    truth = np.asarray(nb.as_closest_canonical(synthesize_t2w(t1w)).dataobj)
    assert t2w.shape == preproc.shape
    brain = np.asarray(nb.load(out / "sub-01" / "anat" / "sub-01_desc-brain_mask.nii.gz").dataobj) > 0
    assert np.corrcoef(t2w[brain], truth[brain])[0, 1] > 0.9
    # the average of the two runs is the run-1 image again (same anatomy, gain undone, motion undone)
    run1 = np.asarray(nb.as_closest_canonical(t1w).dataobj, dtype=np.float32)
    assert np.corrcoef(np.asarray(preproc.dataobj)[brain], run1[brain])[0, 1] > 0.95
    mask = np.asarray(nb.load(out / "sub-01" / "anat" / "sub-01_label-lesion_mask.nii.gz").dataobj)
    assert int(mask.sum()) == lesion_voxels
    # multichannel segmentation (T1w + T2w): memberships still sum to 1 in the brain
    tpms = [
        np.asarray(nb.load(out / "sub-01" / "anat" / f"sub-01_label-{c}_probseg.nii.gz").dataobj)
        for c in ("GM", "WM", "CSF")
    ]
    np.testing.assert_allclose(sum(tpms)[brain], 1.0, atol=1e-4)
    report = (out / "sub-01.html").read_text()
    for section in ("lesions", "contrasts", "runs", "surfaces"):
        assert f'<section id="{section}">' in report
    assert "sub-01_run-2_T1w.nii.gz" in report and "From <code>" in report  # runs table; surfaces drawn
    assert "Tissues segmented from T1w + T2w (multichannel)" in report


@pytest.mark.shared
@pytest.mark.slow
@pytest.mark.ants
@pytest.mark.xdist_group("other_inputs")  # one worker runs the module's run once
def test_longitudinal_subject_has_one_anatomical_and_no_optional_outputs(other_inputs_run):
    code, stdout, bids, out, _, _ = other_inputs_run
    assert code == 0, stdout
    assert not (out / "sub-02" / "ses-A").exists() and not (out / "sub-02" / "ses-B").exists()
    names = _names(out / "sub-02" / "anat")
    assert "sub-02_desc-preproc_T1w.nii.gz" in names
    assert not any(part in name for name in names for part in ("ses-", "T2w", "FLAIR", "lesion"))
    assert _sources(out / "sub-02" / "anat", "sub-02_desc-preproc_T1w.nii.gz") == [
        f"bids:raw:sub-02/ses-{s}/anat/sub-02_ses-{s}_T1w.nii.gz" for s in "AB"
    ]
    description = json.loads((out / "dataset_description.json").read_text())
    assert description["GeneratedBy"][0]["Workflow"]["Longitudinal"] is True
    report = (out / "sub-02.html").read_text()
    assert '<section id="runs">' in report and "sub-02_ses-B_T1w.nii.gz" in report
    assert '<section id="contrasts">' not in report and '<section id="lesions">' not in report
    assert "No surfaces for sub-02 in" in report
    assert "multichannel=true but no T2w or FLAIR: segmented from the T1w only" in report
