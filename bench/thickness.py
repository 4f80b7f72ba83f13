"""Bench smriflow's cortical thickness (:mod:`smriflow.anat.thickness`) against FreeSurfer on the shared T1w.

Runs ``smriflow run anat_preproc`` on one subject of the shared BIDS dataset (unless ``--skip-run``), then
measures the thickness step (:func:`~smriflow.anat.thickness.thickness_image`, in a fresh child process: wall
time, CPU time and peak RSS) and compares the Desikan-Killiany regional thickness with FreeSurfer's
(``fs_stats/data-cortical_type-aparc_measure-thickness_hemi-{lh,rh}.tsv``, the subject's row) over the 68
regions: Pearson and Spearman r, mean absolute difference, mean bias (ours - FreeSurfer), the mean of the
68 regions and each hemisphere's mean thickness (FreeSurfer's ``MeanThickness``).

Four rows separate the sources of disagreement:

* ``smriflow``: smriflow's GM/WM memberships, its bias-corrected T1w (the GM/WM boundary on the intensity
  edge) and its warped ``desikan_killiany`` atlas (what a user gets);
* ``smriflow, memberships only``: the same without the T1w (both boundaries at the memberships' 0.5
  isosurfaces: the method before issue 16's bias fix);
* ``smriflow seg + FS regions``: as ``smriflow``, regions from FreeSurfer's ``aparc+aseg.mgz`` (parcellation
  error removed);
* ``FS ribbon + FS regions``: binary memberships from FreeSurfer's ``ribbon.mgz`` (cortex 3/42, white matter
  2/41) with the ``aparc+aseg`` regions: the thickness method alone on FreeSurfer's own tissue boundaries.

``--variants`` then repeats the ``smriflow`` row with intensity variants of the bias-corrected T1w
(:mod:`smriflow.data.variants`: smooth bias, Rician noise, another GM/WM contrast), the memberships and atlas
kept, and prints the worst case over them: the intensity edge is the only input of the thickness step that
they change (the memberships-only row does not depend on them). The segmentation is not re-run on them.

It also prints where the ``smriflow`` row's GM/WM boundary lies against FreeSurfer's white surface: the signed
distance (mm, positive outwards) of its samples within 2 mm of FreeSurfer's cortex to the boundary of
``ribbon.mgz``'s white matter, for the memberships' ``WM = 0.5`` surface and for that surface moved to the
T1w's edge (:func:`~smriflow.anat.thickness.boundaries.edge_surface`, the thickness step's defaults, no atlas
masks held fixed).

FreeSurfer's volumes are brought onto the T1w grid with :func:`anat_front.to_grid` (world coordinates,
nearest neighbour; exact for the shared T1w, whose grid is FreeSurfer's conformed grid).

Usage::

    python bench/thickness.py [--participant 0002] [--output-dir DIR] [--skip-run] [--workers 2] [--json FILE]
        [--variants orig,bias20,noise3,gamma07,gamma14] [--weighting area|volume]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import nibabel as nb
import numpy as np
import pandas as pd
from scipy import stats

BENCH = Path(__file__).resolve().parent
SHARED = BENCH.parent.parent / "shared" / "data"
sys.path.insert(0, str(BENCH))

from anat_accuracy import derivative, run_command  # noqa: E402
from anat_front import to_grid  # noqa: E402

#: The issue's targets (issue 16).
TARGETS = {"pearson_r": 0.80, "mad_mm": 0.30, "global_mean_mm": 0.15}


#: Intensity variants of the bias-corrected T1w (``--variants``): label -> (what it is, how it is made).
INTENSITY_VARIANTS = {
    "orig": "unperturbed",
    "bias20": "±20 % smooth bias",
    "noise3": "Rician noise 3 % of WM",
    "gamma07": "lower GM/WM contrast (x^0.7)",
    "gamma14": "higher GM/WM contrast (x^1.4)",
}


def make_intensity_variant(name: str, t1w: nb.Nifti1Image, wm: np.ndarray) -> nb.Nifti1Image:
    """Variant ``name`` of :data:`INTENSITY_VARIANTS` of the bias-corrected T1w (same grid)."""
    from smriflow.data import variants

    if name == "orig":
        return variants.unchanged(t1w).image
    if name == "bias20":
        return variants.smooth_bias(t1w, 0.2).image
    if name == "noise3":
        level = float(np.median(np.asarray(t1w.dataobj)[wm > 0.9]))
        return variants.rician_noise(t1w, 0.03, level).image
    if name.startswith("gamma"):
        return variants.contrast_gamma(t1w, int(name[5:]) / 10).image
    raise ValueError(f"unknown intensity variant {name!r}; choose from {', '.join(INTENSITY_VARIANTS)}")


def _thickness_step(gm: str, wm: str, atlas: str, out_dir: str, workers: int, t1w: str | None) -> dict:
    """Run the thickness step in this (fresh) process; return its timings, peak RSS and output paths."""
    from smriflow.anat.thickness import thickness_image
    from smriflow.data.atlases import atlas_labels

    labels = atlas_labels("desikan_killiany")
    wall, cpu = time.perf_counter(), time.process_time()
    thick, region = thickness_image(gm, wm, atlas, labels, t1w=t1w, workers=workers)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    paths = {
        "thickness": str(Path(out_dir) / "thickness.nii.gz"),
        "region": str(Path(out_dir) / "region.nii.gz"),
    }
    thick.to_filename(paths["thickness"])
    region.to_filename(paths["region"])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    return {"wall_s": wall, "cpu_s": cpu, "peak_rss_gb": peak, **paths}


def run_isolated(gm, wm, atlas, out_dir: Path, workers: int, t1w=None) -> dict:
    """:func:`_thickness_step` in a fresh spawned process, so its peak RSS is the step's own."""
    context = multiprocessing.get_context("spawn")
    t1w = None if t1w is None else str(t1w)
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(_thickness_step, str(gm), str(wm), str(atlas), str(out_dir), workers, t1w).result()


