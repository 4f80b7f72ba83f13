"""BrainExtraction on the 3 mm shared T1w: outputs, accuracy floor, determinism, reusable affine."""

from __future__ import annotations

import json

import nibabel as nb
import numpy as np
import pytest
from _anat_data import reference_3mm, t1w_3mm

from smriflow.interfaces.bias import N4BiasCorrect
from smriflow.interfaces.brain_extraction import BrainExtraction
from smriflow.utils.metrics import dice

pytestmark = [pytest.mark.ants, pytest.mark.shared]


@pytest.fixture(scope="module")
def n4_3mm(shared_data, tmp_path_factory):
    folder = tmp_path_factory.mktemp("brain_n4")
    return N4BiasCorrect(in_file=t1w_3mm(shared_data, folder)).run(cwd=str(folder)).outputs.out_file


@pytest.fixture(scope="module")
def extraction(n4_3mm, tmp_path_factory):
    runs = []
    for name in ("a", "b"):
        folder = tmp_path_factory.mktemp(f"brain_{name}")
        runs.append(BrainExtraction(in_file=n4_3mm, num_threads=1).run(cwd=str(folder)).outputs)
    return runs


def test_outputs(n4_3mm, extraction):
    out = extraction[0]
    src = nb.load(n4_3mm)
    mask_img = nb.load(out.out_mask)
    assert mask_img.shape == src.shape and mask_img.get_data_dtype() == np.uint8
    np.testing.assert_allclose(mask_img.affine, src.affine)
    mask = np.asarray(mask_img.dataobj)
    assert set(np.unique(mask)) == {0, 1}
    # inside the field of view, away from its faces
    assert not mask[[0, -1]].any() and not mask[:, [0, -1]].any() and not mask[:, :, [0, -1]].any()
    brain = np.asarray(nb.load(out.out_file).dataobj)
    np.testing.assert_allclose(brain, np.asarray(src.dataobj) * mask, rtol=1e-6)
    prior = np.asarray(nb.load(out.out_prior).dataobj)
    assert prior.min() >= 0 and prior.max() <= 1
    assert out.out_affine.endswith("from-T1w_to-MNI152NLin2009aSym_mode-image_desc-affine_xfm.mat")
    report = json.loads(open(out.out_report).read())
    assert report["method"] == "ants" and 1100 < report["brain_volume_ml"] < 1700


def test_accuracy_against_freesurfer(shared_data, extraction):
    reference, _ = reference_3mm(shared_data, "brainmask.mgz")
    mask = np.asarray(nb.load(extraction[0].out_mask).dataobj)
    # LIA both (the T1w grid is FreeSurfer's); 3 mm partial volume costs a little Dice
    assert dice(mask, reference > 0) > 0.95


def test_identical_runs(extraction):
    first, second = (np.asarray(nb.load(r.out_mask).dataobj) for r in extraction)
    np.testing.assert_array_equal(first, second)


def test_affine_is_an_ants_transform(extraction):
    from smriflow.utils.antsenv import import_ants

    ants = import_ants(1)
    xfm = ants.read_transform(extraction[0].out_affine)
    params = np.asarray(xfm.parameters)
    assert params.shape == (12,)
    # maps template points to subject points: its determinant is the brain-volume ratio subject/template
    # (the template mask holds ~1.9 l), and it has no flip
    assert 0.5 < np.linalg.det(params[:9].reshape(3, 3)) < 1.0


def test_deepbet_method_keeps_every_output(shared_data, n4_3mm, tmp_path):
    """method=deepbet: the mask from the learned network, the template affine and prior still computed."""
    from smriflow.anat.brain_extraction.learned import learned_brain_mask

    out = BrainExtraction(in_file=n4_3mm, method="deepbet", num_threads=1).run(cwd=str(tmp_path)).outputs
    direct, _ = learned_brain_mask(nb.load(n4_3mm), num_threads=1)
    np.testing.assert_array_equal(np.asarray(nb.load(out.out_mask).dataobj) > 0, direct)
    assert out.out_affine.endswith("from-T1w_to-MNI152NLin2009aSym_mode-image_desc-affine_xfm.mat")
    report = json.loads(open(out.out_report).read())
    assert report["method"] == "deepbet" and report["refine"] is False
    assert report["deepbet_threshold"] == 0.5 and report["deepbet_n_dilate"] == 0
    assert report["brain_volume_ml"] == pytest.approx(direct.sum() * 27 / 1000)
    reference, _ = reference_3mm(shared_data, "brainmask.mgz")
    assert dice(direct, reference > 0) > 0.95


def test_unknown_method_lists_the_registered_ones():
    from smriflow.anat.brain_extraction import METHODS, extract_brain

    assert set(BrainExtraction.input_spec().trait("method").trait_type.values) == set(METHODS)
    expected = r"^'method' must be one of \['ants', 'deepbet', 'hybrid'\]\. 'bet' was provided\.$"
    with pytest.raises(ValueError, match=expected):
        extract_brain(nb.Nifti1Image(np.zeros((4, 4, 4), np.float32), np.eye(4)), method="bet")


def test_hybrid_method_records_its_path(shared_data, n4_3mm, tmp_path):
    """method=hybrid: every output, and a record saying which path ran, why, and the registration checks."""
    out = BrainExtraction(in_file=n4_3mm, method="hybrid", num_threads=1).run(cwd=str(tmp_path)).outputs
    mask = np.asarray(nb.load(out.out_mask).dataobj) > 0
    reference, _ = reference_3mm(shared_data, "brainmask.mgz")
    assert dice(mask, reference > 0) >= 0.95
    assert out.out_affine.endswith("from-T1w_to-MNI152NLin2009aSym_mode-image_desc-affine_xfm.mat")
    report = json.loads(open(out.out_report).read())
    assert report["method"] == "hybrid" and report["path"] == "refined" and report["refine"] is True
    assert report["start"] == "centre of mass" and report["retries"] == 0
    assert report["starts"][0]["passed"] is True and report["ncc"] >= 0.5
    assert "registration passed its checks" in report["path_reason"]
    assert report["brain_volume_ml"] == pytest.approx(mask.sum() * 27 / 1000)
