"""Other contrasts (T2w/FLAIR) onto the T1w, several T1w runs averaged, multichannel Atropos.

No real T2w of the shared subject exists, so a T2w is synthesized from the shared T1w (3 mm copy): an
intensity remapping that inverts the tissue contrast, seeded noise, and a known rigid move of 4-6 degrees
and 7 mm, which the registration must undo.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nibabel as nb
import numpy as np
import pytest
from _anat_data import t1w_3mm

import smriflow
from smriflow.anat.contrasts import rigid_matrix, synthesize_t2w

MOVE = rigid_matrix((4.0, -3.0, 6.0), (5.0, -4.0, 3.0))


def world_error(found: np.ndarray, expected: np.ndarray, img: nb.spatialimages.SpatialImage) -> np.ndarray:
    """Distance (mm) between where two 4x4 transforms send the head's voxels."""
    data = np.asarray(img.dataobj)
    points = nb.affines.apply_affine(img.affine, np.argwhere(data > np.percentile(data, 60)))
    return np.linalg.norm(
        nb.affines.apply_affine(found, points) - nb.affines.apply_affine(expected, points), axis=1
    )


# -- pure helpers --------------------------------------------------------------------------------------------
def test_rigid_matrix_is_a_proper_rotation_plus_translation():
    move = rigid_matrix((0, 0, 90), (1, 2, 3))
    assert np.allclose(move @ [1, 0, 0, 1], [1, 3, 3, 1])  # x -> y, then translated
    assert np.allclose(MOVE[:3, :3] @ MOVE[:3, :3].T, np.eye(3)) and np.isclose(
        np.linalg.det(MOVE[:3, :3]), 1
    )


def test_synthesize_t2w_inverts_the_contrast_and_moves_only_the_affine():
    t1 = np.zeros((20, 20, 20), np.float32)
    t1[2:18, 2:18, 2:18] = 30.0  # "CSF"
    t1[5:15, 5:15, 5:15] = 60.0  # "GM"
    t1[8:12, 8:12, 8:12] = 100.0  # "WM"
    img = nb.Nifti1Image(t1, np.diag([2.0, 2.0, 2.0, 1.0]))
    t2 = synthesize_t2w(img, move=MOVE, noise=0.0)
    data = np.asarray(t2.dataobj)
    assert data[3, 3, 3] > data[6, 6, 6] > data[10, 10, 10] > 0 == data[0, 0, 0]
    assert np.allclose(t2.affine, MOVE @ img.affine)
    noisy = [np.asarray(synthesize_t2w(img, seed=s).dataobj) for s in (0, 0, 1)]
    assert np.array_equal(noisy[0], noisy[1]) and not np.array_equal(noisy[0], noisy[2])


# -- registration on the shared T1w --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def t1w_img(shared_data, tmp_path_factory):
    return nb.load(t1w_3mm(shared_data, tmp_path_factory.mktemp("contrast_t1w")))


@pytest.mark.shared
@pytest.mark.ants
def test_register_rigid_recovers_a_known_move_of_a_synthetic_t2w(t1w_img, tmp_path):
    from smriflow.anat.contrasts import register_rigid

    t2w = synthesize_t2w(t1w_img, move=MOVE)
    resampled, transform, world = register_rigid(t2w, t1w_img, tmp_path)
    assert Path(transform).is_file()
    error = world_error(world, MOVE, t1w_img)
    assert error.mean() < 0.3 and error.max() < 0.6  # mm, on 3 mm voxels (measured 0.05 / 0.12)
    # on the T1w grid, the resampled T2w is the unmoved synthetic T2w
    expected = np.asarray(synthesize_t2w(t1w_img, noise=0.0).dataobj)
    head = expected > 100
    assert resampled.shape == t1w_img.shape and np.allclose(resampled.affine, t1w_img.affine)
    assert np.corrcoef(np.asarray(resampled.dataobj)[head], expected[head])[0, 1] > 0.9


