"""Private helpers of :mod:`smriflow.stats.vbm`: atomic deterministic writes, the cluster table, figures."""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path

import nibabel as nb
import numpy as np
import pandas as pd

from smriflow.utils.atomic import atomic_write

CLUSTER_COLUMNS = ["cluster_id", "x", "y", "z", "peak_z", "cluster_size_mm3"]


def write_image(path: Path, img: nb.Nifti1Image) -> Path:
    """Write a NIfTI image atomically; floats as float32 (nibabel's gzip stream carries no time stamp)."""
    data = np.asanyarray(img.dataobj)
    if np.issubdtype(data.dtype, np.floating) and data.dtype != np.float32:
        img = nb.Nifti1Image(data.astype(np.float32), img.affine, img.header)
        img.set_data_dtype(np.float32)
    return atomic_write(path, img.to_filename)


def write_tsv(path: Path, frame: pd.DataFrame) -> Path:
    """Write a tab-separated table atomically, missing values as ``n/a`` (BIDS)."""
    return atomic_write(
        path, lambda tmp: frame.to_csv(tmp, sep="\t", index=False, na_rep="n/a", float_format="%.6g")
    )


def write_provenance(path: Path, **content: object) -> Path:
    """Write the run's parameters, subjects and software versions as JSON."""
    import nilearn
    import scipy

    from smriflow._version import __version__

    content["software"] = {
        "smriflow": __version__,
        "nilearn": nilearn.__version__,
        "nibabel": nb.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "pandas": pd.__version__,
    }
    text = json.dumps(content, indent=2, sort_keys=False, default=str) + "\n"
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def _atlas_lookup(name: str, grid: nb.Nifti1Image) -> tuple[str, np.ndarray, dict[int, str], nb.Nifti1Image]:
    """Return (column name, atlas labels on ``grid`` (nearest), label names, the atlas on its own grid)."""
    from nilearn.image import resample_to_img

    from smriflow.data.atlases import atlas_labels, cached_atlas_dseg, resolve_atlas

    atlas = nb.load(str(cached_atlas_dseg(name)))
    names = dict(zip(atlas_labels(name)["label"].astype(int), atlas_labels(name)["name"], strict=True))
    on_grid = resample_to_img(atlas, grid, interpolation="nearest", copy_header=True, force_resample=True)
    return resolve_atlas(name), np.asanyarray(on_grid.dataobj).astype(int), names, atlas


def _label_at(atlas: nb.Nifti1Image, names: dict[int, str], xyz: Sequence[float]) -> str:
    ijk = np.rint(np.linalg.inv(atlas.affine) @ np.r_[np.asarray(xyz, dtype=float), 1.0])[:3].astype(int)
    if np.any(ijk < 0) or np.any(ijk >= np.array(atlas.shape[:3])):
        return "no_label"
    value = int(np.asanyarray(atlas.dataobj)[tuple(ijk)])
    return names.get(value, "no_label")


def _composition(labels: np.ndarray, names: dict[int, str], top: int = 3) -> str:
    values, counts = np.unique(labels, return_counts=True)
    order = sorted(zip(counts, values, strict=True), key=lambda cv: (-cv[0], cv[1]))[:top]
    share = [(100.0 * c / labels.size, names.get(int(v), "no_label")) for c, v in order]
    return "; ".join(f"{pct:.1f}% {name}" for pct, name in share)


def clusters_with_labels(
    thresholded: nb.Nifti1Image,
    threshold: float,
    cluster_threshold: int,
    two_sided: bool,
    atlases: Sequence[str],
    min_distance: float,
) -> pd.DataFrame:
    """See :func:`smriflow.stats.vbm.cluster_table`."""
    from nilearn.reporting import get_clusters_table

    columns = CLUSTER_COLUMNS + [c for a in atlases for c in (a, f"{a}_cluster")]
    data = np.asanyarray(thresholded.dataobj)
    if not np.isfinite(threshold) or not np.any(data != 0):
        return pd.DataFrame(columns=columns)
    with warnings.catch_warnings():  # one empty tail of a two-sided map is no news
        warnings.filterwarnings("ignore", message="No clusters found with stat")
        table, label_maps = get_clusters_table(
            thresholded, stat_threshold=threshold, cluster_threshold=cluster_threshold,
            two_sided=two_sided, min_distance=min_distance, return_label_maps=True,
        )  # fmt: skip
    table = table.rename(
        columns={"Cluster ID": "cluster_id", "X": "x", "Y": "y", "Z": "z", "Peak Stat": "peak_z"}
        | {"Cluster Size (mm3)": "cluster_size_mm3"}
    )
    table["cluster_id"] = table["cluster_id"].astype(str)
    table["cluster_size_mm3"] = pd.to_numeric(table["cluster_size_mm3"].replace("", np.nan))
    # one mask per main cluster: the label map of its tail (positive first) at the cluster's peak voxel
    tails = [np.asanyarray(m.dataobj).astype(int) for m in label_maps]
    inverse = np.linalg.inv(thresholded.affine)
    masks: dict[str, np.ndarray] = {}
    for row in table.itertuples(index=False):
        if not str(row.cluster_id).isdigit():
            continue
        ijk = tuple(np.rint(inverse @ [row.x, row.y, row.z, 1.0])[:3].astype(int))
        tail = tails[0] if row.peak_z > 0 or len(tails) == 1 else tails[1]
        if tail[ijk]:
            masks[str(row.cluster_id)] = tail == tail[ijk]
    for name in atlases:
        column, on_grid, names, atlas = _atlas_lookup(name, thresholded)
        table[name] = [_label_at(atlas, names, row) for row in table[["x", "y", "z"]].to_numpy()]
        table[f"{name}_cluster"] = [
            _composition(on_grid[masks[cid]], names) if cid in masks else "" for cid in table["cluster_id"]
        ]
        del column
    # nilearn numbers the negative tail on from every positive cluster, small ones included: renumber 1..n
    renumber = {old: str(new) for new, old in enumerate(masks_order(table["cluster_id"]), start=1)}
    table["cluster_id"] = [
        renumber[cid.rstrip("abcdefghijklmnopqrstuvwxyz")] + cid.lstrip("0123456789")
        for cid in table["cluster_id"]
    ]
    return table[columns].reset_index(drop=True)