def freesurfer_row(fs_stats: Path, participant: str) -> dict[str, float]:
    """FreeSurfer's aparc thickness of ``sub-<participant>``, both hemispheres, as one dict of columns."""
    row: dict[str, float] = {}
    for hemi in ("lh", "rh"):
        path = fs_stats / f"data-cortical_type-aparc_measure-thickness_hemi-{hemi}.tsv"
        table = pd.read_csv(path, sep="\t", index_col=0)
        row.update(table.loc[f"sub-{participant}"].astype(float).to_dict())
    return row


def white_surface_offset(
    wm: np.ndarray, brain: np.ndarray, t1w: np.ndarray, ribbon: np.ndarray, spacing: np.ndarray
) -> dict[str, tuple[float, float]]:
    """Signed distance (mean, median; mm, + outwards) of a GM/WM boundary to FreeSurfer's white one.

    ``wm`` and ``brain`` (GM + WM) are memberships, ``t1w`` the bias-corrected T1w and ``ribbon``
    FreeSurfer's ``ribbon.mgz``, all on one grid of voxel size ``spacing``; the boundary samples within 2 mm
    of FreeSurfer's cortex count. The white surface is the boundary of its white matter (labels 2 and 41),
    at the voxel faces. Two boundaries are measured: the memberships' ``WM = 0.5`` surface, and the same
    moved to the T1w's edge with the thickness step's defaults (no atlas masks held fixed).
    """
    import inspect

    from scipy import ndimage

    from smriflow.anat.thickness import cortical_thickness
    from smriflow.anat.thickness.boundaries import edge_surface, isosurface, local_means, surface_samples

    defaults = inspect.signature(cortical_thickness).parameters
    spacing = np.asarray(spacing, dtype=float)
    fs_wm = np.isin(ribbon, (2, 41))
    inside = ndimage.distance_transform_edt(fs_wm, sampling=spacing)
    outside = ndimage.distance_transform_edt(~fs_wm, sampling=spacing)
    half = 0.5 * float(spacing.min())  # voxel centre to face
    signed = np.where(fs_wm, half - inside, outside - half).astype(np.float32)
    near = ndimage.distance_transform_edt(~np.isin(ribbon, (3, 42)), sampling=spacing) <= 2.0
    mean_gm, mean_wm = local_means(t1w, [brain - wm, wm], spacing)
    search = defaults["edge_search"].default * float(spacing.min())
    surfaces = {
        "memberships (WM = 0.5)": surface_samples(*isosurface(wm, 0.5, spacing)),
        "T1w edge (the thickness step)": edge_surface(
            wm, t1w, spacing, None, search, defaults["edge_smoothing"].default, mean_gm, mean_wm
        )[0],
    }
    out = {}
    for name, points in surfaces.items():
        index = points / spacing
        keep = near[tuple(np.clip(np.round(index).astype(int), 0, np.array(near.shape) - 1).T)]
        d = ndimage.map_coordinates(signed, index[keep].T, order=1)
        out[name] = (float(d.mean()), float(np.median(d)))
    return out


