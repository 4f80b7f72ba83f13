"""TissueSegmentation on the 3 mm shared T1w: probabilities, labels, deep-GM prior, input checks."""

from __future__ import annotations

import nibabel as nb
import numpy as np
import pytest
from _anat_data import reference_3mm, t1w_3mm

from smriflow.interfaces.bias import N4BiasCorrect
from smriflow.interfaces.brain_extraction import BrainExtraction
from smriflow.interfaces.tissue_segmentation import TissueSegmentation
from smriflow.utils.metrics import dice, fs_tissue_classes

pytestmark = [pytest.mark.ants, pytest.mark.shared]


@pytest.fixture(scope="module")
def front(shared_data, tmp_path_factory):
    folder = tmp_path_factory.mktemp("seg_front")
    n4 = N4BiasCorrect(in_file=t1w_3mm(shared_data, folder)).run(cwd=str(folder)).outputs
    brain = BrainExtraction(in_file=n4.out_file).run(cwd=str(folder)).outputs
    return n4.out_file, brain.out_mask, brain.out_affine


@pytest.fixture(scope="module")
def segmented(front, tmp_path_factory):
    t1w, mask, affine = front
    folder = tmp_path_factory.mktemp("seg")
    return TissueSegmentation(in_file=t1w, in_mask=mask, in_xfm=affine).run(cwd=str(folder)).outputs


def test_probseg_and_dseg(front, segmented):
    mask = np.asarray(nb.load(front[1]).dataobj) > 0
    assert [p.split("_label-")[1] for p in segmented.out_probseg] == [
        "GM_probseg.nii.gz",
        "WM_probseg.nii.gz",
        "CSF_probseg.nii.gz",
    ]
    probs = np.stack([np.asarray(nb.load(p).dataobj) for p in segmented.out_probseg], axis=-1)
    assert probs.dtype == np.float32 and probs.min() >= 0 and probs.max() <= 1
    np.testing.assert_allclose(probs[mask].sum(-1), 1.0, atol=1e-6)
    assert not probs[~mask].any()
    dseg_img = nb.load(segmented.out_dseg)
    assert dseg_img.get_data_dtype() == np.uint8
    dseg = np.asarray(dseg_img.dataobj)
    assert set(np.unique(dseg)) == {0, 1, 2, 3}
    assert not dseg[~mask].any() and dseg[mask].min() >= 1
    np.testing.assert_array_equal(dseg[mask], probs[mask].argmax(-1) + 1)


def test_accuracy_floor(shared_data, segmented):
    aseg, _ = reference_3mm(shared_data, "aseg.mgz")
    classes = fs_tissue_classes(aseg)
    dseg = np.asarray(nb.load(segmented.out_dseg).dataobj)
    # 3 mm voxels are mostly partial volume: a floor, not the 1 mm targets
    assert dice(dseg == 1, classes["GM"]) > 0.75
    assert dice(dseg == 2, classes["WM"]) > 0.8


def test_prior_moves_deep_grey_matter(shared_data, front, segmented, tmp_path):
    t1w, mask, _ = front
    plain = TissueSegmentation(in_file=t1w, in_mask=mask).run(cwd=str(tmp_path)).outputs
    aseg, _ = reference_3mm(shared_data, "aseg.mgz")
    thalamus = np.isin(aseg, (10, 49))
    with_prior = np.asarray(nb.load(segmented.out_dseg).dataobj)
    without = np.asarray(nb.load(plain.out_dseg).dataobj)
    assert (with_prior[thalamus] == 1).mean() > (without[thalamus] == 1).mean() + 0.3


def test_input_checks(front, tmp_path):
    t1w, mask, affine = front
    with pytest.raises(Exception, match="mutually exclusive"):
        TissueSegmentation(in_file=t1w, in_mask=mask, in_xfm=affine, in_template_xfm=affine).run(
            cwd=str(tmp_path)
        )
    other = tmp_path / "mask.nii.gz"
    nb.Nifti1Image(np.ones((5, 5, 5), np.uint8), np.eye(4)).to_filename(str(other))
    with pytest.raises(ValueError, match="'in_mask' must be on the grid of 'in_file'"):
        TissueSegmentation(in_file=t1w, in_mask=str(other)).run(cwd=str(tmp_path))


@pytest.mark.slow
def test_full_resolution_front_meets_targets(shared_data, tmp_path):
    """Conform -> N4 -> brain extraction -> segmentation on the 1 mm T1w, scored against FreeSurfer."""
    from _anat_data import FREESURFER, T1W

    from smriflow.interfaces.conform import ConformImage

    conform = ConformImage(in_file=str(shared_data / T1W)).run(cwd=str(tmp_path)).outputs
    n4 = N4BiasCorrect(in_file=conform.out_file).run(cwd=str(tmp_path)).outputs
    brain = BrainExtraction(in_file=n4.out_file).run(cwd=str(tmp_path)).outputs
    seg = TissueSegmentation(in_file=n4.out_file, in_mask=brain.out_mask, in_xfm=brain.out_affine).run(
        cwd=str(tmp_path)
    )
    ref = nb.load(conform.out_file)

    def freesurfer(name):  # FreeSurfer's volumes share the input grid: reorient them the same way
        img = nb.as_closest_canonical(nb.load(shared_data / FREESURFER / name))
        np.testing.assert_allclose(img.affine, ref.affine, atol=1e-4)
        return np.asarray(img.dataobj)

    mask = np.asarray(nb.load(brain.out_mask).dataobj)
    assert dice(mask, freesurfer("brainmask.mgz") > 0) >= 0.98
    classes = fs_tissue_classes(freesurfer("aseg.mgz"))
    dseg = np.asarray(nb.load(seg.outputs.out_dseg).dataobj)
    assert dice(dseg == 1, classes["GM"]) >= 0.88
    assert dice(dseg == 2, classes["WM"]) >= 0.92