def masks_order(ids: pd.Series) -> list[str]:
    """The main cluster IDs (no sub-peak letter) in table order."""
    return [cid for cid in ids if cid.isdigit()]


def figures(
    folder: Path,
    thresholded: nb.Nifti1Image,
    template: nb.Nifti1Image,
    design: pd.DataFrame,
    threshold: float,
    contrast: str,
) -> list[Path]:
    """Draw the glass brain and slices of the thresholded z map, and the design matrix (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from nilearn import plotting

    shown = threshold if np.isfinite(threshold) else None
    survivors = int(np.count_nonzero(np.asanyarray(thresholded.dataobj)))
    title = f"{contrast}: z, |z| > {threshold:.2f}" if survivors else f"{contrast}: no voxel survives"
    paths = []
    with (
        warnings.catch_warnings()
    ):  # an empty map (nothing survived) is drawn empty, without nilearn's warning
        warnings.filterwarnings("ignore", message="empty mask")
        fig = plt.figure(figsize=(9, 3.4), dpi=100)
        plotting.plot_glass_brain(
            thresholded,
            threshold=shown,
            colorbar=True,
            plot_abs=False,
            cmap="RdBu_r",
            figure=fig,
            title=title,
        )
        paths.append(_save(fig, folder / "glass_brain.png"))
        fig = plt.figure(figsize=(12, 3), dpi=100)
        plotting.plot_stat_map(
            thresholded, bg_img=template, threshold=shown, display_mode="z", cut_coords=7,
            cmap="RdBu_r", figure=fig, title=title, black_bg=False, colorbar=True,
        )  # fmt: skip
        paths.append(_save(fig, folder / "slices.png"))
    fig, ax = plt.subplots(figsize=(1.2 + 0.9 * design.shape[1], 4), dpi=100)
    plotting.plot_design_matrix(design, axes=ax)
    paths.append(_save(fig, folder / "design_matrix.png"))
    return paths


def _save(fig: object, path: Path) -> Path:
    import matplotlib.pyplot as plt

    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", metadata={"Software": None}))
    plt.close(fig)
    return path


def write_outputs(
    out: Path,
    *,
    images: dict[str, nb.Nifti1Image],
    subject_maps: dict[str, nb.Nifti1Image],
    design: pd.DataFrame,
    clusters: pd.DataFrame,
    provenance: dict,
    threshold: float,
    contrast: str,
) -> tuple[dict[str, Path], list[Path]]:
    """Write every output of a VBM run under ``out``; return (name → path, modulated map paths)."""
    names = {"template": "template_gm", "mask": "mask", "z": "zmap", "t": "tmap", "p": "pmap"}
    names |= {"effect": "effect", "thresholded": "zmap_thresholded"}
    files = {key: write_image(out / f"{names[key]}.nii.gz", img) for key, img in images.items()}
    modulated = [write_image(out / "modulated" / name, img) for name, img in subject_maps.items()]
    files["design"] = write_tsv(out / "design_matrix.tsv", design.rename_axis("participant_id").reset_index())
    files["clusters"] = write_tsv(out / "clusters.tsv", clusters)
    drawn = figures(out / "figures", images["thresholded"], images["template"], design, threshold, contrast)
    files |= dict(zip(("glass_brain", "slices", "design_figure"), drawn, strict=True))
    files["provenance"] = write_provenance(out / "vbm.json", **provenance)
    return files, modulated
