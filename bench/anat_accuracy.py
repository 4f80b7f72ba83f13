"""Bench the accuracy of the whole ``anat_preproc`` workflow against FreeSurfer, as ``smriflow run`` makes it.

Runs the real command (``smriflow run anat_preproc --bids-dir … --output-dir …``, in a child process) on the
shared BIDS dataset, then scores its derivatives of one subject against that subject's FreeSurfer volumes:

* brain-mask Dice against ``brainmask.mgz > 0``;
* GM and WM Dice of ``dseg`` against the ``aseg`` classes of :func:`smriflow.utils.metrics.fs_tissue_classes`
  (with the class volumes next to each other);
* CJV (FreeSurfer cortex / cerebral WM) of the input T1w, of ``desc-preproc_T1w`` and of FreeSurfer's
  ``nu.mgz``;
* the template-space integral of the modulated GM map over the native GM volume (1 by construction);
* the subcortical volumes of the Desikan-Killiany atlas TSV next to the ``aseg`` volumes of the same
  structures (voxel count x voxel volume, as ``aseg.stats`` reports them before partial-volume correction).

FreeSurfer's volumes are in its conformed LIA orientation; they are brought onto smriflow's (RAS, native)
grid through both images' affines (:func:`anat_front.to_grid`, exact for the shared T1w, whose grid is
FreeSurfer's).

Usage::

    python bench/anat_accuracy.py [--profile fast|precise] [--omp-nthreads N] [--output-dir DIR]
                                  [--work-dir DIR] [--skip-run] [--check] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nb
import numpy as np
import pandas as pd

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
SHARED = REPO.parent / "shared" / "data"
sys.path.insert(0, str(BENCH))

from anat_back import SUBCORTICAL, atlas_structure_volume  # noqa: E402
from anat_front import to_grid  # noqa: E402

#: The issue's targets for the ``fast`` profile (issue 3).
TARGETS = {"brain_dice": 0.98, "gm_dice": 0.88, "wm_dice": 0.92}


def smriflow_command() -> list[str]:
    """The ``smriflow`` console script of this interpreter's environment (or an equivalent ``-c`` call)."""
    script = Path(sys.executable).with_name("smriflow")
    if script.exists():
        return [str(script)]
    found = shutil.which("smriflow")
    if found:
        return [found]
    return [sys.executable, "-c", "import sys; from smriflow.cli.main import main; sys.exit(main())"]


def run_command(
    bids_dir: Path,
    output_dir: Path,
    work_dir: Path,
    *,
    profile: str,
    omp_nthreads: int,
    participant: str | None = None,
) -> list[str]:
    """The ``smriflow run anat_preproc`` command line of a bench run."""
    cmd = smriflow_command() + ["run", "anat_preproc", "--bids-dir", str(bids_dir)]
    cmd += ["--output-dir", str(output_dir), "--work-dir", str(work_dir)]
    cmd += ["--omp-nthreads", str(omp_nthreads), "--set", f"profile={profile}"]
    if participant:
        cmd += ["--participant-label", participant]
    return cmd


def derivative(output_dir: Path, label: str, name: str) -> Path:
    """``OUTPUT/sub-<label>/anat/sub-<label>_<name>``, which must exist."""
    path = output_dir / f"sub-{label}" / "anat" / f"sub-{label}_{name}"
    if not path.exists():
        raise FileNotFoundError(f"derivative not found: {path}")
    return path


def score(output_dir: Path, label: str, t1w: Path, fs_dir: Path, template: str, atlas: str) -> dict:
    """Every accuracy figure of the module docstring, as a dictionary (volumes in ml)."""
    from smriflow.anat.modulation import volume_mm3
    from smriflow.utils.metrics import cjv, dice, fs_tissue_classes

    ref = nb.load(derivative(output_dir, label, "desc-preproc_T1w.nii.gz"))
    voxel_ml = float(abs(np.linalg.det(ref.affine[:3, :3]))) / 1000
    aseg = to_grid(nb.load(fs_dir / "aseg.mgz"), ref)
    classes = fs_tissue_classes(aseg)
    fs_mask = to_grid(nb.load(fs_dir / "brainmask.mgz"), ref) > 0
    mask = np.asarray(nb.load(derivative(output_dir, label, "desc-brain_mask.nii.gz")).dataobj) > 0
    dseg = np.asarray(nb.load(derivative(output_dir, label, "dseg.nii.gz")).dataobj)

    result: dict = {
        "brain_dice": dice(mask, fs_mask),
        "brain_ml": mask.sum() * voxel_ml,
        "fs_brain_ml": fs_mask.sum() * voxel_ml,
        "gm_dice": dice(dseg == 1, classes["GM"]),
        "wm_dice": dice(dseg == 2, classes["WM"]),
    }
    for value, name in enumerate(("GM", "WM", "CSF"), start=1):
        result[f"{name.lower()}_ml"] = float(np.sum(dseg == value)) * voxel_ml
        result[f"aseg_{name.lower()}_ml"] = float(classes[name].sum()) * voxel_ml

    cortex, white = np.isin(aseg, (3, 42)), np.isin(aseg, (2, 41))
    images = {
        "input": to_grid(nb.load(t1w), ref),
        "preproc": np.asanyarray(ref.dataobj),
        "freesurfer_nu": to_grid(nb.load(fs_dir / "nu.mgz"), ref),
    }
    result["cjv"] = {name: cjv(data, cortex, white) for name, data in images.items()}

    native_gm = volume_mm3(derivative(output_dir, label, "label-GM_probseg.nii.gz"))
    modulated = volume_mm3(
        derivative(output_dir, label, f"space-{template}_label-GM_desc-modulated_probseg.nii.gz")
    )
    result["native_gm_ml"] = native_gm / 1000
    result["modulated_gm_ml"] = modulated / 1000
    result["modulated_over_native"] = modulated / native_gm

    table = pd.read_csv(derivative(output_dir, label, f"atlas-{atlas}_volumes.tsv"), sep="\t")
    rows = []
    for structure, codes in SUBCORTICAL.items():
        for side, code in zip(("Left", "Right"), codes, strict=True):
            volume, gm_volume = atlas_structure_volume(table, side, structure)
            aseg_ml = float(np.sum(aseg == code)) * voxel_ml
            rows.append(
                {
                    "structure": f"{side} {structure}",
                    "aseg_ml": aseg_ml,
                    "atlas_ml": volume / 1000,
                    "atlas_gm_ml": gm_volume / 1000,
                    "difference_pct": 100 * (volume / 1000 / aseg_ml - 1) if aseg_ml else float("nan"),
                }
            )
    result["subcortical"] = rows
    return result


