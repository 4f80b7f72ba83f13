"""Lesion masks in anat_preproc: the wiring, and a synthetic lesion planted in the shared T1w (3 mm).

The lesions are spheres in deep white matter (FreeSurfer aseg of the same subject), given a grey-matter-like
or CSF-like intensity. Without the mask, segmentation calls them GM (or CSF) and the GM volume grows; with the
mask (N4 fit without it, filling before segmentation, as anat_preproc wires it) the GM volume stays within
1 % of the lesion-free image's.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nb
import numpy as np
import pytest
from _anat_data import reference_3mm, t1w_3mm
from scipy import ndimage

import smriflow
from smriflow.anat.lesions import lesion_tissue_fractions


def _edges(wf) -> set[tuple[str, str, str, str]]:
    graph = wf._create_flat_graph()
    return {
        (u.fullname.split(".", 1)[1], src, v.fullname.split(".", 1)[1], dst)
        for u, v, data in graph.edges(data=True)
        for src, dst in data["connect"]
    }


def test_anat_preproc_wires_the_lesion_mask_into_n4_segmentation_and_normalization():
    edges = _edges(smriflow.init_anat_preproc_wf())
    expected = {
        ("inputnode", "lesion_mask", "lesion", "in_file"),
        ("conform", "out_file", "lesion", "reference"),
        ("lesion", "out_fit_mask", "n4", "in_mask"),
        ("lesion", "out_mask", "lesion_fill", "in_lesion"),
        ("n4", "out_file", "lesion_fill", "in_file"),
        ("lesion_fill", "out_file", "brain_extraction_wf.inputnode", "t1w"),
        ("lesion_fill", "out_file", "denoise", "in_file"),  # denoised only when noisy (AdaptiveDenoise)
        ("denoise", "out_file", "tissue_segmentation_wf.inputnode", "t1w"),
        ("brain_extraction_wf.outputnode", "t1w_brain", "spatial_normalization_wf.inputnode", "t1w_brain"),
    }
    assert expected <= edges
    # the unfilled image stays the preprocessed T1w
    assert ("n4", "out_file", "outputnode", "t1w_preproc") in edges


def plant_lesions(data: np.ndarray, aseg: np.ndarray, zooms, value: float, n: int = 6) -> np.ndarray:
    """Spheres (radius <= 9 mm) at the deepest white-matter points, at least 30 mm apart; returns the mask."""
    wm = np.isin(aseg, (2, 41))
    depth = ndimage.distance_transform_edt(wm, sampling=zooms)
    grid = np.indices(wm.shape).astype(np.float64)
    free, lesion = depth.copy(), np.zeros(wm.shape, bool)
    for _ in range(n):
        centre = np.unravel_index(np.argmax(free), free.shape)
        r = np.sqrt(sum(((grid[i] - centre[i]) * zooms[i]) ** 2 for i in range(3)))
        lesion |= r <= min(depth[centre], 9.0)
        free[r < 30] = 0
    return lesion & wm


def segment(folder: Path, t1w: str, lesion: str | None) -> tuple[np.ndarray, np.ndarray]:
    """anat_preproc's first stages, node by node as it wires them; returns dseg and GM probability."""
    from smriflow.interfaces.bias import N4BiasCorrect
    from smriflow.interfaces.brain_extraction import BrainExtraction
    from smriflow.interfaces.conform import ConformImage
    from smriflow.interfaces.lesions import LesionFill, LesionMask
    from smriflow.interfaces.tissue_segmentation import TissueSegmentation

    folder.mkdir()
    conformed = ConformImage(in_file=t1w).run(cwd=folder).outputs.out_file
    masks = LesionMask(reference=conformed)
    if lesion:
        masks.inputs.in_file = lesion
    masks = masks.run(cwd=folder).outputs
    n4 = N4BiasCorrect(in_file=conformed, in_mask=masks.out_fit_mask).run(cwd=folder).outputs
    filled = LesionFill(in_file=n4.out_file, in_lesion=masks.out_mask).run(cwd=folder).outputs
    brain = BrainExtraction(in_file=filled.out_file).run(cwd=folder).outputs
    seg = TissueSegmentation(in_file=filled.out_file, in_mask=brain.out_mask, in_xfm=brain.out_affine)
    out = seg.run(cwd=folder).outputs
    return np.asarray(nb.load(out.out_dseg).dataobj), np.asarray(nb.load(out.out_probseg[0]).dataobj)


@pytest.fixture(scope="module")
def lesion_runs(shared_data, tmp_path_factory):
    folder = tmp_path_factory.mktemp("lesions")
    t1w = t1w_3mm(shared_data, folder)
    aseg, _ = reference_3mm(shared_data, "aseg.mgz")
    img = nb.load(t1w)
    data = np.asarray(img.dataobj, dtype=np.float32)
    zooms = [float(z) for z in img.header.get_zooms()[:3]]
    rng = np.random.default_rng(0)
    runs = {"clean": segment(folder / "clean", t1w, None)}
    lesion = None
    for kind, labels in (("gm", (3, 42)), ("csf", (4, 43))):
        value = float(np.median(data[np.isin(aseg, labels)]))
        lesion = plant_lesions(data, aseg, zooms, value)
        lesioned = data.copy()
        lesioned[lesion] = value * (1 + 0.03 * rng.standard_normal(int(lesion.sum())))
        path = folder / f"sub-01_acq-{kind}_T1w.nii.gz"
        nb.Nifti1Image(lesioned, img.affine, img.header).to_filename(str(path))
        mask = folder / "sub-01_label-lesion_roi.nii.gz"
        nb.Nifti1Image(lesion.astype(np.uint8), img.affine).to_filename(str(mask))
        runs[f"{kind}_nomask"] = segment(folder / f"{kind}_nomask", str(path), None)
        runs[f"{kind}_mask"] = segment(folder / f"{kind}_mask", str(path), str(mask))
    # the lesion on the conformed (RAS) grid the segmentations are on
    canonical = np.asarray(
        nb.as_closest_canonical(nb.Nifti1Image(lesion.astype(np.uint8), img.affine)).dataobj
    )
    voxel_ml = float(np.prod(zooms)) / 1000
    return runs, canonical > 0, voxel_ml


@pytest.mark.shared
@pytest.mark.slow
@pytest.mark.ants
@pytest.mark.parametrize(("kind", "called"), [("gm", "GM"), ("csf", "CSF")])
def test_a_masked_lesion_leaves_the_grey_matter_volume_within_one_percent(lesion_runs, kind, called):
    runs, lesion, voxel_ml = lesion_runs
    assert lesion.sum() * voxel_ml > 15  # ~19 ml of lesions, a heavy MS lesion load
    gm_clean = runs["clean"][1].sum() * voxel_ml
    dseg_nomask, gm_nomask = runs[f"{kind}_nomask"]
    dseg_mask, gm_mask = runs[f"{kind}_mask"]
    # without the mask, the lesions take the class their intensity mimics
    assert lesion_tissue_fractions(dseg_nomask, lesion)[called] > 0.8
    # with it, they are white matter, and GM is within 1 % of the lesion-free image
    assert lesion_tissue_fractions(dseg_mask, lesion)["WM"] > 0.95
    change_mask = abs(gm_mask.sum() * voxel_ml - gm_clean) / gm_clean
    change_nomask = abs(gm_nomask.sum() * voxel_ml - gm_clean) / gm_clean
    assert change_mask < 0.01
    assert change_nomask > 0.015  # the planted lesions do matter without the mask
