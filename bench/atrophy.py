"""Bench brain extraction and registration on a synthetic atrophy of the shared T1w.

The atrophy is made with FreeSurfer's ``aseg`` of the same subject (same voxel grid as the T1w):

- **enlarged ventricles**: every non-cortical brain voxel within ``--ventricles-mm`` of the lateral
  ventricles (aseg 4, 43) takes a ventricle-like intensity;
- **thin cortex**: every cortical voxel (aseg 3, 42) within ``--cortex-mm`` of the outside of the brain
  tissue takes the same CSF-like intensity (wider sulci, thinner cortex).

Intensities are drawn (seeded) around the median ventricle intensity with its spread. Then the clean and the
atrophied image each go through ConformImage -> N4BiasCorrect -> BrainExtraction -> SpatialNormalization (the
interfaces ``anat_preproc`` runs), and the script prints

- the brain-mask Dice against FreeSurfer's ``brainmask.mgz > 0`` (the atrophy stays inside it);
- registration consistency: the Dice, in template space, between FreeSurfer structures that the atrophy
  leaves in place (thalamus, putamen, pallidum, hippocampus, amygdala, cerebral WM core, brainstem) warped
  with the clean image's transform and with the atrophied image's transform;
- the Dice of each image's warped brain mask with the template's brain mask.

Usage::

    python bench/atrophy.py [--resolution 1|3] [--profile fast|testing] [--ventricles-mm 4] [--cortex-mm 1.5]
                            [--work-dir DIR]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nb
import numpy as np
from scipy import ndimage

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
T1W = "bids/sub-0002/anat/sub-0002_T1w.nii.gz"
FREESURFER = "aomic/derivatives/freesurfer/sub-0002/mri"

#: aseg structures the synthetic atrophy does not move, scored for registration consistency
STRUCTURES = {
    "thalamus": (10, 49),
    "putamen": (12, 51),
    "pallidum": (13, 52),
    "hippocampus": (17, 53),
    "amygdala": (18, 54),
    "brainstem": (16,),
}
VENTRICLES = (4, 43)
CORTEX = (3, 42)


def synthesize_atrophy(
    data: np.ndarray,
    aseg: np.ndarray,
    zooms,
    *,
    ventricles_mm: float = 4.0,
    cortex_mm: float = 1.5,
    seed: int = 0,
) -> tuple[np.ndarray, dict[str, float]]:
    """Enlarge the lateral ventricles and thin the cortex of a T1w, using its FreeSurfer ``aseg``.

    Parameters
    ----------
    data : numpy.ndarray
        T1w on the grid of ``aseg``.
    aseg : numpy.ndarray
        FreeSurfer labels.
    zooms : sequence of float
        Voxel size in mm.
    ventricles_mm : float
        Non-cortical brain tissue within this distance of the lateral ventricles becomes CSF.
    cortex_mm : float
        Cortex within this distance of the outside of the brain tissue becomes CSF.
    seed : int
        Seed of the CSF intensities.

    Returns
    -------
    atrophied : numpy.ndarray
        float32 image.
    info : dict
        Volumes (ml) turned to CSF, and the cortex and ventricle volumes before and after.
    """
    zooms = [float(z) for z in zooms[:3]]
    voxel_ml = float(np.prod(zooms)) / 1000
    ventricles = np.isin(aseg, VENTRICLES)
    cortex = np.isin(aseg, CORTEX)
    tissue = (aseg > 0) & ~np.isin(aseg, (4, 5, 14, 15, 24, 43, 44, 72))  # brain tissue, no CSF
    keep = np.isin(aseg, [label for labels in STRUCTURES.values() for label in labels])
    near_ventricles = ndimage.distance_transform_edt(~ventricles, sampling=zooms) <= ventricles_mm
    grow = near_ventricles & tissue & ~cortex & ~keep
    thin = cortex & (ndimage.distance_transform_edt(tissue, sampling=zooms) <= cortex_mm)
    values = data[ventricles]
    median = float(np.median(values))
    spread = 1.4826 * float(np.median(np.abs(values - median)))
    rng = np.random.default_rng(seed)
    out = np.asarray(data, dtype=np.float32).copy()
    changed = grow | thin
    out[changed] = median + spread * rng.standard_normal(int(changed.sum())).astype(np.float32)
    info = {
        "ventricles_ml": float(ventricles.sum() * voxel_ml),
        "ventricles_after_ml": float((ventricles | grow).sum() * voxel_ml),
        "cortex_ml": float(cortex.sum() * voxel_ml),
        "cortex_after_ml": float((cortex & ~thin).sum() * voxel_ml),
    }
    return out, info


def block_labels(img: nb.spatialimages.SpatialImage, factor: int) -> nb.Nifti1Image:
    """Centre voxel of each factor³ block (labels), on the image's own grid."""
    data = np.asarray(img.dataobj)
    c = factor // 2
    n = [s // factor for s in data.shape]
    small = data[c : n[0] * factor : factor, c : n[1] * factor : factor, c : n[2] * factor : factor]
    return nb.Nifti1Image(small, _coarse_affine(img.affine, factor))


def block_mean(img: nb.spatialimages.SpatialImage, factor: int) -> nb.Nifti1Image:
    """Average of each factor³ block, on the image's own grid."""
    from smriflow.utils.grids import block_reduce

    small = block_reduce(np.asarray(img.dataobj, dtype=np.float32), (factor,) * 3)
    return nb.Nifti1Image(small, _coarse_affine(img.affine, factor))


def _coarse_affine(affine: np.ndarray, factor: int) -> np.ndarray:
    out = affine.copy()
    out[:3, :3] *= factor
    out[:3, 3] = affine[:3, :3] @ ([(factor - 1) / 2] * 3) + affine[:3, 3]
    return out


def atrophied_subject(
    shared: Path, resolution: int, *, ventricles_mm: float, cortex_mm: float, seed: int = 0
) -> tuple[dict[str, nb.Nifti1Image], nb.Nifti1Image, nb.Nifti1Image, dict[str, float]]:
    """The clean and atrophied T1w, the aseg and FreeSurfer's brain mask at ``resolution`` mm.

    The atrophy is made at the shared 1 mm (so that a 1.5 mm cortical thinning is possible), then the
    images are block-averaged (labels: block centres) when ``resolution`` is 3.
    """
    t1w = nb.load(shared / T1W)
    aseg = nb.load(shared / FREESURFER / "aseg.mgz")
    brain = nb.load(shared / FREESURFER / "brainmask.mgz")
    labels = np.asarray(aseg.dataobj).astype(np.int32)
    atrophied, info = synthesize_atrophy(
        np.asarray(t1w.dataobj, dtype=np.float32),
        labels,
        t1w.header.get_zooms()[:3],
        ventricles_mm=ventricles_mm,
        cortex_mm=cortex_mm,
        seed=seed,
    )
    images = {
        "clean": nb.Nifti1Image(np.asarray(t1w.dataobj, np.float32), t1w.affine),
        "atrophy": nb.Nifti1Image(atrophied, t1w.affine),
    }
    aseg, brain = (nb.Nifti1Image(np.asarray(i.dataobj).astype(np.int16), i.affine) for i in (aseg, brain))
    if resolution != 1:
        images = {name: block_mean(img, resolution) for name, img in images.items()}
        aseg, brain = block_labels(aseg, resolution), block_labels(brain, resolution)
    return images, aseg, brain, info


def run_front(t1w: Path, folder: Path, profile: str, threads: int) -> dict[str, str]:
    """ConformImage -> N4BiasCorrect -> BrainExtraction -> SpatialNormalization; the files that matter."""
    from smriflow.interfaces.bias import N4BiasCorrect
    from smriflow.interfaces.brain_extraction import BrainExtraction
    from smriflow.interfaces.conform import ConformImage
    from smriflow.interfaces.spatial_normalization import SpatialNormalization

    folder.mkdir(parents=True, exist_ok=True)
    conformed = ConformImage(in_file=str(t1w)).run(cwd=folder).outputs.out_file
    n4 = N4BiasCorrect(in_file=conformed, num_threads=threads).run(cwd=folder).outputs
    brain = BrainExtraction(in_file=n4.out_file, num_threads=threads).run(cwd=folder).outputs
    norm = SpatialNormalization(
        in_file=brain.out_file,
        in_mask=brain.out_mask,
        init_affine=brain.out_affine,
        profile=profile,
        num_threads=threads,
    ).run(cwd=folder)
    return {
        "conformed": conformed,
        "mask": brain.out_mask,
        "xfm": norm.outputs.out_xfm,
        "template": norm.outputs.out_template,
    }


def to_template(labels: nb.Nifti1Image, files: dict[str, str], folder: Path, name: str) -> np.ndarray:
    """Warp a label image (any grid aligned in world space with the T1w) into the template."""
    from smriflow.anat.spatial_normalization import apply_transforms

    path = folder / f"{name}.nii.gz"
    labels.to_filename(str(path))
    out = apply_transforms(
        path, files["template"], [files["xfm"]], folder / f"{name}_std.nii.gz", interpolation="genericLabel"
    )
    return np.asarray(nb.load(out).dataobj)


def on_grid(img: nb.spatialimages.SpatialImage, reference: str) -> np.ndarray:
    """Labels brought onto the grid of ``reference`` (nearest neighbour through the affines)."""
    from nilearn.image import resample_to_img

    ref = nb.load(reference)
    out = resample_to_img(img, ref, interpolation="nearest", force_resample=True, copy_header=True)
    return np.asarray(out.dataobj)


def score(
    shared: Path,
    work: Path,
    *,
    resolution: int,
    profile: str,
    ventricles_mm: float,
    cortex_mm: float,
    threads: int = 1,
) -> dict[str, float]:
    """Run both images and return every figure the module docstring lists."""
    from smriflow.data.templates import get_template
    from smriflow.utils.metrics import dice

    images, aseg, fs_brain, info = atrophied_subject(
        shared, resolution, ventricles_mm=ventricles_mm, cortex_mm=cortex_mm
    )
    labels = np.asarray(aseg.dataobj).astype(np.int32)
    work.mkdir(parents=True, exist_ok=True)
    inputs = {name: work / f"{name}_T1w.nii.gz" for name in images}
    for name, img in images.items():
        img.to_filename(str(inputs[name]))
    figures: dict[str, float] = dict(info)
    runs, warped = {}, {}
    for name, path in inputs.items():
        start = time.perf_counter()
        runs[name] = run_front(path, work / name, profile, threads)
        figures[f"{name}_seconds"] = time.perf_counter() - start
        mask = np.asarray(nb.load(runs[name]["mask"]).dataobj) > 0
        figures[f"{name}_brain_dice"] = dice(mask, on_grid(fs_brain, runs[name]["conformed"]) > 0)
        structures = np.zeros(labels.shape, np.int16)
        for index, codes in enumerate(STRUCTURES.values(), start=1):
            structures[np.isin(labels, codes)] = index
        warped[name] = to_template(
            nb.Nifti1Image(structures, aseg.affine), runs[name], work / name, "structures"
        )
        brain_std = to_template(
            nb.Nifti1Image(mask.astype(np.int16), nb.load(runs[name]["conformed"]).affine),
            runs[name],
            work / name,
            "brainmask",
        )
        resolution_mm = _resolution(runs[name])
        template_mask = get_template("MNI152NLin2009aSym", suffix="mask", resolution=resolution_mm)
        template_mask = np.asarray(nb.load(template_mask).dataobj)
        figures[f"{name}_template_mask_dice"] = dice(brain_std > 0, template_mask > 0)
    for index, structure in enumerate(STRUCTURES, start=1):
        figures[f"consistency_{structure}"] = dice(warped["clean"] == index, warped["atrophy"] == index)
    figures["consistency_mean"] = float(np.mean([figures[f"consistency_{s}"] for s in STRUCTURES]))
    figures["brain_dice_drop"] = figures["clean_brain_dice"] - figures["atrophy_brain_dice"]
    return figures


def _resolution(files: dict[str, str]) -> int:
    return int(round(float(nb.load(files["template"]).header.get_zooms()[0])))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--resolution", type=int, choices=(1, 3), default=1, help="work at 1 or 3 mm")
    parser.add_argument("--profile", default="fast", choices=("fast", "precise", "testing"))
    parser.add_argument("--ventricles-mm", type=float, default=4.0)
    parser.add_argument("--cortex-mm", type=float, default=1.5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--work-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    if not (SHARED / T1W).is_file():
        print(f"shared data not found: {SHARED / T1W}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work_dir or Path(tmp)
        figures = score(
            SHARED,
            work,
            resolution=args.resolution,
            profile=args.profile,
            ventricles_mm=args.ventricles_mm,
            cortex_mm=args.cortex_mm,
            threads=args.threads,
        )
    print(f"synthetic atrophy at {args.resolution} mm, profile {args.profile}")
    for key, value in figures.items():
        print(f"  {key:32s} {value:10.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
