"""A small synthetic subject with every input of ``ComputeIQMs`` (for the IQM and QC tests).

The head is a 48 x 56 x 48 grid of 1.5 mm voxels (so MRIQC's erosion rule applies): Rayleigh noise in the
air, a skin/bone shell, a brain ellipsoid with a WM core, a GM rim and CSF ventricles; tissue maps are
smoothed indicators normalized to sum to 1 in the brain. The raw image carries a smooth multiplicative
bias that the "N4" image has removed. The template-space inputs are the default template's own 2 mm
images (a perfect registration).
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nb
import numpy as np
from scipy import ndimage

SHAPE = (48, 56, 48)
ZOOM = 1.5
TISSUES = ("GM", "WM", "CSF")


def _save(data: np.ndarray, affine: np.ndarray, path: Path, dtype=np.float32) -> str:
    img = nb.Nifti1Image(np.asarray(data, dtype=dtype), affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    img.to_filename(str(path))
    return str(path)


def make_subject(folder: Path, *, seed: int = 0, bias_strength: float = 0.15) -> dict:
    """Write the synthetic subject's files into ``folder``; return the keyword arguments of compute_iqms."""
    from smriflow.data.templates import get_template

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    affine = np.diag([ZOOM, ZOOM, ZOOM, 1.0])
    affine[:3, 3] = -ZOOM * (np.array(SHAPE) - 1) / 2
    grid = np.indices(SHAPE, dtype=np.float64)
    centre = (np.array(SHAPE) - 1)[:, None, None, None] / 2
    r = np.sqrt((((grid - centre) / (np.array([18.0, 22.0, 18.0])[:, None, None, None])) ** 2).sum(0))
    brain = r < 0.85
    wm = r < 0.6
    csf = (np.sqrt((((grid - centre) / np.array([4.0, 7.0, 4.0])[:, None, None, None]) ** 2).sum(0)) < 1) & wm
    wm &= ~csf
    gm = brain & ~wm & ~csf
    head = r < 1.05
    labels = np.zeros(SHAPE, dtype=np.uint8)
    labels[gm], labels[wm], labels[csf] = 1, 2, 3
    probs = [ndimage.gaussian_filter((labels == k).astype(np.float64), 0.7) for k in (1, 2, 3)]
    total = np.sum(probs, axis=0)
    probs = [np.where(brain, p / np.maximum(total, 1e-6), 0.0) for p in probs]

    clean = np.zeros(SHAPE)
    clean[head] = 300.0  # scalp and bone
    clean += 650 * probs[0] + 1000 * probs[1] + 250 * probs[2]
    clean[head] += rng.normal(0, 20, int(head.sum()))
    air = ~head
    clean[air] = np.abs(rng.normal(0, 8, int(air.sum())) + 1j * rng.normal(0, 8, int(air.sum())))
    x = (grid[0] - centre[0]) / SHAPE[0]
    bias = np.exp(bias_strength * (x + 0.5 * (grid[2] - centre[2]) / SHAPE[2]))
    raw = np.clip(clean * bias, 0, None)
    n4 = raw / bias

    paths = {
        "t1w": _save(raw, affine, folder / "raw.nii.gz"),
        "t1w_preproc": _save(n4, affine, folder / "n4.nii.gz"),
        "bias": _save(bias, affine, folder / "bias.nii.gz"),
        "mask": _save(brain, affine, folder / "mask.nii.gz", np.uint8),
        "dseg": _save(labels, affine, folder / "dseg.nii.gz", np.uint8),
        "tpms": [_save(p, affine, folder / f"tpm_{t}.nii.gz") for p, t in zip(probs, TISSUES, strict=True)],
        "std_t1w": str(get_template(resolution=2)),
        "std_tpms": [str(get_template(resolution=2, suffix="probseg", label=t)) for t in TISSUES],
    }
    return paths
