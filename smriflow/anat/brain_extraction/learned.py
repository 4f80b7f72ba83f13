"""Learned brain extraction without torch: deepbet's networks served through onnxruntime.

deepbet 1.0.2 (Fisch et al., 2024, *Comput. Biol. Med.*; MIT licence, ``smriflow/data/deepbet/LICENSE``)
runs two LinkNet3d networks: a 128³ one that finds the brain's bounding box on a thumbnail of the whole
image, and a 256³ one that segments the brain inside that box. ``tools/convert_deepbet_onnx.py`` exported
both, weights unchanged, to the ONNX files in ``smriflow/data/deepbet/``; they are checked against the
SHA-256 recorded in :data:`MODELS` before use. This module reproduces deepbet's ``BrainExtraction.run``
step by step in numpy/scipy (the same quantiles, float32 box arithmetic and nearest-exact resampling
indices as its torch code), so the masks match deepbet's (Dice ≥ 0.999; ``bench/learned_brain_mask.py``):

1. the image is reoriented to RAS (voxel axes only, no resampling) and read as float32, NaN set to 0;
2. a 128³ nearest-neighbour thumbnail gives the intensity range (0.5 and 99.5 percentiles); clipped to it
   and standardized, it goes through the box network; the largest 26-connected component of
   "probability > 0.5" gives the brain's extent, grown by 10 % on each side;
3. the box is resampled (nearest) to 256³, normalized with the same range, and segmented; the brain
   probability is resampled (nearest) back to the box and thresholded;
4. the largest 26-connected component is kept, its holes filled, and the mask dilated (or eroded) by
   ``n_dilate`` 6-connected layers; it is returned on the input's own voxel grid.

Nothing is random; the mask is the same bytes run to run. On the shared 256³ T1w: Dice 0.99999 against deepbet
(27 voxels differ), 0.979 against FreeSurfer's ``brainmask.mgz > 0``; 5-7 s of CPU time in all and ~1 GB
peak RSS (measured on 2 cores under a load average of 12-18, where the wall time was 15-33 s).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import nibabel as nb
import numpy as np
from scipy import ndimage

from smriflow.utils.morphology import largest_component

__all__ = ["MODELS", "MODELS_DIR", "learned_brain_mask", "load_model", "nearest_exact_index"]

MODELS_DIR = Path(__file__).resolve().parents[2] / "data" / "deepbet"
# SHA-256 of the shipped files, printed by tools/convert_deepbet_onnx.py (8.5 MB each)
MODELS = {
    "deepbet_bbox.onnx": "912d0eb6791fca8bd41da79346ce7eefd0c5255714979ad523a116dd0515789a",
    "deepbet_mask.onnx": "f26af4e94fdc1dda555c3c786c1d056498fb2b84f0884b359405b776361f885d",
}
_REINSTALL = "reinstall smriflow (pip install --force-reinstall --no-deps smriflow)"
_SMALL, _LARGE = 128, 256  # the networks' fixed input sizes
_BOX_MARGIN = np.float32(0.1)  # of the box size, added on each side
_BOX_FRACTION = np.float32(0.02)  # a thumbnail slice belongs to the box when this fraction of it is brain
_LOW_Q, _HIGH_Q = 0.005, 0.995


def load_model(name: str, *, num_threads: int = 1, models_dir: str | Path | None = None):
    """Check one shipped ONNX network against its SHA-256 and open it with onnxruntime.

    Parameters
    ----------
    name : str
        A key of :data:`MODELS`.
    num_threads : int
        onnxruntime intra-op threads (inter-op: 1, sequential execution, no spinning). The masks were
        identical with 1 and 2 threads on the shared T1w.
    models_dir : str or Path, optional
        Folder holding the file; :data:`MODELS_DIR` (inside the package) when None.

    Returns
    -------
    onnxruntime.InferenceSession

    Raises
    ------
    FileNotFoundError
        When the file is missing.
    ValueError
        When its SHA-256 is not the recorded one (a damaged or replaced file).
    ImportError
        When onnxruntime is not installed.
    """
    path = Path(models_dir or MODELS_DIR) / name
    if not path.is_file():
        raise FileNotFoundError(f"learned brain extraction: {path} is missing; {_REINSTALL}.")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != MODELS[name]:
        raise ValueError(
            f"learned brain extraction: {path} has SHA-256 {digest}, expected {MODELS[name]}; {_REINSTALL}."
        )
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise ImportError("learned brain extraction needs onnxruntime: pip install onnxruntime") from exc
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, int(num_threads))
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3  # errors only
    # idle threads sleep instead of spinning: other pipeline nodes share the cores (same masks, less CPU)
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def nearest_exact_index(n_in: int, n_out: int) -> np.ndarray:
    """Source indices of torch's ``interpolate(mode="nearest-exact")`` along one axis, ``n_in`` -> ``n_out``.

    ``floor((i + 0.5) * scale)`` in float32 with ``scale = float32(n_in) / n_out``, clipped to the last
    index (checked against torch for every size up to 600 by ``tools/convert_deepbet_onnx.py
    --check-resize``).
    """
    scale = np.float32(n_in) / np.float32(n_out)
    idx = np.floor((np.arange(n_out, dtype=np.float32) + np.float32(0.5)) * scale).astype(np.int64)
    return np.minimum(idx, n_in - 1)


def _resize_nearest(x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    return x[np.ix_(*(nearest_exact_index(n, m) for n, m in zip(x.shape, shape, strict=True)))]


def _quantile(x: np.ndarray, q: float) -> np.float32:
    """``torch.quantile`` (linear interpolation) of a float32 array, in float32 as torch computes it."""
    flat = x.ravel()
    rank = np.float32(q) * np.float32(flat.size - 1)
    lo, hi = int(np.floor(rank)), int(np.ceil(rank))
    part = np.partition(flat, (lo, hi))
    a, b, w = part[lo], part[hi], np.float32(rank - np.float32(lo))
    return np.float32(a + w * (b - a)) if w < 0.5 else np.float32(b - (b - a) * (np.float32(1) - w))


def _normalize(x: np.ndarray, low: np.float32, high: np.float32) -> np.ndarray:
    """deepbet's input scaling: clip to [low, high] -> [0, 1], standardize, then ``0.226 * z + 0.449``."""
    y = np.clip((x - low) / (high - low), 0, 1).astype(np.float32)
    z = (y - y.mean(dtype=np.float64)) / y.std(ddof=1, dtype=np.float64)  # torch's std is unbiased
    return (0.226 * z + 0.449).astype(np.float32)