def report(result: dict, atlas: str) -> list[str]:
    """Print the figures; return the targets that are missed."""
    print(
        f"brain mask Dice {result['brain_dice']:.4f}  (volume {result['brain_ml']:.0f} ml; "
        f"FreeSurfer brainmask {result['fs_brain_ml']:.0f} ml)"
    )
    print(f"GM Dice {result['gm_dice']:.4f}  WM Dice {result['wm_dice']:.4f}")
    for name in ("gm", "wm", "csf"):
        ours, theirs = result[f"{name}_ml"], result[f"aseg_{name}_ml"]
        print(f"  {name.upper():<3} volume {ours:7.1f} ml  (aseg class {theirs:7.1f} ml)")
    print("  (aseg labels only the ventricles' CSF, so CSF is not scored)")
    cjvs = result["cjv"]
    print(
        f"CJV (FreeSurfer cortex / cerebral WM; lower is better): input {cjvs['input']:.3f}  "
        f"preproc {cjvs['preproc']:.3f}  FreeSurfer nu {cjvs['freesurfer_nu']:.3f}"
    )
    print(
        f"modulated GM integral / native GM volume: {result['modulated_over_native']:.4f}  "
        f"({result['modulated_gm_ml']:.1f} / {result['native_gm_ml']:.1f} ml)"
    )
    table = pd.DataFrame(result["subcortical"])
    print(f"\nsubcortical volumes (ml): atlas-{atlas} in native space vs aseg voxel counts")
    rounding = {"aseg_ml": 2, "atlas_ml": 2, "atlas_gm_ml": 2, "difference_pct": 1}
    print(table.round(rounding).to_string(index=False))
    rel = table["difference_pct"].dropna()
    print(
        f"  median difference {rel.median():+.1f} %, median absolute difference {rel.abs().median():.1f} % "
        f"over {len(rel)} structures"
    )
    missed = []
    print("\ntargets (fast profile):")
    for key, floor in TARGETS.items():
        ok = result[key] >= floor
        missed += [] if ok else [key]
        print(f"  {key:<11} {result[key]:.4f} >= {floor:.2f}  {'ok' if ok else 'MISSED'}")
    return missed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bids-dir", type=Path, default=SHARED / "bids")
    parser.add_argument("--participant-label", default="0002", help="subject to run and score")
    parser.add_argument(
        "--fs-dir",
        type=Path,
        default=SHARED / "aomic/derivatives/freesurfer/sub-0002/mri",
        help="FreeSurfer mri/ folder of that subject (aseg.mgz, brainmask.mgz, nu.mgz)",
    )
    parser.add_argument("--profile", choices=("fast", "precise"), default="fast")
    parser.add_argument("--omp-nthreads", type=int, default=1, help="threads per node (ITK)")
    parser.add_argument(
        "--output-dir", type=Path, default=None, help="derivatives folder (default: a temporary one)"
    )
    parser.add_argument("--work-dir", type=Path, default=None, help="default: OUTPUT/../work")
    parser.add_argument("--skip-run", action="store_true", help="only score the derivatives in --output-dir")
    parser.add_argument("--template", default="MNI152NLin2009aSym")
    parser.add_argument("--atlas", default="desikankilliany", help="atlas of the subcortical volumes")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    if args.skip_run and args.output_dir is None:
        parser.error("--skip-run needs --output-dir")

    label = args.participant_label.removeprefix("sub-")
    output_dir = args.output_dir or Path(tempfile.mkdtemp(prefix="anat_accuracy_")) / "out"
    work_dir = args.work_dir or output_dir.parent / "work"
    if not args.skip_run:
        cmd = run_command(
            args.bids_dir,
            output_dir,
            work_dir,
            profile=args.profile,
            omp_nthreads=args.omp_nthreads,
            participant=label,
        )
        print("$", " ".join(cmd), flush=True)
        start = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
        wall = time.perf_counter() - start
        if done.returncode != 0:
            print(done.stdout, done.stderr, sep="\n", file=sys.stderr)
            print(f"smriflow run failed (exit code {done.returncode})", file=sys.stderr)
            return 2
        print(f"smriflow run: {wall:.1f} s wall (see bench/anat_speed.py for the breakdown)")
    print(f"derivatives {output_dir}  profile {args.profile}  omp_nthreads {args.omp_nthreads}\n")

    t1w = args.bids_dir / f"sub-{label}" / "anat" / f"sub-{label}_T1w.nii.gz"
    result = score(output_dir, label, t1w, args.fs_dir, args.template, args.atlas)
    missed = report(result, args.atlas)
    if args.json:
        record = {"profile": args.profile, "omp_nthreads": args.omp_nthreads, "output_dir": str(output_dir)}
        args.json.write_text(json.dumps({**record, **result}, indent=2) + "\n")
    return 1 if (args.check and missed) else 0


if __name__ == "__main__":
    sys.exit(main())
