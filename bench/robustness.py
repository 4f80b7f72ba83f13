"""Bench ``anat_preproc`` on hard versions of the shared real T1w (issue 15's robustness bench).

Makes every variant of :data:`smriflow.data.variants.VARIANTS` from the shared T1w (no face, neck and
shoulders, a tilted or off-centre head, int16 / float / z-scored intensities, ±20 % and ±50 % bias, 3 % and
6 % Rician noise, 1 × 1 × 3 mm, 1.3 mm (acquired and interpolated) and 0.6 mm voxels, the top of the head cut,
no skull), writes them as the subjects of ONE temporary BIDS dataset (``sub-<variant>``), runs the real
``smriflow run anat_preproc`` once on all of them (MultiProc, ``--nprocs``), and prints per variant:

* brain, GM and WM Dice against FreeSurfer's ``brainmask.mgz > 0`` and the ``aseg`` classes of
  :func:`smriflow.utils.metrics.fs_tissue_classes`, each carried into the variant's space by the variant's
  own transform (:class:`smriflow.data.variants.Carry`), then onto the derivative's grid
  (:func:`anat_front.to_grid`);
* GM, WM and TIV volume change (%) against the unperturbed subject (``sub-orig``), from
  ``desc-summary_volumes.tsv``;
* the registration similarity ``reg_ncc`` of ``desc-iqms_T1w.json`` (docs/iqms.md);
* the subject's node time: its nodes' summed run times (``busy``; independent of how MultiProc
  interleaved the subjects) and the span from its first node's start to its last node's end;
* whether the subject failed, with the one-line error ``smriflow run`` printed.

``--voxel-size 3`` makes the variants from a copy of the T1w resampled to 3 mm (the quick mode the tests
use; voxel-size variants scale with it).

Usage::

    python bench/robustness.py [--variants orig,bias50,...] [--voxel-size MM] [--nprocs 2]
                               [--set KEY=VALUE ...] [--keep DIR] [--skip-run] [--markdown] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
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
SHARED = Path(os.environ.get("SMRIFLOW_SHARED_DATA", BENCH.parent.parent / "shared" / "data"))
sys.path.insert(0, str(BENCH))

from anat_accuracy import smriflow_command  # noqa: E402
from anat_front import to_grid  # noqa: E402
from anat_speed import node_times  # noqa: E402

T1W = SHARED / "bids/sub-0002/anat/sub-0002_T1w.nii.gz"
FREESURFER = SHARED / "aomic/derivatives/freesurfer/sub-0002/mri"
BASELINE = "orig"
#: Lines of ``smriflow run``'s summary that name a failure: ``sub-X: node N failed: error`` or ``sub-X: why``.
_FAILED = re.compile(r"^sub-(?P<label>[A-Za-z0-9]+): (?:node \S+ failed(?:: )?)?(?P<error>.*)$")


def make_dataset(
    root: Path,
    names: list[str],
    voxel_size: float | None,
    seed: int = 0,
    *,
    t1w: Path = T1W,
    freesurfer: Path = FREESURFER,
) -> None:
    """Write ``root/bids`` (the variants as subjects) and ``root/refs`` (their carried FreeSurfer volumes).

    ``freesurfer`` is the subject's ``mri/`` folder (``brainmask.mgz``, ``aseg.mgz``), aligned with ``t1w``
    in world coordinates. Variants ``root`` already holds (their last file written) are kept, so a bench
    can be extended or resumed; ``root/bench.json`` records the settings, which must not change.
    """
    settings = {"t1w": str(t1w), "freesurfer": str(freesurfer), "voxel_size": voxel_size, "seed": seed}
    record = root / "bench.json"
    if record.exists() and json.loads(record.read_text()) != settings:
        raise SystemExit(f"{root} holds variants made with other settings ({record}); use a new folder")
    done = [n for n in names if (root / "refs" / f"sub-{n}_aseg.nii.gz").exists()]
    names = [n for n in names if n not in done]
    if done:
        print(f"  kept from an earlier run: {', '.join(done)}")
    if not names:
        return
    from smriflow.data.variants import Context, identity, make_variant, resample_voxels
    from smriflow.utils.metrics import fs_tissue_classes

    image = nb.load(t1w)
    base = identity(image)
    if voxel_size:
        image, base = resample_voxels(image, (voxel_size,) * 3)
    brainmask, aseg = nb.load(freesurfer / "brainmask.mgz"), nb.load(freesurfer / "aseg.mgz")
    wm = fs_tissue_classes(base(aseg))["WM"]
    ctx = Context(brain_mask=brainmask, wm_level=float(np.median(np.asarray(image.dataobj)[wm])), seed=seed)
    bids, refs = root / "bids", root / "refs"
    refs.mkdir(parents=True, exist_ok=True)
    (bids).mkdir(parents=True, exist_ok=True)
    description = {"Name": "smriflow robustness bench", "BIDSVersion": "1.9.0", "DatasetType": "raw"}
    (bids / "dataset_description.json").write_text(json.dumps(description, indent=2) + "\n")
    record.write_text(json.dumps(settings, indent=2) + "\n")
    for name in names:
        start = time.perf_counter()
        variant = make_variant(name, image, ctx)
        anat = bids / f"sub-{name}" / "anat"
        anat.mkdir(parents=True, exist_ok=True)
        partial = anat / f"sub-{name}_T1w.partial.nii.gz"  # not a BIDS name: never taken for a T1w
        variant.image.to_filename(str(partial))
        partial.rename(anat / f"sub-{name}_T1w.nii.gz")
        carry = base.then(variant.carry)
        affine = variant.image.affine
        for ref, label in ((brainmask, "brainmask"), (aseg, "aseg")):
            data = carry(ref).astype(np.int16)
            nb.Nifti1Image(data, affine).to_filename(str(refs / f"sub-{name}_{label}.nii.gz"))
        print(f"  {name:<14} {variant.image.shape}  ({time.perf_counter() - start:.0f} s)", flush=True)


def run(
    root: Path, nprocs: int, labels: list[str] | None = None, settings: list[str] | None = None
) -> tuple[int, dict[str, str], float]:
    """``smriflow run anat_preproc`` on ``root/bids`` (all subjects, or ``labels``; ``settings`` are
    ``--set`` values); exit code, one error line per failed subject, wall time. The run's terminal output is
    appended to ``root/smriflow.out``.
    """
    cmd = smriflow_command() + ["run", "anat_preproc", "--bids-dir", str(root / "bids")]
    cmd += ["--output-dir", str(root / "out"), "--work-dir", str(root / "work")]
    cmd += ["--nprocs", str(nprocs), "--omp-nthreads", "1"]
    if labels:
        cmd += ["--participant-label", *labels]
    for setting in settings or []:
        cmd += ["--set", setting]
    print("$", " ".join(cmd), flush=True)
    start = time.perf_counter()
    env = {**os.environ, "COLUMNS": "200"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    with open(root / "smriflow.out", "a") as log:
        log.write(done.stdout + done.stderr)
    return done.returncode, failures(done.stdout), wall


def failures(stdout: str) -> dict[str, str]:
    """The first error line of each failed subject in ``smriflow run``'s summary."""
    errors: dict[str, str] = {}
    for line in stdout.splitlines():
        match = _FAILED.match(line.strip())
        if match:
            errors.setdefault(match["label"], match["error"] or "failed")
    return errors


