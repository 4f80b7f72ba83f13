"""A small synthetic subject (3 mm, 30³) with every image the subject report shows, and a fake group table."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import nibabel as nb
import numpy as np
import pandas as pd

SHAPE = (30, 34, 30)
ZOOM = 3.0
#: The sections every subject report has, in page order (their ``<section id>``).
SECTIONS = ("summary", "input", "bias", "mask", "tissues", "registration", "atlases", "iqms", "methods")
IQMS = {"cjv": 0.45, "cnr": 2.5, "efc": 0.55, "reg_ncc": 0.81, "snr_gm": 9.0, "summary_gm_mean": 650.0}


def _save(data: np.ndarray, affine: np.ndarray, path: Path) -> str:
    img = nb.Nifti1Image(data, affine)
    img.set_qform(affine, 1)
    img.set_sform(affine, 1)
    img.to_filename(str(path))
    return str(path)


def write_subject(folder: Path, label: str = "01", *, seed: int = 0) -> SimpleNamespace:
    """Write a synthetic head (scalp, CSF, GM shell, WM core), its mask, labels, bias field and atlas."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    affine = np.diag([ZOOM, ZOOM, ZOOM, 1.0])
    affine[:3, 3] = -ZOOM * (np.array(SHAPE) - 1) / 2
    grid = np.indices(SHAPE).astype(np.float32)
    centre = (np.array(SHAPE) - 1) / 2
    radius = np.sqrt(
        sum(((grid[i] - centre[i]) / (SHAPE[i] / 2.2)) ** 2 for i in range(3))
    )  # 1 at the head's edge
    dseg = np.select([radius < 0.45, radius < 0.62, radius < 0.7], [2, 1, 3], 0).astype(np.uint8)
    mask = (radius < 0.7).astype(np.uint8)
    intensity = np.select([dseg == 2, dseg == 1, dseg == 3, radius < 0.9], [110.0, 70.0, 25.0, 60.0], 0.0)
    bias = (1.0 + 0.15 * (grid[2] - centre[2]) / SHAPE[2]).astype(np.float32)
    clean = (intensity + rng.normal(0, 3, SHAPE) * (intensity > 0)).astype(np.float32)
    atlas = np.where(mask > 0, 1 + (grid[0] > centre[0]) + 2 * (grid[1] > centre[1]), 0).astype(np.int16)
    stem = folder / f"sub-{label}"
    files = SimpleNamespace(
        subject=label,
        t1w=_save(clean * bias, affine, Path(f"{stem}_T1w_conformed.nii.gz")),
        t1w_preproc=_save(clean, affine, Path(f"{stem}_desc-preproc_T1w.nii.gz")),
        t1w_biasfield=_save(bias, affine, Path(f"{stem}_desc-biasfield_T1w.nii.gz")),
        t1w_mask=_save(mask, affine, Path(f"{stem}_desc-brain_mask.nii.gz")),
        t1w_dseg=_save(dseg, affine, Path(f"{stem}_dseg.nii.gz")),
        atlas_dseg=[_save(atlas, affine, Path(f"{stem}_atlas-quadrants_dseg.nii.gz"))],
        conform={
            "source_file": f"sub-{label}_T1w.nii.gz",
            "orientation": "LIA",
            "reoriented_from": "LIA",
            "shape": list(SHAPE),
            "zooms": [ZOOM] * 3,
            "warnings": ["voxels are anisotropic (ratio 2.0)"],
            "took_first_volume": False,
            "oblique": False,
            "affine_source": "qform+sform",
        },
    )
    files.iqms = str(folder / f"sub-{label}_desc-iqms_T1w.json")
    Path(files.iqms).write_text(json.dumps(IQMS))
    return files


def std_t1w(folder: Path) -> str:
    """A 'normalized T1w': the 2 mm template itself, dimmed and shifted by one voxel."""
    from smriflow.data.templates import get_template

    img = nb.load(get_template(resolution=2))
    data = np.roll(np.asanyarray(img.dataobj, dtype=np.float32) * 0.9, 1, axis=0)
    return _save(data, img.affine, folder / "sub-01_space-MNI152NLin2009aSym_desc-preproc_T1w.nii.gz")


def group_table(labels: list[str], *, flagged: dict[str, str] | None = None, seed: int = 1) -> pd.DataFrame:
    """A group IQM table as qc_group writes it: subject, session, IQMs, qc_flag, qc_reasons."""
    flagged = flagged or {}
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"subject": labels, "session": [""] * len(labels)})
    for name, value in IQMS.items():
        frame[name] = value * (1 + 0.1 * rng.standard_normal(len(labels)))
    frame["qc_flag"] = [label in flagged for label in labels]
    frame["qc_reasons"] = [flagged.get(label, "") for label in labels]
    return frame


def write_group_table(frame: pd.DataFrame, path: Path) -> str:
    out = frame.copy()
    out["qc_flag"] = out["qc_flag"].map({True: "true", False: "false"})
    out.to_csv(path, sep="\t", index=False, na_rep="n/a", float_format="%.6g")
    return str(path)


def write_fsaverage5_subject(folder: Path) -> Path:
    """A FreeSurfer subject folder from nilearn's packaged fsaverage5: pial, thickness and a 2-region aparc.

    ``label/<h>.aparc.annot`` has 'unknown' (the first 50 vertices), 'anterior' (y > -20 mm) and 'posterior'.
    """
    from nilearn import datasets

    meshes = datasets.load_fsaverage("fsaverage5")["pial"].parts
    thickness = datasets.load_fsaverage_data("fsaverage5", data_type="thickness").data.parts
    (folder / "surf").mkdir(parents=True, exist_ok=True)
    (folder / "label").mkdir(exist_ok=True)
    ctab = np.array([[25, 5, 25, 0, 0], [220, 20, 10, 0, 0], [20, 30, 140, 0, 0]], dtype=np.int32)
    ctab[:, 4] = ctab[:, 0] + ctab[:, 1] * 2**8 + ctab[:, 2] * 2**16
    for hemi, prefix in (("left", "lh"), ("right", "rh")):
        mesh = meshes[hemi]
        nb.freesurfer.write_geometry(str(folder / "surf" / f"{prefix}.pial"), mesh.coordinates, mesh.faces)
        values = np.asarray(thickness[hemi], np.float32)
        nb.freesurfer.write_morph_data(str(folder / "surf" / f"{prefix}.thickness"), values)
        labels = np.where(mesh.coordinates[:, 1] > -20, 1, 2).astype(np.int32)
        labels[:50] = 0
        names = ["unknown", "anterior", "posterior"]
        nb.freesurfer.write_annot(str(folder / "label" / f"{prefix}.aparc.annot"), labels, ctab, names)
    return folder