def _predict(session, x: np.ndarray) -> np.ndarray:
    """Brain probability (softmax channel 1) of a normalized cube."""
    (name,) = (i.name for i in session.get_inputs())
    return session.run(None, {name: x[None, None]})[0][0, 1]


def _box(mask_small: np.ndarray, shape: tuple[int, ...]) -> tuple[slice, ...]:
    """deepbet's ``get_bbox_with_margin``: the thumbnail mask's extent, scaled to ``shape``, grown by 10 %."""
    box = []
    for axis, n in enumerate(shape):
        others = tuple(a for a in range(3) if a != axis)
        profile = mask_small.mean(axis=others, dtype=np.float64)
        (hits,) = np.nonzero(profile > _BOX_FRACTION)
        if hits.size == 0:
            raise ValueError("not enough brain in the thumbnail for a bounding box")
        scale = np.float32(n) / np.float32(mask_small.shape[axis])
        center = np.float32(hits.max() + 1 + hits.min()) / np.float32(2) * scale
        extent = np.float32(hits.max() + 1 - hits.min()) * scale
        size = (np.float32(1) + np.float32(2) * _BOX_MARGIN) * extent
        center, size = np.round(center), np.round(size)
        lo, hi = int(center - size / np.float32(2)), int(center + size / np.float32(2))
        box.append(slice(max(0, lo), min(n, hi)))
    return tuple(box)


def _dilate(mask: np.ndarray, n_dilate: int) -> np.ndarray:
    if n_dilate == 0:
        return mask
    cross = ndimage.generate_binary_structure(3, 1)
    op = ndimage.binary_dilation if n_dilate > 0 else ndimage.binary_erosion
    return op(mask, structure=cross, iterations=abs(int(n_dilate)))