def _derivative(out: Path, label: str, name: str) -> Path | None:
    path = out / f"sub-{label}" / "anat" / f"sub-{label}_{name}"
    return path if path.exists() else None


def score(root: Path, label: str) -> dict:
    """Dice, volumes (ml) and ``reg_ncc`` of one subject's derivatives (NaN where a file is missing)."""
    from smriflow.utils.metrics import dice, fs_tissue_classes

    out, nan = root / "out", float("nan")
    result = dict.fromkeys(("brain_dice", "gm_dice", "wm_dice", "gm_ml", "wm_ml", "tiv_ml", "reg_ncc"), nan)
    mask_file, dseg_file = (
        _derivative(out, label, "desc-brain_mask.nii.gz"),
        _derivative(out, label, "dseg.nii.gz"),
    )
    if mask_file and dseg_file:
        grid = nb.load(mask_file)
        ref_mask = to_grid(nb.load(root / "refs" / f"sub-{label}_brainmask.nii.gz"), grid) > 0
        classes = fs_tissue_classes(to_grid(nb.load(root / "refs" / f"sub-{label}_aseg.nii.gz"), grid))
        dseg = np.asarray(nb.load(dseg_file).dataobj)
        result["brain_dice"] = dice(np.asarray(grid.dataobj) > 0, ref_mask)
        result["gm_dice"] = dice(dseg == 1, classes["GM"])
        result["wm_dice"] = dice(dseg == 2, classes["WM"])
    volumes = _derivative(out, label, "desc-summary_volumes.tsv")
    if volumes:
        row = pd.read_csv(volumes, sep="\t").iloc[0]
        for key, column in (("gm_ml", "gm_volume_mm3"), ("wm_ml", "wm_volume_mm3"), ("tiv_ml", "tiv_mm3")):
            result[key] = float(row[column]) / 1000
    iqms = _derivative(out, label, "desc-iqms_T1w.json")
    if iqms:
        result["reg_ncc"] = float(json.loads(iqms.read_text()).get("reg_ncc", nan))
    return result


