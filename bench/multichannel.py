"""Bench multichannel tissue segmentation (issue 9): does a T2w channel help against FreeSurfer?

The shared data hold no real T1w/T2w pair, so the T2w is synthesized, in two ways:

- **(b) from the T1w intensities**: :func:`smriflow.anat.contrasts.synthesize_t2w` of the bias-corrected
  T1w (inverted contrast, 3 % seeded noise). It carries no information the T1w does not have: the case where
  the extra channel adds nothing.
- **(c) from an independent tissue-contrast model**: FreeSurfer's ``aseg`` classes of the same subject at
  1 mm (cortex 600, deep GM 520, WM 320, ventricles and the unlabelled sulcal CSF inside ``brainmask.mgz``
  1000, other labels 500; outside the brain ``synthesize_t2w`` of the raw T1w, for a head-like image), its
  own smooth multiplicative bias (±10 %) and its own seeded noise (σ 40 at 1 mm; row (c2): σ 160, a GM/WM
  contrast-to-noise of 1.75 instead of 7), then block-averaged like the T1w (partial volume). Its contrast
  comes from the reference labels themselves, so it is an **optimistic upper bound**, not a real T2w.

Every T2w image goes through ``N4BiasCorrect`` as ``anat_preproc`` treats a T2w; they are made on the T1w grid
(the rigid registration, tested on its own in ``tests/workflows/test_contrasts.py``, is not repeated). The T1w
goes through ``N4BiasCorrect`` and ``BrainExtraction``; then ``TissueSegmentation`` (deep-GM prior from the
brain-extraction affine) runs (a) T1w only, the default, and with ``multichannel=True`` and each T2w. Two
more rows use :func:`smriflow.anat.tissue_segmentation.segment_tissues_multichannel` with ``include_t1w=True``
(Atropos on [T1w, T2w]), a variant that is not the default. Scores are Dice against the ``aseg`` classes
of :func:`smriflow.utils.metrics.fs_tissue_classes` on the same grid (aseg's CSF class is the ventricles
only, so CSF Dice is low for every method and not meaningful).

Usage::

    python bench/multichannel.py [--resolution 2] [--work-dir DIR] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nb
import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
T1W = "bids/sub-0002/anat/sub-0002_T1w.nii.gz"
FREESURFER = "aomic/derivatives/freesurfer/sub-0002/mri"

#: T2w intensity per tissue of the independent model (c)
T2_MODEL = {"cortex": 600.0, "deep_gm": 520.0, "wm": 320.0, "csf": 1000.0, "other": 500.0}


def downsample(img: nb.spatialimages.SpatialImage, factor: int, *, labels: bool = False) -> nb.Nifti1Image:
    """Block-average (labels: the block's voxel at offset ``factor // 2``) on the image's own grid."""
    data = np.asarray(img.dataobj)
    n = [s // factor for s in data.shape[:3]]
    if factor == 1:
        small = data
    elif labels:
        c = factor // 2
        small = data[c : n[0] * factor : factor, c : n[1] * factor : factor, c : n[2] * factor : factor]
    else:
        crop = data[: n[0] * factor, : n[1] * factor, : n[2] * factor].astype(np.float32)
        small = crop.reshape(n[0], factor, n[1], factor, n[2], factor).mean(axis=(1, 3, 5))
    affine = img.affine.copy()
    affine[:3, :3] *= factor
    affine[:3, 3] = img.affine[:3, :3] @ ([(factor - 1) / 2] * 3) + img.affine[:3, 3]
    out = nb.Nifti1Image(np.asarray(small), affine)
    out.set_qform(affine, 1)
    out.set_sform(affine, 1)
    return out


def independent_t2w(
    t1w: nb.spatialimages.SpatialImage, fs_dir: Path, *, noise: float = 40.0, seed: int = 1
) -> nb.Nifti1Image:
    """The T2w of model (c) on the 1 mm grid of ``t1w`` (which is FreeSurfer's grid)."""
    from smriflow.anat.contrasts import synthesize_t2w
    from smriflow.anat.tissue_segmentation import DEEP_GM_LABELS
    from smriflow.utils.metrics import fs_tissue_classes

    aseg_img = nb.load(fs_dir / "aseg.mgz")
    if aseg_img.shape != t1w.shape or not np.allclose(aseg_img.affine, t1w.affine, atol=1e-3):
        raise ValueError(f"{fs_dir / 'aseg.mgz'} is not on the grid of the T1w; this bench needs that.")
    aseg = np.asarray(aseg_img.dataobj).astype(np.int32)
    brain = np.asarray(nb.load(fs_dir / "brainmask.mgz").dataobj) > 0
    classes = fs_tissue_classes(aseg)
    out = np.asarray(synthesize_t2w(t1w, noise=0.0).dataobj, dtype=np.float32)  # outside the brain
    out[brain] = T2_MODEL["csf"]  # unlabelled voxels inside the brain: sulcal CSF
    out[brain & (aseg > 0)] = T2_MODEL["other"]
    out[classes["CSF"]] = T2_MODEL["csf"]
    out[classes["GM"]] = T2_MODEL["cortex"]
    out[np.isin(aseg, DEEP_GM_LABELS)] = T2_MODEL["deep_gm"]
    out[classes["WM"]] = T2_MODEL["wm"]
    rng = np.random.default_rng(seed)
    grid = np.indices(out.shape, dtype=np.float32) / np.array(out.shape, np.float32)[:, None, None, None]
    bias = 1 + 0.1 * np.sin(np.pi * grid[0]) * np.cos(np.pi * grid[2]) - 0.05 * grid[1]
    noisy = out * bias + noise * rng.standard_normal(out.shape).astype(np.float32) * (out > 50)
    img = nb.Nifti1Image(np.clip(noisy, 0, None).astype(np.float32), t1w.affine)
    img.set_qform(t1w.affine, 1)
    img.set_sform(t1w.affine, 1)
    return img


def scores(dseg: np.ndarray, reference: dict[str, np.ndarray]) -> dict[str, float]:
    """Dice of labels 1/2/3 with the aseg GM/WM/CSF classes."""
    from smriflow.utils.metrics import dice

    return {name: dice(dseg == k, reference[name]) for k, name in enumerate(("GM", "WM", "CSF"), start=1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, choices=(1, 2, 3), default=2, help="voxel size (mm)")
    parser.add_argument("--work-dir", type=Path, default=None, help="default: a temporary folder")
    parser.add_argument("--json", type=Path, default=None, help="also write the table to this JSON file")
    args = parser.parse_args(argv)

    from smriflow.anat.contrasts import synthesize_t2w
    from smriflow.anat.tissue_segmentation import segment_tissues_multichannel, warp_deep_gm_prior
    from smriflow.interfaces.bias import N4BiasCorrect
    from smriflow.interfaces.brain_extraction import BrainExtraction
    from smriflow.interfaces.tissue_segmentation import TissueSegmentation
    from smriflow.utils.metrics import fs_tissue_classes

    start = time.perf_counter()
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="multichannel_"))
    work.mkdir(parents=True, exist_ok=True)
    factor = args.resolution
    t1w_1mm = nb.load(SHARED / T1W)
    fs_dir = SHARED / FREESURFER
    corrected = {}

    def n4(name: str, img: nb.Nifti1Image) -> str:
        raw = work / f"sub-0002_{name}.nii.gz"
        img.to_filename(str(raw))
        return N4BiasCorrect(in_file=str(raw)).run(cwd=str(work)).outputs.out_file

    corrected["T1w"] = n4("T1w", downsample(t1w_1mm, factor))
    corrected["T2w_from_T1w"] = n4("T2w_from_T1w", synthesize_t2w(nb.load(corrected["T1w"]), seed=0))
    corrected["T2w_independent"] = n4("T2w_independent", downsample(independent_t2w(t1w_1mm, fs_dir), factor))
    noisy = independent_t2w(t1w_1mm, fs_dir, noise=160.0)
    corrected["T2w_independent_noisy"] = n4("T2w_independent_noisy", downsample(noisy, factor))
    brain = BrainExtraction(in_file=corrected["T1w"]).run(cwd=str(work)).outputs
    reference = fs_tissue_classes(
        np.asarray(downsample(nb.load(fs_dir / "aseg.mgz"), factor, labels=True).dataobj)
    )
    print(
        f"front end (N4 x3, brain extraction) at {factor} mm: {time.perf_counter() - start:.1f} s", flush=True
    )

    rows = []
    runs = {
        "(a) T1w only (default)": None,
        "(b) T1w + T2w from the T1w (no new information)": "T2w_from_T1w",
        "(c) T1w + T2w, independent model (optimistic upper bound)": "T2w_independent",
        "(c2) T1w + T2w, independent model, 4x the noise": "T2w_independent_noisy",
    }
    for label, t2w in runs.items():
        folder = work / (t2w or "t1w_only")
        folder.mkdir(exist_ok=True)
        inputs = {"in_file": corrected["T1w"], "in_mask": brain.out_mask, "in_xfm": brain.out_affine}
        if t2w:
            inputs.update(in_t2w=corrected[t2w], multichannel=True)
        tic = time.perf_counter()
        out = TissueSegmentation(**inputs).run(cwd=str(folder)).outputs
        seconds = time.perf_counter() - tic
        dseg = np.asarray(nb.load(out.out_dseg).dataobj)
        rows.append({"method": label, **scores(dseg, reference), "seconds": seconds})

    t1_img = nb.load(corrected["T1w"])
    t1 = np.asarray(t1_img.dataobj, dtype=np.float32)
    mask = np.asarray(nb.load(brain.out_mask).dataobj) > 0
    deep = warp_deep_gm_prior(t1_img, [brain.out_affine], [True])
    for label, t2w in (("(b') Atropos on [T1w, T2w from the T1w]", "T2w_from_T1w"),
                       ("(c') Atropos on [T1w, T2w independent]", "T2w_independent")):  # fmt: skip
        extra = {"T2w": np.asarray(nb.load(corrected[t2w]).dataobj, dtype=np.float32)}
        tic = time.perf_counter()
        _, dseg, _ = segment_tissues_multichannel(
            t1,
            extra,
            mask,
            t1_img.affine,
            zooms=t1_img.header.get_zooms()[:3],
            deep_gm=deep,
            include_t1w=True,
        )
        rows.append({"method": label, **scores(dseg, reference), "seconds": time.perf_counter() - tic})

    print(f"\nDice against FreeSurfer aseg classes, shared T1w (sub-0002) at {factor} mm")
    print(f"{'segmentation':<60} {'GM':>6} {'WM':>6} {'CSF':>6} {'time':>6}")
    for row in rows:
        print(
            f"{row['method']:<60} {row['GM']:6.3f} {row['WM']:6.3f} {row['CSF']:6.3f} {row['seconds']:5.1f}s"
        )
    print("(aseg's CSF class is the ventricles only: CSF Dice is not meaningful)")
    print(f"total {time.perf_counter() - start:.0f} s; work folder {work}")
    if args.json:
        args.json.write_text(json.dumps({"resolution_mm": factor, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