def compare(
    thickness: np.ndarray,
    region: np.ndarray,
    fs: dict[str, float],
    participant: str,
    zooms=(1.0, 1.0, 1.0),
    weighting: str = "area",
) -> dict:
    """Agreement of the regional tables of one thickness map with FreeSurfer's row.

    ``weighting``: ``area`` weighs each voxel by the surface it stands for (what ``anat_preproc`` writes);
    ``volume`` counts every voxel alike (smriflow before the surface weighting).
    """
    from smriflow.anat.thickness import area_weights, regional_thickness
    from smriflow.data.atlases import atlas_labels

    weights = area_weights(thickness, zooms) if weighting == "area" else None
    tables = regional_thickness(
        thickness, region, atlas_labels("desikan_killiany"), "desikan_killiany", participant, weights
    )
    ours = {**tables["lh"].iloc[0].to_dict(), **tables["rh"].iloc[0].to_dict()}
    keys = [k for k in fs if k.endswith("_thickness") and "MeanThickness" not in k]
    a = np.array([fs[k] for k in keys])
    b = np.array([ours.get(k, np.nan) for k in keys])
    ok = np.isfinite(b)
    result = {
        "regions": int(ok.sum()),
        "pearson_r": float(stats.pearsonr(a[ok], b[ok])[0]),
        "spearman_r": float(stats.spearmanr(a[ok], b[ok])[0]),
        "mad_mm": float(np.mean(np.abs(b[ok] - a[ok]))),
        "bias_mm": float(np.mean(b[ok] - a[ok])),
        "regions_mean_mm": float(np.mean(b[ok])),
        "fs_regions_mean_mm": float(np.mean(a[ok])),
    }
    for hemi in ("lh", "rh"):
        key = f"{hemi}_MeanThickness_thickness"
        result[f"{hemi}_mean_mm"], result[f"fs_{hemi}_mean_mm"] = float(ours[key]), float(fs[key])
    result["per_region"] = {k: [float(x), float(y)] for k, x, y in zip(keys, a, b, strict=True)}
    return result