def table(root: Path, names: list[str], errors: dict[str, str]) -> pd.DataFrame:
    """One row per variant: the figures of the module docstring."""
    from smriflow.data.variants import VARIANTS

    times: dict[str, list[dict]] = {}
    for node in node_times(root / "work") if (root / "work").exists() else []:
        times.setdefault(node["subject"], []).append(node)
    rows = []
    for name in names:
        row = {"variant": name, "what": VARIANTS[name][0], **score(root, name)}
        mine = times.get(name, [])
        row["busy_s"] = sum(n["duration"] for n in mine) if mine else float("nan")
        row["span_s"] = (
            (max(n["end"] for n in mine) - min(n["start"] for n in mine)) if mine else float("nan")
        )
        row["error"] = errors.get(name, "")
        rows.append(row)
    frame = pd.DataFrame(rows).set_index("variant")
    if BASELINE in frame.index:
        for key in ("gm", "wm", "tiv"):
            frame[f"d_{key}_pct"] = 100 * (frame[f"{key}_ml"] / frame.loc[BASELINE, f"{key}_ml"] - 1)
    else:
        for key in ("gm", "wm", "tiv"):
            frame[f"d_{key}_pct"] = float("nan")
    return frame


COLUMNS = {
    "brain_dice": ("brain Dice", "{:.3f}"),
    "gm_dice": ("GM Dice", "{:.3f}"),
    "wm_dice": ("WM Dice", "{:.3f}"),
    "d_gm_pct": ("ΔGM %", "{:+.1f}"),
    "d_wm_pct": ("ΔWM %", "{:+.1f}"),
    "d_tiv_pct": ("ΔTIV %", "{:+.1f}"),
    "reg_ncc": ("reg NCC", "{:.3f}"),
    "busy_s": ("node time s", "{:.0f}"),
    "span_s": ("span s", "{:.0f}"),
}


def formatted(frame: pd.DataFrame) -> pd.DataFrame:
    """The table as strings ("–" for a missing figure), with the failure column last."""
    out = pd.DataFrame(index=frame.index)
    out["variant"] = [f"{name} ({frame.loc[name, 'what']})" for name in frame.index]
    for key, (title, fmt) in COLUMNS.items():
        out[title] = [("–" if math.isnan(v) else fmt.format(v)) for v in frame[key]]
    out["failed"] = [f"yes: {e}" if e else "no" for e in frame["error"]]
    return out.reset_index(drop=True)


