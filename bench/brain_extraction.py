"""Bench the brain-extraction methods (``ants``, ``deepbet``, ``hybrid``) on hard variants of the shared T1w.

Variants (the perturbation functions of ``bench/learned_brain_mask.py``, plus the ones below): the original;
a long field of view with 140 neck-like slices below (the lowest slice repeated: a column of neck tissue);
the head far off the volume's centre (80 empty slices added on three sides) and 60 mm away in world
coordinates; the head tilted by 22°; the top of the skull cut (field of view ending 3 mm above the brain);
skull-stripped (FreeSurfer's ``brainmask.mgz`` applied); a smooth bias field of ±50 %; Rician noise at 6 %
of the white-matter intensity; 1.3 mm voxels; z-scored intensities (negative background). Each variant is
N4-corrected first (:func:`smriflow.anat.bias.n4_correct`, as ``anat_preproc`` does; when N4 fails the
raw variant is used and the table says so), then every method runs on it. Printed per variant and method:
the brain Dice against FreeSurfer's ``brainmask.mgz > 0`` carried into the variant's grid, the normalized
cross-correlation of the subject's brain warped by the method's affine with the template in the template's
brain (2 mm), the wall and CPU time (all threads), and for ``hybrid`` the path it took, its start and
retries; then the worst case of each method. A method that raises counts as Dice 0.

Usage::

    python bench/brain_extraction.py [--threads 2] [--methods ants,deepbet,hybrid] [--variants a,b]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nb
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from learned_brain_mask import FREESURFER, REPO, T1W, _image, _move, _pad_below, make_variants  # noqa: E402

from smriflow.anat.bias import n4_correct  # noqa: E402
from smriflow.anat.brain_extraction import extract_brain  # noqa: E402
from smriflow.utils.metrics import dice  # noqa: E402

Variant = tuple[nb.Nifti1Image, np.ndarray]
KEEP = ("original", "bias +-50%", "rician 6%", "1.3 mm")


def _off_centre(img: nb.Nifti1Image, mask: np.ndarray, pad: int = 80, shift_mm: float = 60.0) -> list:
    """Add ``pad`` empty slices before axes 0 and 2 and after axis 1, and move the world origin."""
    widths = [(pad, 0), (0, pad), (pad, 0)]
    affine = img.affine.copy()
    affine[:3, 3] -= affine[:3, :3] @ np.array([pad, 0, pad])
    affine[:3, 3] += shift_mm
    data = np.pad(np.asarray(img.dataobj), widths)
    return [_image(data, affine), np.pad(mask, widths)]


def _top_cut(img: nb.Nifti1Image, mask: np.ndarray, margin_mm: float = 3.0) -> list:
    """Crop the field of view ``margin_mm`` above the top of the brain (the skull's top is cut away)."""
    ornt = nb.orientations.io_orientation(img.affine)
    axis = int(np.flatnonzero(ornt[:, 0] == 2)[0])
    zoom = float(img.header.get_zooms()[axis])
    extent = np.flatnonzero(mask.any(axis=tuple(i for i in range(3) if i != axis)))
    keep = [slice(None)] * 3
    affine = img.affine.copy()
    margin = int(round(margin_mm / zoom))
    if ornt[axis, 1] > 0:  # superior is the high end
        keep[axis] = slice(0, int(extent.max()) + 1 + margin)
    else:
        start = max(int(extent.min()) - margin, 0)
        keep[axis] = slice(start, None)
        affine[:3, 3] += affine[:3, axis] * start
    data = np.asarray(img.dataobj)[tuple(keep)]
    return [_image(np.ascontiguousarray(data), affine), np.ascontiguousarray(mask[tuple(keep)])]


def variants(shared: Path) -> dict[str, Variant]:
    """The bench's variants of the shared T1w with FreeSurfer's brain mask on each one's grid."""
    t1w = nb.load(shared / T1W)
    fs_mask = np.asarray(nb.load(shared / FREESURFER / "brainmask.mgz").dataobj) > 0
    aseg = np.asarray(nb.load(shared / FREESURFER / "aseg.mgz").dataobj)
    base = make_variants(t1w, fs_mask, np.isin(aseg, (2, 41)))
    data = t1w.get_fdata(dtype=np.float32)
    mask8 = fs_mask.astype(np.uint8)
    out = {name: base[name] for name in KEEP}
    neck_mask = _pad_below(_image(mask8, t1w.affine), 140, "constant")
    out["neck 140 slices"] = (_pad_below(t1w, 140, "edge"), np.asarray(neck_mask.dataobj) > 0)
    out["off-centre"] = tuple(_off_centre(t1w, fs_mask))
    tilted = _image(_move(data, 22.0, (0, 0, 0), 1), t1w.affine)
    out["tilt 22 deg"] = (tilted, _move(mask8, 22.0, (0, 0, 0), 0) > 0)
    out["top cut"] = tuple(_top_cut(t1w, fs_mask))
    out["skull-stripped"] = (_image(data * fs_mask, t1w.affine), fs_mask)
    head = data > 0.1 * np.percentile(data, 99)
    zscored = (data - data[head].mean()) / data[head].std()
    out["z-scored"] = (_image(zscored.astype(np.float32), t1w.affine), fs_mask)
    return out


def registration_ncc(img: nb.Nifti1Image, mask: np.ndarray, affine_xfm: str, template: str) -> float:
    """NCC of the brain (image times mask) warped by ``affine_xfm`` with the 2 mm template, in its brain."""
    from smriflow.data.templates import get_template
    from smriflow.utils.antsenv import import_ants
    from smriflow.utils.antsio import to_ants

    ants = import_ants(1)
    tpl = nb.load(get_template(template, resolution=2))
    tpl_mask = np.asarray(nb.load(get_template(template, resolution=2, suffix="mask")).dataobj) > 0
    data = np.asarray(img.dataobj, dtype=np.float32) * mask
    warped = ants.apply_transforms(
        to_ants(np.asarray(tpl.dataobj), tpl.affine, ants), to_ants(data, img.affine, ants), [affine_xfm]
    ).numpy()
    return float(np.corrcoef(warped[tpl_mask], np.asarray(tpl.dataobj)[tpl_mask])[0, 1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--methods", default="ants,deepbet,hybrid")
    parser.add_argument("--variants", default="", help="comma-separated names (default: all)")
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data")
    args = parser.parse_args(argv)
    methods = args.methods.split(",")
    chosen = [v for v in args.variants.split(",") if v]
    print(
        f"{'variant':18s} {'method':8s} {'Dice FS':>8s} {'NCC':>6s} {'wall':>6s} {'CPU':>6s}  path / error",
        flush=True,
    )
    worst: dict[str, tuple[float, str]] = {}
    for name, (raw, ref) in variants(args.shared).items():
        if chosen and name not in chosen:
            continue
        zooms = raw.header.get_zooms()[:3]
        try:
            corrected, _, _ = n4_correct(raw.get_fdata(dtype=np.float32), zooms, num_threads=args.threads)
            img, note = _image(corrected, raw.affine), ""
        except Exception as exc:  # noqa: BLE001 - the bench reports it and goes on
            img, note = raw, f"(N4 failed: {str(exc).splitlines()[0][:60]}; raw input) "
        for method in methods:
            start, cpu = time.perf_counter(), time.process_time()
            with tempfile.TemporaryDirectory() as tmp:
                try:
                    result = extract_brain(img, method=method, work_dir=tmp, num_threads=args.threads)
                    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
                    score = dice(result.mask, ref)
                    ncc = registration_ncc(img, result.mask, result.affine_xfm, result.info["template"])
                    info = result.info
                    path = (
                        f"{info['path']}; start '{info['start']}', retries {info['retries']}, "
                        f"dice_prior {info['dice_prior']}, ncc {info['ncc']}"
                        if method == "hybrid"
                        else ""
                    )
                except Exception as exc:  # noqa: BLE001
                    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
                    score, ncc, path = 0.0, float("nan"), f"ERROR {exc}"
            print(
                f"{name:18s} {method:8s} {score:8.4f} {ncc:6.3f} {wall:5.1f}s {cpu:5.1f}s  {note}{path}",
                flush=True,
            )
            if method not in worst or score < worst[method][0]:
                worst[method] = (score, name)
    print("worst case per method:")
    for method, (score, name) in worst.items():
        print(f"  {method:8s} Dice {score:.4f} ({name})")
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"threads {args.threads}; load average at the end {load} on {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