def report(results: dict, label: str, load: float, workers: int, first: str = "tissues + regions") -> None:
    """Print the comparison as a Markdown table, and whether the issue's targets are met."""
    print(
        f"\nsub-{label}: Desikan-Killiany thickness against FreeSurfer (68 regions); load average {load:.1f}"
    )
    print(f"on {os.cpu_count()} cores, {workers} threads for the thickness step\n")
    columns = [first, "r", "Spearman", "MAD (mm)", "bias (mm)", "mean of regions (FS)"]
    columns += ["lh / rh mean (FS)", "wall (s)", "CPU (s)", "peak RSS (GB)"]
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for name, r in results.items():
        cells = [name, f"{r['pearson_r']:.3f}", f"{r['spearman_r']:.3f}", f"{r['mad_mm']:.3f}"]
        cells += [f"{r['bias_mm']:+.3f}", f"{r['regions_mean_mm']:.3f} ({r['fs_regions_mean_mm']:.3f})"]
        hemis = f"{r['lh_mean_mm']:.3f} / {r['rh_mean_mm']:.3f}"
        cells += [f"{hemis} ({r['fs_lh_mean_mm']:.3f} / {r['fs_rh_mean_mm']:.3f})"]
        cells += [f"{r['wall_s']:.1f}", f"{r['cpu_s']:.1f}", f"{r['peak_rss_gb']:.2f}"]
        print("| " + " | ".join(cells) + " |")
    worst = {
        "pearson_r": min(r["pearson_r"] for r in results.values()),
        "mad_mm": max(r["mad_mm"] for r in results.values()),
        "error_mm": max(abs(r["regions_mean_mm"] - r["fs_regions_mean_mm"]) for r in results.values()),
        "hemi_error_mm": max(_hemi_error(r) for r in results.values()),
    }
    main_row = results.get("smriflow", worst)
    error = abs(main_row["regions_mean_mm"] - main_row["fs_regions_mean_mm"]) if main_row is not worst else 0
    if first != "tissues + regions":  # the variants' table: the worst case over its rows
        main_row, error, which = worst, worst["error_mm"], "worst case over the variants"
    else:
        which = "smriflow row"
    r, mad = main_row["pearson_r"], main_row["mad_mm"]
    hemi = worst["hemi_error_mm"] if main_row is worst else _hemi_error(main_row)
    limit = TARGETS["global_mean_mm"]
    checks = [
        f"r >= {TARGETS['pearson_r']}: {r >= TARGETS['pearson_r']} ({r:.3f})",
        f"MAD <= {TARGETS['mad_mm']} mm: {mad <= TARGETS['mad_mm']} ({mad:.3f})",
        f"mean of regions within {limit} mm: {error <= limit} ({error:.3f} mm)",
        f"each hemisphere's MeanThickness within {limit} mm: {hemi <= limit} ({hemi:.3f} mm)",
    ]
    print(f"\ntargets ({which}): " + "; ".join(checks))