def markdown(frame: pd.DataFrame) -> str:
    """A Markdown table of string cells (numbers right-aligned)."""
    lines = ["| " + " | ".join(frame.columns) + " |"]
    lines.append("|" + "|".join("---" if c in ("variant", "failed") else "---:" for c in frame.columns) + "|")
    lines += ["| " + " | ".join(str(v).replace("|", "\\|") for v in row) + " |" for row in frame.to_numpy()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from smriflow.data.variants import VARIANTS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--t1w", type=Path, default=T1W, help="the real T1w the variants are made from")
    parser.add_argument("--fs-dir", type=Path, default=FREESURFER, help="its FreeSurfer mri/ folder")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated (default: all)")
    parser.add_argument(
        "--voxel-size", type=float, default=None, help="make the variants from a copy at this voxel size (mm)"
    )
    parser.add_argument("--nprocs", type=int, default=2, help="MultiProc CPUs (smriflow run --nprocs)")
    parser.add_argument(
        "--batch",
        type=int,
        default=0,
        help="run N subjects per smriflow run, one run after the other (default: one run for all); on a "
        "loaded machine subjects then finish one batch at a time",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the random variants (bias, noise)")
    parser.add_argument(
        "--set",
        dest="settings",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an anat_preproc argument for the run (smriflow run --set; repeatable), e.g. denoise=never",
    )
    parser.add_argument(
        "--keep",
        type=Path,
        default=None,
        help="keep the dataset, derivatives and work here (a folder of an earlier run is resumed/extended)",
    )
    parser.add_argument("--skip-run", action="store_true", help="only score what --keep already holds")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown (for docs)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.variants.split(",") if n.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        parser.error(f"--variants: unknown {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    for path, option in ((args.t1w, "--t1w"), (args.fs_dir / "aseg.mgz", "--fs-dir")):
        if not args.skip_run and not path.exists():
            parser.error(f"{option}: {path} not found (set SMRIFLOW_SHARED_DATA to the shared data folder)")
    if args.skip_run and args.keep is None:
        parser.error("--skip-run needs --keep")
    if BASELINE not in names:
        print(f"note: without '{BASELINE}' the volume changes are not computed", file=sys.stderr)

    root = args.keep or Path(tempfile.mkdtemp(prefix="robustness_"))
    print(f"robustness bench in {root}: {len(names)} variant(s), voxel size {args.voxel_size or 'native'}")
    code, errors, wall = 0, {}, float("nan")
    if not args.skip_run:
        make_dataset(root, names, args.voxel_size, args.seed, t1w=args.t1w, freesurfer=args.fs_dir)
        load = os.getloadavg()
        batches = (
            [names[i : i + args.batch] for i in range(0, len(names), args.batch)] if args.batch else [None]
        )
        wall = 0.0
        for batch in batches:
            batch_code, batch_errors, batch_wall = run(root, args.nprocs, batch, args.settings)
            code, wall = max(code, batch_code), wall + batch_wall
            errors.update(batch_errors)
            print(f"  exit code {batch_code}, {batch_wall:.0f} s wall", flush=True)
        print(
            f"smriflow run: exit code {code}, {wall:.0f} s wall; load average before {load[0]:.1f}, "
            f"after {os.getloadavg()[0]:.1f}"
        )
    elif (root / "smriflow.out").exists():
        errors = failures((root / "smriflow.out").read_text())
    frame = table(root, names, errors)
    shown = formatted(frame)
    print(markdown(shown) if args.markdown else shown.to_string(index=False))
    if args.json:
        record = {"voxel_size": args.voxel_size, "settings": args.settings, "wall_s": wall, "exit_code": code}
        record["root"] = str(root)
        args.json.write_text(
            json.dumps({**record, "variants": frame.reset_index().to_dict("records")}, indent=2, default=str)
            + "\n"
        )
    if args.keep is None:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