@pytest.mark.shared
@pytest.mark.ants
def test_average_runs_registers_and_averages_a_moved_second_run(t1w_img, tmp_path):
    from smriflow.interfaces.contrasts import CombineRuns

    data = np.asarray(t1w_img.dataobj, dtype=np.float32)
    first = tmp_path / "sub-01_run-1_T1w.nii.gz"
    second = tmp_path / "sub-01_run-2_T1w.nii.gz"
    nb.Nifti1Image(data, t1w_img.affine).to_filename(str(first))
    nb.Nifti1Image(data * 1.7, MOVE @ t1w_img.affine).to_filename(str(second))  # other gain, moved
    outputs = CombineRuns(in_files=[str(first), str(second)]).run(cwd=tmp_path).outputs
    records = json.loads(Path(outputs.out_report).read_text())["runs"]
    assert outputs.out_source == str(tmp_path / "sub-01_T1w.nii.gz")
    assert [r["file"] for r in records] == [first.name, second.name]
    assert records[1]["scale"] == pytest.approx(1 / 1.7, rel=0.01)
    assert records[1]["translation_mm"] == pytest.approx(np.linalg.norm(MOVE[:3, 3]), abs=0.5)
    average = np.asarray(nb.load(outputs.out_file).dataobj)
    data = np.asarray(nb.as_closest_canonical(t1w_img).dataobj, dtype=np.float32)  # runs are conformed (RAS)
    head = data > np.percentile(data, 60)
    assert np.corrcoef(average[head], data[head])[0, 1] > 0.98


# -- the packaged workflows ----------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "contrast"), [("contrast_t2w", "t2w"), ("contrast_flair", "flair")])
def test_contrast_workflows_build_with_their_ports(name, contrast):
    wf = smriflow.load_workflow(name)
    assert sorted(wf.get_node("inputnode").inputs.copyable_trait_names()) == sorted(["t1w", contrast])
    assert sorted(wf.get_node("outputnode").inputs.copyable_trait_names()) == sorted(
        [f"{contrast}_t1w", f"t1w2{contrast}_xfm"]
    )
    assert wf.get_node("to_t1w").inputs.contrast == contrast.upper().replace("T2W", "T2w")


@pytest.mark.shared
@pytest.mark.slow
@pytest.mark.ants
def test_smriflow_run_contrast_t2w_writes_the_t2w_on_the_t1w_grid(t1w_img, tmp_path):
    anat = tmp_path / "bids" / "sub-01" / "anat"
    anat.mkdir(parents=True)
    (tmp_path / "bids" / "dataset_description.json").write_text('{"Name": "t", "BIDSVersion": "1.9.0"}')
    t1w_img.to_filename(str(anat / "sub-01_T1w.nii.gz"))
    synthesize_t2w(t1w_img, move=MOVE).to_filename(str(anat / "sub-01_T2w.nii.gz"))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "smriflow.cli.main", "run", "contrast_t2w"]
    cmd += ["--bids-dir", str(tmp_path / "bids"), "--output-dir", str(out), "--nprocs", "1"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    folder = out / "sub-01" / "anat"
    t2w = nb.load(folder / "sub-01_space-T1w_desc-preproc_T2w.nii.gz")
    assert (folder / "sub-01_from-T1w_to-T2w_mode-image_xfm.mat").is_file()
    reference = nb.as_closest_canonical(t1w_img)  # anat_preproc's grid: the T1w reoriented to RAS
    assert t2w.shape == reference.shape and np.allclose(t2w.affine, reference.affine, atol=1e-4)
    expected = np.asarray(nb.as_closest_canonical(synthesize_t2w(t1w_img, noise=0.0)).dataobj)
    head = expected > 100
    assert np.corrcoef(np.asarray(t2w.dataobj)[head], expected[head])[0, 1] > 0.9


# -- multichannel segmentation: does a T2w channel help? -----------------------------------------------------