def _hemi_error(r: dict) -> float:
    """The larger of the two hemispheres' MeanThickness differences from FreeSurfer's (mm)."""
    return max(abs(r[f"{h}_mean_mm"] - r[f"fs_{h}_mean_mm"]) for h in ("lh", "rh"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--participant", default="0002")
    parser.add_argument("--shared-dir", type=Path, default=SHARED, help="the shared data folder")
    parser.add_argument(
        "--output-dir", type=Path, help="anat_preproc derivatives (default: a temporary folder)"
    )
    parser.add_argument("--work-dir", type=Path)
    parser.add_argument("--skip-run", action="store_true", help="reuse the derivatives of --output-dir")
    parser.add_argument("--workers", type=int, default=2, help="threads of the thickness step")
    parser.add_argument("--json", type=Path, help="write every figure here")
    parser.add_argument(
        "--weighting",
        choices=("area", "volume"),
        default="area",
        help="regional means weighted by the surface each voxel stands for (as written), or by voxel",
    )
    parser.add_argument(
        "--variants",
        default="",
        help=f"comma-separated intensity variants of the T1w ({', '.join(INTENSITY_VARIANTS)}), or 'all'",
    )
    args = parser.parse_args(argv)
    label = args.participant
    fs_dir = args.shared_dir / "aomic" / "derivatives" / "freesurfer" / f"sub-{label}" / "mri"
    scratch = Path(tempfile.mkdtemp(prefix="smriflow-thickness-"))
    output_dir = args.output_dir or scratch / "deriv"
    if not args.skip_run:
        work_dir = args.work_dir or scratch / "work"
        cmd = run_command(
            args.shared_dir / "bids", output_dir, work_dir, profile="fast", omp_nthreads=2, participant=label
        )
        print("running:", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)
    gm = derivative(output_dir, label, "label-GM_probseg.nii.gz")
    wm = derivative(output_dir, label, "label-WM_probseg.nii.gz")
    t1w = derivative(output_dir, label, "desc-preproc_T1w.nii.gz")
    try:
        atlas = derivative(output_dir, label, "space-T1w_atlas-desikankilliany_dseg.nii.gz")
    except FileNotFoundError:  # derivatives of an older smriflow
        atlas = derivative(output_dir, label, "atlas-desikankilliany_dseg.nii.gz")
    fs = freesurfer_row(args.shared_dir / "aomic" / "derivatives" / "fs_stats", label)
    ref = nb.load(gm)
    aparc = nb.Nifti1Image(to_grid(nb.load(fs_dir / "aparc+aseg.mgz"), ref).astype(np.int32), ref.affine)
    ribbon = to_grid(nb.load(fs_dir / "ribbon.mgz"), ref)
    inputs = {
        "fs_aparc": scratch / "aparc.nii.gz",
        "fs_gm": scratch / "fs_gm.nii.gz",
        "fs_wm": scratch / "fs_wm.nii.gz",
    }
    aparc.to_filename(inputs["fs_aparc"])
    for key, codes in (("fs_gm", (3, 42)), ("fs_wm", (2, 41))):
        nb.Nifti1Image(np.isin(ribbon, codes).astype(np.float32), ref.affine).to_filename(inputs[key])
    load = os.getloadavg()[0]
    rows = {
        "smriflow": (gm, wm, atlas, t1w),
        "smriflow, memberships only": (gm, wm, atlas, None),
        "smriflow seg + FS regions": (gm, wm, inputs["fs_aparc"], t1w),
        "FS ribbon + FS regions": (inputs["fs_gm"], inputs["fs_wm"], inputs["fs_aparc"], None),
    }

    def measure(name: str, g, w, a, t) -> dict:
        out = scratch / name.replace(" ", "_").replace("+", "").replace(",", "")
        out.mkdir(parents=True, exist_ok=True)
        step = run_isolated(g, w, a, out, args.workers, t)
        thick_img = nb.load(step["thickness"])
        thick = thick_img.get_fdata(dtype=np.float32)
        region = np.asanyarray(nb.load(step["region"]).dataobj)
        zooms = thick_img.header.get_zooms()[:3]
        return {**step, **compare(thick, region, fs, f"sub-{label}", zooms, args.weighting)}

    results = {name: measure(name, *row) for name, row in rows.items()}
    report(results, label, load, args.workers)
    names = list(INTENSITY_VARIANTS) if args.variants == "all" else [v for v in args.variants.split(",") if v]
    varied = {}
    wm_img = nb.load(wm)
    wm_map = np.clip(wm_img.get_fdata(dtype=np.float32), 0, 1)
    if names:
        t1w_img = nb.load(t1w)
        for name in names:
            path = scratch / f"t1w_{name}.nii.gz"
            make_intensity_variant(name, t1w_img, wm_map).to_filename(path)
            varied[name] = measure(f"variant {name}", gm, wm, atlas, path)
        load = os.getloadavg()[0]
        report(
            {f"{n} ({INTENSITY_VARIANTS[n]})": r for n, r in varied.items()},
            label,
            load,
            args.workers,
            first="T1w variant (smriflow row)",
        )
    # last: its arrays would otherwise be in the RSS that the spawned steps above inherit at fork (Linux
    # keeps a process's peak RSS across exec)
    brain_map = np.clip(wm_map + nb.load(gm).get_fdata(dtype=np.float32), 0, 1)
    t1w_map = nb.load(t1w).get_fdata(dtype=np.float32)
    offsets = white_surface_offset(wm_map, brain_map, t1w_map, ribbon, wm_img.header.get_zooms()[:3])
    for name, (mean, median) in offsets.items():
        print(
            f"GM/WM boundary, {name}: {mean:+.3f} mm mean, {median:+.3f} mm median"
            " from FreeSurfer's white surface"
        )
    if args.json:
        payload = {
            "load_average": load,
            "results": results,
            "variants": varied,
            "white_surface_offset": offsets,
        }
        args.json.write_text(json.dumps(payload, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
