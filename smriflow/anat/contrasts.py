"""Other contrasts (T2w, FLAIR, PD) and several T1w runs, brought onto the subject's T1w.

- :func:`register_rigid`: a rigid registration (ANTs, Mattes mutual information, which suits two
  contrasts) of an image onto the T1w, and the image resampled on the T1w grid (``space-T1w``).
- :func:`average_runs`: several T1w runs of one subject, each rigidly registered to the first and
  averaged on its grid (a simple within-subject template; the first run is the reference).
- :func:`synthesize_t2w`: a T2w-like image made from a T1w (intensity remapping, seeded noise and a
  known rigid move), for tests; it carries no information the T1w does not have.

Functions take and return nibabel images and arrays; antspyx is imported inside them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nibabel as nb
import numpy as np

__all__ = [
    "average_runs",
    "contrast_to_t1w",
    "register_rigid",
    "rigid_matrix",
    "rigid_motion",
    "synthesize_t2w",
]


def rigid_matrix(rotation_deg: Sequence[float], translation_mm: Sequence[float]) -> np.ndarray:
    """4x4 world (RAS mm) rigid transform: rotations about x, y, z (degrees, applied in that order), then a
    translation."""
    ax, ay, az = np.deg2rad([float(a) for a in rotation_deg])
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    out = np.eye(4)
    out[:3, :3] = rz @ ry @ rx
    out[:3, 3] = [float(t) for t in translation_mm]
    return out


def synthesize_t2w(
    t1w: nb.spatialimages.SpatialImage,
    *,
    move: np.ndarray | None = None,
    noise: float = 0.03,
    seed: int = 0,
) -> nb.Nifti1Image:
    """A T2w-like image from a T1w: dark T1 (CSF) becomes bright, bright T1 (WM) dark.

    The T1w intensities are scaled to their 99th percentile ``p`` (``t = x / p``) and mapped through a
    decreasing piecewise-linear curve (``t`` 0.35 → 1.0, 0.6 → 0.55, 0.9 → 0.3), air stays dark (below
    ``t`` 0.1 the output fades to 0); seeded multiplicative noise is added. ``move`` (4x4, world) is applied
    to the affine only, so the voxels are those of the T1w and the image sits elsewhere in the world by
    exactly ``move``: registering it back must recover ``inv(move)``.

    Returns
    -------
    nibabel.Nifti1Image
        float32 image with affine ``move @ t1w.affine``.
    """
    data = np.asarray(t1w.dataobj, dtype=np.float32)
    scale = float(np.percentile(data[data > 0], 99)) if (data > 0).any() else 1.0
    t = data / scale
    curve = np.interp(t, [0.1, 0.35, 0.6, 0.9, 2.0], [1.0, 1.0, 0.55, 0.3, 0.2]).astype(np.float32)
    out = curve * np.clip(t / 0.1, 0.0, 1.0)
    rng = np.random.default_rng(seed)
    out *= 1 + noise * rng.standard_normal(out.shape).astype(np.float32)
    affine = (np.eye(4) if move is None else np.asarray(move, dtype=np.float64)) @ t1w.affine
    img = nb.Nifti1Image(np.clip(out, 0, None).astype(np.float32) * 1000, affine)
    img.set_qform(affine, 1)
    img.set_sform(affine, 1)
    return img


def register_rigid(
    moving: nb.spatialimages.SpatialImage,
    fixed: nb.spatialimages.SpatialImage,
    work_dir: str | Path,
    *,
    fixed_mask: np.ndarray | None = None,
    seed: int = 0,
    num_threads: int = 1,
) -> tuple[nb.Nifti1Image, str, np.ndarray]:
    """Rigidly register ``moving`` (any contrast) onto ``fixed`` (the T1w) with Mattes mutual information.

    Parameters
    ----------
    moving, fixed : nibabel images
        3-D images; the output lies on the grid of ``fixed``.
    work_dir : str or Path
        Folder for the transform.
    fixed_mask : numpy.ndarray, optional
        Where the metric is computed on the fixed grid (e.g. the head or brain mask).
    seed : int
        Random seed of the metric sampling.
    num_threads : int
        ITK threads.

    Returns
    -------
    resampled : nibabel.Nifti1Image
        ``moving`` resampled (linear) on the grid of ``fixed``, float32.
    transform : str
        The ANTs transform file (fixed points → moving points, as ``ants.apply_transforms`` uses it).
    world : numpy.ndarray
        The same transform as a 4x4 RAS world matrix mapping fixed points to moving points.
    """
    from smriflow.utils.antsenv import import_ants
    from smriflow.utils.antsio import ants_seed, from_ants, registration_dir, to_ants

    ants = import_ants(num_threads)
    for name, img in (("moving", moving), ("fixed", fixed)):
        if len(img.shape) != 3:
            raise ValueError(f"'{name}' must be a 3-D image; its shape is {img.shape}.")
    fixed_ants = to_ants(np.asarray(fixed.dataobj, dtype=np.float32), fixed.affine, ants)
    moving_ants = to_ants(np.asarray(moving.dataobj, dtype=np.float32), moving.affine, ants)
    kwargs: dict[str, Any] = {}
    if fixed_mask is not None:
        kwargs["mask"] = to_ants(np.asarray(fixed_mask, dtype=np.float32), fixed.affine, ants)
    with ants_seed(ants, seed):
        reg = ants.registration(
            fixed_ants,
            moving_ants,
            "Rigid",
            aff_metric="mattes",
            aff_sampling=32,
            outprefix=registration_dir(work_dir, "rigid"),
            **kwargs,
        )
    transform = reg["fwdtransforms"][0]
    warped = ants.apply_transforms(fixed_ants, moving_ants, [transform], interpolator="linear")
    data, _ = from_ants(warped)
    out = nb.Nifti1Image(np.asarray(data, dtype=np.float32), fixed.affine)
    out.set_qform(fixed.affine, 1)
    out.set_sform(fixed.affine, 1)
    return out, transform, _ants_rigid_to_world(ants.read_transform(transform))


_LPS = np.diag([-1.0, -1.0, 1.0])


def _ants_rigid_to_world(tx: Any) -> np.ndarray:
    """4x4 RAS matrix of an ANTs (LPS) affine transform ``y = A (x - c) + t + c``."""
    params = np.asarray(tx.parameters, dtype=np.float64)
    center = np.asarray(tx.fixed_parameters, dtype=np.float64)
    matrix = params[:9].reshape(3, 3)
    offset = params[9:12] + center - matrix @ center
    lps = np.eye(4)
    lps[:3, :3], lps[:3, 3] = matrix, offset
    flip = np.eye(4)
    flip[:3, :3] = _LPS
    return flip @ lps @ flip


def rigid_motion(world: np.ndarray) -> tuple[float, float]:
    """Size of a 4x4 rigid world transform: translation length (mm) and rotation angle (degrees)."""
    cosine = np.clip((np.trace(world[:3, :3]) - 1) / 2, -1.0, 1.0)
    return float(np.linalg.norm(world[:3, 3])), float(np.degrees(np.arccos(cosine)))


def average_runs(
    runs: Sequence[nb.spatialimages.SpatialImage],
    work_dir: str | Path,
    *,
    seed: int = 0,
    num_threads: int = 1,
) -> tuple[nb.Nifti1Image, list[dict[str, Any]]]:
    """Average several T1w runs on the grid of the first, after rigid registration to it.

    Each run is scaled to the first's median before averaging (both medians over the first run's head, its
    voxels above its mean), so that runs with different scanner gains weigh the same.

    Returns
    -------
    average : nibabel.Nifti1Image
        float32, on the first run's grid.
    records : list of dict
        Per run: its index, the scale applied, and the world translation (mm) and rotation (degrees) found.
    """
    if len(runs) < 2:
        raise ValueError(f"average_runs needs at least two runs; {len(runs)} was provided.")
    reference = runs[0]
    ref_data = np.asarray(reference.dataobj, dtype=np.float32)
    head = ref_data > ref_data.mean()
    ref_median = float(np.median(ref_data[head]))
    total = ref_data.copy()
    records: list[dict[str, Any]] = [{"run": 0, "scale": 1.0, "translation_mm": 0.0, "rotation_deg": 0.0}]
    for index, run in enumerate(runs[1:], start=1):
        resampled, _, world = register_rigid(
            run, reference, Path(work_dir) / f"run{index}", seed=seed, num_threads=num_threads
        )
        data = np.asarray(resampled.dataobj, dtype=np.float32)
        scale = ref_median / float(np.median(data[head]))
        total += data * np.float32(scale)
        translation, angle = rigid_motion(world)
        records.append({"run": index, "scale": scale, "translation_mm": translation, "rotation_deg": angle})
    out = nb.Nifti1Image(total / np.float32(len(runs)), reference.affine)
    out.set_qform(reference.affine, 1)
    out.set_sform(reference.affine, 1)
    return out, records


def contrast_to_t1w(
    path: str | Path,
    reference: nb.spatialimages.SpatialImage,
    work_dir: str | Path,
    *,
    mask: nb.spatialimages.SpatialImage | None = None,
    contrast: str = "T2w",
    profile: str = "fast",
    seed: int = 0,
    num_threads: int = 1,
) -> tuple[nb.Nifti1Image, str, dict[str, Any]]:
    """Conform, N4-correct and rigidly register another contrast onto the T1w grid.

    Parameters
    ----------
    path : str or Path
        The other contrast (T2w, FLAIR, PD) as acquired; checked and reoriented to RAS
        (:func:`smriflow.anat.conform.load_conformed`).
    reference : nibabel image
        The preprocessed T1w: the output grid.
    work_dir : str or Path
        Folder for the registration's files.
    mask : nibabel image or None
        Where the metric is computed, on the grid of ``reference`` (e.g. the brain mask).
    contrast : str
        The contrast's name, for the record.
    profile : str
        N4 profile (a key of :data:`smriflow.anat.bias.N4_PROFILES`).
    seed, num_threads
        Metric sampling seed and ITK threads.

    Returns
    -------
    resampled : nibabel.Nifti1Image
        The corrected contrast on the T1w grid (float32).
    transform : str
        ANTs rigid transform (T1w points -> contrast points).
    record : dict
        Contrast, metric, the rigid motion found (mm, degrees), N4 profile, whether the metric was masked.
    """
    from smriflow.anat.bias import N4_PROFILES, n4_correct
    from smriflow.anat.conform import load_conformed
    from smriflow.utils.grids import check_same_grid, grid_mismatch

    img = load_conformed(path)[0]
    corrected, _, _ = n4_correct(
        np.asarray(img.dataobj, dtype=np.float32),
        img.header.get_zooms()[:3],
        num_threads=num_threads,
        **N4_PROFILES[profile],
    )
    fixed_mask = None
    if mask is not None:
        what = "'in_mask' must be on the grid of 'reference'"
        check_same_grid(reference, mask, grid_mismatch(reference, mask, what, reference_name="'reference'"))
        fixed_mask = np.asarray(mask.dataobj) > 0
    resampled, transform, world = register_rigid(
        nb.Nifti1Image(corrected, img.affine),
        reference,
        work_dir,
        fixed_mask=fixed_mask,
        seed=seed,
        num_threads=num_threads,
    )
    translation, angle = rigid_motion(world)
    record = {
        "contrast": contrast,
        "metric": "Mattes mutual information (32 bins), rigid",
        "translation_mm": translation,
        "rotation_deg": angle,
        "n4_profile": profile,
        "masked_metric": fixed_mask is not None,
    }
    return resampled, transform, record
