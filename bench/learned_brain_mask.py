"""Bench the learned brain extractor (deepbet through onnxruntime) against deepbet itself and FreeSurfer.

From the shared T1w it makes variants — a smooth bias field of ±50 %, Rician noise at 6 % of the white-matter
intensity, 1.3 mm voxels, the head tilted by 15° and moved off centre, int16 0–4095 and float 0–1
intensities, a field of view padded with 100 empty (or neck-like, the last slice repeated) slices below, an
RAS/permuted voxel order — and prints per variant the Dice of
:func:`smriflow.anat.brain_extraction.learned.learned_brain_mask` against FreeSurfer's ``brainmask.mgz > 0``
(carried into the variant's grid), its wall time, and, with ``--deepbet`` (needs torch and deepbet==1.0.2, so
run it in a separate environment), deepbet's own mask, time and the Dice between the two.

``--single`` runs the unperturbed image once in a fresh process and prints the wall time and peak RSS
(``ru_maxrss``), the figures to quote for the runtime and memory.

Usage::

    python bench/learned_brain_mask.py [--threads 2] [--deepbet] [--single] [--shared DIR]
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from collections.abc import Callable
from pathlib import Path

import nibabel as nb
import nibabel.processing
import numpy as np
from scipy import ndimage

from smriflow.anat.brain_extraction.learned import learned_brain_mask
from smriflow.utils.metrics import dice

REPO = Path(__file__).resolve().parents[1]
T1W = "bids/sub-0002/anat/sub-0002_T1w.nii.gz"
FREESURFER = "aomic/derivatives/freesurfer/sub-0002/mri"

Variant = tuple[nb.Nifti1Image, np.ndarray]  # image and the FreeSurfer mask on its grid


def _image(data: np.ndarray, affine: np.ndarray) -> nb.Nifti1Image:
    img = nb.Nifti1Image(data, affine)
    img.set_qform(affine, 1)
    img.set_sform(affine, 1)
    return img


def _smooth_field(shape: tuple[int, ...], amplitude: float) -> np.ndarray:
    """A smooth multiplicative field from 1 - amplitude to 1 + amplitude across the field of view."""
    x, y, z = np.meshgrid(*(np.linspace(-1, 1, n, dtype=np.float32) for n in shape), indexing="ij")
    f = 0.6 * x + 0.5 * y - 0.4 * z + 0.5 * x * y - 0.4 * y * z + 0.3 * np.cos(2 * x)
    f = 2 * (f - f.min()) / (f.max() - f.min()) - 1
    return (1 + amplitude * f).astype(np.float32)


def _move(data: np.ndarray, angle_deg: float, shift: tuple[float, float, float], order: int) -> np.ndarray:
    """Rotate about voxel axis 0 through the volume centre and shift (voxels), on the same grid."""
    a = np.deg2rad(angle_deg)
    rot = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    centre = (np.array(data.shape) - 1) / 2
    offset = centre - rot @ (centre + np.asarray(shift))
    return ndimage.affine_transform(data, rot, offset=offset, order=order, mode="constant", cval=0)


def _pad_below(img: nb.Nifti1Image, n: int, mode: str) -> nb.Nifti1Image:
    """Add ``n`` slices on the inferior side of the field of view (``constant`` 0 or ``edge``)."""
    ornt = nb.orientations.io_orientation(img.affine)
    axis = int(np.flatnonzero(ornt[:, 0] == 2)[0])  # the voxel axis along world z
    sign = ornt[axis, 1]
    data = np.asarray(img.dataobj)
    pad = [(0, 0)] * 3
    pad[axis] = (n, 0) if sign > 0 else (0, n)  # index 0 is inferior when the axis points superior
    affine = img.affine.copy()
    if sign > 0:
        affine[:3, 3] -= affine[:3, axis] * n
    return _image(np.pad(data, pad, mode=mode), affine)


def make_variants(t1w: nb.Nifti1Image, fs_mask: np.ndarray, wm: np.ndarray) -> dict[str, Variant]:
    """The perturbed copies of ``t1w`` and the FreeSurfer mask carried onto each one's grid."""
    data = t1w.get_fdata(dtype=np.float32)
    aff = t1w.affine
    mask8 = fs_mask.astype(np.uint8)
    rng = np.random.default_rng(0)
    sigma = 0.06 * float(np.median(data[wm]))
    noisy = np.hypot(data + rng.normal(0, sigma, data.shape), rng.normal(0, sigma, data.shape))
    int16 = np.round(data / data.max() * 4095).astype(np.int16)
    out: dict[str, Variant] = {
        "original": (t1w, fs_mask),
        "bias +-50%": (_image(data * _smooth_field(data.shape, 0.5), aff), fs_mask),
        "rician 6%": (_image(noisy.astype(np.float32), aff), fs_mask),
        "int16 0-4095": (_image(int16, aff), fs_mask),
        "float 0-1": (_image(data / data.max(), aff), fs_mask),
    }
    zoomed = nibabel.processing.resample_to_output(t1w, 1.3, order=1)
    mask13 = nibabel.processing.resample_from_to(_image(mask8, aff), zoomed, order=0)
    out["1.3 mm"] = (zoomed, np.asarray(mask13.dataobj) > 0)
    move: Callable[[np.ndarray, int], np.ndarray] = lambda a, o: _move(a, 15.0, (0, 18, -12), o)  # noqa: E731
    out["tilt 15 deg + shift"] = (_image(move(data, 1), aff), move(mask8, 0) > 0)
    for mode, name in (("constant", "pad 100 empty below"), ("edge", "pad 100 neck-like below")):
        img = _pad_below(t1w, 100, mode)
        out[name] = (img, np.asarray(_pad_below(_image(mask8, aff), 100, "constant").dataobj) > 0)
    ras = nb.as_closest_canonical(t1w)
    perm = ras.as_reoriented([[1, 1], [2, -1], [0, 1]])
    perm_mask = nb.as_closest_canonical(_image(mask8, aff)).as_reoriented([[1, 1], [2, -1], [0, 1]])
    out["permuted axes"] = (perm, np.asarray(perm_mask.dataobj) > 0)
    return out


