"""Bench the first half of ``anat_preproc`` on the shared full-resolution T1w.

Runs ConformImage -> N4BiasCorrect -> BrainExtraction -> TissueSegmentation (the nipype interfaces, as the
workflow runs them, file I/O included) and prints the wall time of each stage, the process' peak RSS after
each stage, the brain-mask Dice against FreeSurfer's ``brainmask.mgz > 0``, GM/WM Dice against the ``aseg``
classes of :func:`smriflow.utils.metrics.fs_tissue_classes`, and the CJV before and after N4.

FreeSurfer's volumes are in its conformed LIA orientation; they are brought onto smriflow's (RAS) grid through
both images' affines (nearest neighbour), so the comparison happens in world space.

Usage::

    python bench/anat_front.py [--threads 1] [--profile fast] [--method ants|deepbet] [--use-syn]
                               [--no-prior] [--isolate] [--work-dir DIR]
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import nibabel as nb
import numpy as np
from scipy import ndimage

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"


def to_grid(src: nb.spatialimages.SpatialImage, ref: nb.spatialimages.SpatialImage) -> np.ndarray:
    """Resample ``src`` onto the grid of ``ref`` (nearest neighbour, world coordinates)."""
    vox = np.linalg.inv(src.affine) @ ref.affine
    data = np.asarray(src.dataobj)
    if np.allclose(vox[:3, :3], np.round(vox[:3, :3])) and np.allclose(vox[:3, 3], np.round(vox[:3, 3])):
        # a permutation/flip of axes: exact
        coords = np.indices(ref.shape[:3]).reshape(3, -1)
        idx = np.round(vox[:3, :3] @ coords + vox[:3, 3:4]).astype(int)
        inside = np.all((idx >= 0) & (idx < np.array(data.shape[:3])[:, None]), axis=0)
        out = np.zeros(idx.shape[1], dtype=data.dtype)
        out[inside] = data[tuple(idx[:, inside])]
        return out.reshape(ref.shape[:3])
    return ndimage.affine_transform(data, vox, output_shape=ref.shape[:3], order=0)


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def _run_isolated(iface, cwd: str, threads: int) -> tuple[dict, float]:
    """Run one interface in this (fresh) process; return its outputs and this process' peak RSS (GB)."""
    from smriflow.utils.threads import set_thread_env

    set_thread_env(threads)
    outputs = iface.run(cwd=cwd).outputs.get()
    return outputs, peak_rss_gb()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--t1w", type=Path, default=SHARED / "bids/sub-0002/anat/sub-0002_T1w.nii.gz")
    parser.add_argument("--fs-dir", type=Path, default=SHARED / "aomic/derivatives/freesurfer/sub-0002/mri")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--profile", choices=("fast", "precise"), default="fast")
    parser.add_argument("--method", choices=("ants", "deepbet"), default="ants", help="brain extraction")
    parser.add_argument("--use-syn", action="store_true", help="SyN stage in brain extraction")
    parser.add_argument("--no-prior", action="store_true", help="segment without the deep-GM prior")
    parser.add_argument("--work-dir", type=Path, default=None)
    parser.add_argument(
        "--isolate",
        action="store_true",
        help="run each stage in a fresh process (per-stage peak RSS; times then include imports)",
    )
    args = parser.parse_args(argv)

    from smriflow.utils.threads import set_thread_env

    set_thread_env(args.threads)  # before ITK starts in this process
    from smriflow.interfaces.bias import N4BiasCorrect
    from smriflow.interfaces.brain_extraction import BrainExtraction
    from smriflow.interfaces.conform import ConformImage
    from smriflow.interfaces.tissue_segmentation import TissueSegmentation
    from smriflow.utils.metrics import cjv, dice, fs_tissue_classes

    work = args.work_dir or Path(tempfile.mkdtemp(prefix="anat_front_"))
    times: dict[str, float] = {}

    def run(name, iface):
        folder = work / name
        folder.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        if args.isolate:
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
                outputs, rss = pool.submit(_run_isolated, iface, str(folder), args.threads).result()
            times[name] = time.perf_counter() - start
            print(f"{name:<14} {times[name]:6.1f} s   peak RSS of the stage {rss:.2f} GB", flush=True)
            return SimpleNamespace(**outputs)
        outputs = iface.run(cwd=str(folder)).outputs
        times[name] = time.perf_counter() - start
        print(f"{name:<14} {times[name]:6.1f} s   peak RSS so far {peak_rss_gb():.2f} GB", flush=True)
        return outputs

    print(f"T1w {args.t1w}  threads {args.threads}  profile {args.profile}  brain {args.method}  work {work}")
    t0 = time.perf_counter()
    conform = run("conform", ConformImage(in_file=str(args.t1w)))
    n4 = run("n4", N4BiasCorrect(in_file=conform.out_file, profile=args.profile, num_threads=args.threads))
    brain = run(
        "brain",
        BrainExtraction(
            in_file=n4.out_file, method=args.method, use_syn=args.use_syn, num_threads=args.threads
        ),
    )
    seg_inputs = {"in_file": n4.out_file, "in_mask": brain.out_mask, "num_threads": args.threads}
    if not args.no_prior:
        seg_inputs["in_xfm"] = brain.out_affine
    seg = run("segmentation", TissueSegmentation(**seg_inputs))
    total = time.perf_counter() - t0
    if not args.isolate:
        print(f"{'total':<14} {total:6.1f} s   peak RSS {peak_rss_gb():.2f} GB")
    else:
        print(f"{'total':<14} {total:6.1f} s")

    ref = nb.load(conform.out_file)
    fs_mask = to_grid(nb.load(args.fs_dir / "brainmask.mgz"), ref) > 0
    classes = fs_tissue_classes(to_grid(nb.load(args.fs_dir / "aseg.mgz"), ref))
    mask = np.asarray(nb.load(brain.out_mask).dataobj) > 0
    dseg = np.asarray(nb.load(seg.out_dseg).dataobj)
    raw = np.asarray(ref.dataobj, dtype=np.float32)
    corrected = np.asarray(nb.load(n4.out_file).dataobj, dtype=np.float32)
    aseg = to_grid(nb.load(args.fs_dir / "aseg.mgz"), ref)
    ctx, cwm = np.isin(aseg, (3, 42)), np.isin(aseg, (2, 41))
    cjv_in, cjv_n4 = cjv(raw, ctx, cwm), cjv(corrected, ctx, cwm)
    print(f"CJV (FreeSurfer cortex / cerebral WM): input {cjv_in:.3f}  N4 {cjv_n4:.3f}")
    vol = float(np.prod(ref.header.get_zooms()[:3])) / 1000
    ours, theirs = mask.sum() * vol, fs_mask.sum() * vol
    print(f"brain mask Dice {dice(mask, fs_mask):.4f}  (volume {ours:.0f} ml; FreeSurfer {theirs:.0f} ml)")
    gm, wm = dice(dseg == 1, classes["GM"]), dice(dseg == 2, classes["WM"])
    print(f"GM Dice {gm:.4f}  WM Dice {wm:.4f}")
    for label, name in enumerate(("GM", "WM", "CSF"), start=1):
        ours, theirs = np.sum(dseg == label) * vol, classes[name].sum() * vol
        print(f"  {name} volume {ours:7.1f} ml  (aseg class {theirs:7.1f} ml)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