def learned_brain_mask(
    img: nb.spatialimages.SpatialImage,
    *,
    threshold: float = 0.5,
    n_dilate: int = 0,
    num_threads: int = 1,
    models_dir: str | Path | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Brain mask of a T1w with deepbet's networks (onnxruntime, no torch).

    Parameters
    ----------
    img : nibabel image
        3-D T1w with skull (a 4-D image with one volume is accepted), any orientation, voxel size and
        intensity type, as deepbet takes it.
    threshold : float
        Brain probability above which a voxel is brain (deepbet's default 0.5).
    n_dilate : int
        6-connected layers to dilate the mask by; negative erodes (deepbet's ``n_dilate``).
    num_threads : int
        onnxruntime intra-op threads; the mask is the same run to run (and was with 1 and 2 threads).
    models_dir : str or Path, optional
        Folder of the ONNX files (the package's ``smriflow/data/deepbet`` when None).

    Returns
    -------
    mask : numpy.ndarray
        bool, ``img.shape[:3]``, on the input's voxel grid and orientation (``img.affine`` applies).
    info : dict
        ``method``, ``threshold``, ``n_dilate``; ``box_ras`` (the segmented box, ``[start, stop)`` per RAS
        voxel axis) and ``box_fraction`` (its share of the field of view); ``volume_cm3`` of the mask;
        ``dropped_cm3`` (voxels above threshold outside the largest component) and ``uncertain_cm3``
        (voxels with a probability between 0.1 and 0.9): large values flag a doubtful mask.

    Raises
    ------
    ValueError
        When the image is not 3-D, has no intensity range, or no brain is found.
    FileNotFoundError, ImportError
        When a model file or onnxruntime is missing (one line naming what to reinstall).
    """
    shape = tuple(int(n) for n in img.shape)
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) != 3:
        raise ValueError(f"learned_brain_mask: expected a 3-D image, got shape {tuple(img.shape)}.")
    box_session = load_model("deepbet_bbox.onnx", num_threads=num_threads, models_dir=models_dir)
    mask_session = load_model("deepbet_mask.onnx", num_threads=num_threads, models_dir=models_dir)

    ornt = nb.orientations.io_orientation(img.affine)
    x = nb.as_closest_canonical(img).get_fdata(dtype=np.float32)
    x = np.nan_to_num(x.reshape(x.shape[:3]), copy=False)
    small = _resize_nearest(x, (_SMALL,) * 3)
    low, high = _quantile(small, _LOW_Q), _quantile(small, _HIGH_Q)
    if not high > low:
        raise ValueError("learned_brain_mask: the image has no intensity range (constant image?).")
    # deepbet keeps the largest component with cc3d's default connectivity: 26 neighbours (full=True)
    try:
        found = largest_component(_predict(box_session, _normalize(small, low, high)) > 0.5, full=True)
        box = _box(found.astype(np.float32), x.shape)
    except ValueError as exc:
        raise ValueError(f"learned_brain_mask: {exc} (is this a T1w of a head?).") from None
    crop = _resize_nearest(x[box], (_LARGE,) * 3)
    prob_large = _predict(mask_session, _normalize(crop, low, high))
    del crop
    prob = _resize_nearest(prob_large, x[box].shape)
    above = prob > threshold
    if not above.any():
        raise ValueError("learned_brain_mask: no brain found (is this a T1w of a head?).")
    kept = largest_component(above, full=True)
    mask = np.zeros(x.shape, dtype=bool)
    mask[box] = ndimage.binary_fill_holes(kept)
    mask = _dilate(mask, n_dilate)

    voxel_cm3 = float(np.prod(img.header.get_zooms()[:3])) * 1e-3
    info = {
        "method": "deepbet (onnxruntime)",
        "threshold": float(threshold),
        "n_dilate": int(n_dilate),
        "box_ras": [[int(s.start), int(s.stop)] for s in box],
        "box_fraction": round(float(np.prod([s.stop - s.start for s in box]) / np.prod(x.shape)), 4),
        "volume_cm3": round(float(mask.sum()) * voxel_cm3, 2),
        "dropped_cm3": round(float(above.sum() - kept.sum()) * voxel_cm3, 2),
        "uncertain_cm3": round(float(((prob > 0.1) & (prob < 0.9)).sum()) * voxel_cm3, 2),
    }
    back = nb.orientations.ornt_transform([[0, 1], [1, 1], [2, 1]], ornt)
    return np.ascontiguousarray(nb.orientations.apply_orientation(mask, back)), info