def run_deepbet(img: nb.Nifti1Image, threads: int) -> np.ndarray:
    """deepbet's own mask (torch), on the input grid."""
    import warnings

    import deepbet
    import torch

    torch.set_num_threads(threads)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bet = deepbet.BrainExtraction(no_gpu=True)
        _, mask, _ = bet.run(img)
    return np.asarray(mask.dataobj) > 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--deepbet", action="store_true", help="compare with deepbet (torch) itself")
    parser.add_argument("--single", action="store_true", help="time and peak RSS of one run, then stop")
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data")
    args = parser.parse_args(argv)

    t1w = nb.load(args.shared / T1W)
    fs_mask = np.asarray(nb.load(args.shared / FREESURFER / "brainmask.mgz").dataobj) > 0
    if args.single:
        start, cpu = time.perf_counter(), time.process_time()
        mask, info = learned_brain_mask(t1w, num_threads=args.threads)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
        print(f"original: {wall:.1f} s wall, {cpu:.1f} s CPU, peak RSS {peak:.0f} MB, threads {args.threads}")
        print(f"load average {load} on {os.cpu_count()} cores")
        print(f"Dice vs FreeSurfer brainmask.mgz > 0: {dice(mask, fs_mask):.4f}; info {info}")
        return 0
    aseg = np.asarray(nb.load(args.shared / FREESURFER / "aseg.mgz").dataobj)
    variants = make_variants(t1w, fs_mask, np.isin(aseg, (2, 41)))
    print(f"{'variant':24s} {'shape':>15s} {'Dice FS':>8s} {'wall':>6s} {'CPU':>6s}", end="")
    print(f" {'deepbet':>7s} {'Dice FS':>8s} {'vs deepbet':>10s} {'differ':>6s}" if args.deepbet else "")
    for name, (img, ref) in variants.items():
        start, cpu = time.perf_counter(), time.process_time()
        mask, _ = learned_brain_mask(img, num_threads=args.threads)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        assert mask.shape == img.shape[:3]
        line = f"{name:24s} {str(img.shape):>15s} {dice(mask, ref):8.4f} {wall:5.1f}s {cpu:5.1f}s"
        if args.deepbet:
            start = time.perf_counter()
            theirs = run_deepbet(img, args.threads)
            wall = time.perf_counter() - start
            differ = int((mask != theirs).sum())
            line += f" {wall:6.1f}s {dice(theirs, ref):8.4f} {dice(mask, theirs):10.6f} {differ:6d}"
        print(line, flush=True)
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"threads {args.threads}; load average at the end {load} on {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
