"""Image-quality metrics (IQMs) of a T1w image and processing-quality metrics of its preprocessing.

The IQMs follow MRIQC's definitions (Esteban et al. 2017, PLoS ONE 12(9):e0184661; MRIQC's
``mriqc/qc/anatomical.py`` and its ``StructuralQC`` interface); the processing metrics (volumes,
registration similarity, segmentation entropy, mask connectivity) are smriflow's own. Every formula,
the image it is computed on and its difference from MRIQC, if any, are listed in ``docs/iqms.md``.

Which image each metric uses (as MRIQC does, unless noted):

* **conformed raw T1w** (RAS, not bias-corrected): the head mask, the zero-filled frame and ``fwhm_*``.
* **N4-corrected T1w, harmonized** (multiplied so that the median of the eroded ``WM > 0.9`` region is
  1000, negative values set to 0): ``summary_*``, ``snr*``, ``cnr``, ``cjv``, ``efc``, ``fber``,
  ``wm2max``.
* **N4 bias field**: ``inu_*`` (inside the tissue labels).
* **tissue probability maps** (native): ``icvs_*``, ``rpve_*``, volumes, ``seg_entropy``; warped to the
  template: ``tpm_overlap_*`` and ``reg_dice``.
* **T1w in template space**: ``reg_ncc``.

Pure numpy/scipy/nibabel (and statsmodels' MAD); no nipype.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import nibabel as nb
import numpy as np

from smriflow.data.templates import DEFAULT_TEMPLATE
from smriflow.qc.measures import (
    TISSUES,
    cnr,
    efc,
    fber,
    frame_mask,
    fuzzy_jaccard,
    fwhm_classic,
    harmonize,
    iqm_head_mask,
    mask_components,
    rpve,
    segmentation_entropy,
    snr,
    snr_dietrich,
    summary_stats,
    volume_fractions,
    wm2max,
)
from smriflow.utils.grids import check_same_grid, same_grid
from smriflow.utils.metrics import cjv_from_stats, ncc
from smriflow.utils.niftiio import load_image

__all__ = [
    "add_template_iqms",
    "add_thickness_iqms",
    "compute_iqms",
    "image_iqms",
    "read_iqms",
    "template_iqms",
    "write_iqms",
]


# -- all of them -----------------------------------------------------------------------------------------
def _data(img: nb.spatialimages.SpatialImage) -> np.ndarray:
    return np.asarray(img.dataobj, dtype=np.float32)


def _template_on(grid: Any, template: str, suffix: str, label: str | None = None) -> np.ndarray:
    """Template image (``desc-brain`` T1w or mask, or a probseg) on the grid of ``grid``."""
    from smriflow.data.templates import get_template

    zoom = float(np.mean(grid.header.get_zooms()[:3]))
    resolution = 1 if zoom < 1.5 else 2
    path = get_template(template, resolution=resolution, suffix=suffix, label=label)
    img = nb.load(str(path))
    if same_grid(img, grid):
        return _data(img)
    from nilearn.image import resample_to_img

    order = "nearest" if suffix == "mask" else "continuous"
    resampled = resample_to_img(img, grid, interpolation=order, force_resample=True, copy_header=True)
    return _data(resampled)


#: The metrics of the harmonized N4-corrected image (one group: they need its white-matter median).
INTENSITY_IQMS: tuple[str, ...] = (
    *(
        f"summary_{region}_{key}"
        for region in ("bg", "csf", "gm", "wm")
        for key in ("mean", "median", "stdv", "mad", "k", "p05", "p95", "n")
    ),
    *(f"{kind}_{name}" for kind in ("snr", "snrd") for name in ("csf", "wm", "gm")),
    "snr_total",
    "snrd_total",
    "cnr",
    "cjv",
    "fber",
    "efc",
    "wm2max",
)
FWHM_IQMS = ("fwhm_x", "fwhm_y", "fwhm_z", "fwhm_avg")


def _guarded(out: dict[str, float], notes: dict[str, str], names: Sequence[str], compute: Any) -> None:
    """Put ``compute()``'s metrics in ``out``; when it fails arithmetically, NaN for ``names`` and a note."""
    try:
        values = compute()
    except (ArithmeticError, ValueError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        for name in names:
            out[name] = math.nan
            notes[name] = f"undefined on this input: {type(exc).__name__}: {reason}"[:200]
        return
    out.update(values)


def _intensity_iqms(
    out: dict[str, float],
    notes: dict[str, str],
    load_preproc: Callable[[], np.ndarray],
    pvms: Mapping[str, np.ndarray],
    head: np.ndarray,
    frame: np.ndarray,
    air: np.ndarray,
    *,
    erode: bool,
) -> None:
    """The metrics of :data:`INTENSITY_IQMS`, each NaN with a note when undefined on this image.

    ``load_preproc`` reads the N4-corrected T1w; only its harmonized copy is kept (at 0.6 mm each full-grid
    array costs 0.3 GB as float32).
    """
    computed: dict[str, Any] = {}

    def prepare() -> dict[str, float]:
        computed["data"] = harmonize(load_preproc(), pvms["wm"])
        regions = {"bg": air, "csf": pvms["csf"], "gm": pvms["gm"], "wm": pvms["wm"]}
        computed["stats"] = summary_stats(computed["data"], regions, erode=erode)
        return {
            f"summary_{region}_{key}": value
            for region, values in computed["stats"].items()
            for key, value in values.items()
        }

    _guarded(out, notes, [n for n in INTENSITY_IQMS if n.startswith("summary_")], prepare)
    if "stats" not in computed:
        _guarded(out, notes, [n for n in INTENSITY_IQMS if not n.startswith("summary_")], prepare)
        return
    data, stats = computed["data"], computed["stats"]
    wm, gm, bg = stats["wm"], stats["gm"], stats["bg"]
    for name in TISSUES:
        st = stats[name]
        _guarded(
            out,
            notes,
            [f"snr_{name}"],
            lambda st=st, name=name: {f"snr_{name}": snr(st["median"], st["stdv"], st["n"])},
        )
        _guarded(
            out,
            notes,
            [f"snrd_{name}"],
            lambda st=st, name=name: {f"snrd_{name}": snr_dietrich(st["median"], bg["mad"], bg["stdv"])},
        )
    out["snr_total"] = float(np.mean([out[f"snr_{name}"] for name in ("csf", "wm", "gm")]))
    out["snrd_total"] = float(np.mean([out[f"snrd_{name}"] for name in ("csf", "wm", "gm")]))
    scalars = {
        "cnr": lambda: cnr(wm["median"], gm["median"], bg["stdv"], wm["stdv"], gm["stdv"]),
        "cjv": lambda: cjv_from_stats(wm["median"], gm["median"], wm["mad"], gm["mad"]),  # MRIQC: medians
        "fber": lambda: fber(data, head, frame),
        "efc": lambda: efc(data, frame),
        "wm2max": lambda: wm2max(data, wm["median"], overwrite_input=True),  # the last use of data
    }
    for name, compute in scalars.items():
        _guarded(out, notes, [name], lambda name=name, compute=compute: {name: compute()})


def _inu(bias: np.ndarray, dseg: np.ndarray) -> dict[str, float]:
    values = bias[dseg > 0].astype(np.float64)
    if values.size == 0:
        raise ValueError("no labelled tissue voxel")
    p05, p95 = np.percentile(values, [5, 95])
    return {"inu_range": float(abs(p95 - p05)), "inu_med": float(np.median(values))}


def _fwhm(raw: np.ndarray, brain: np.ndarray) -> dict[str, float]:
    fx, fy, fz = fwhm_classic(raw, brain)
    return {"fwhm_x": fx, "fwhm_y": fy, "fwhm_z": fz, "fwhm_avg": float(np.mean([fx, fy, fz]))}


def _fractions(pvms: Mapping[str, np.ndarray]) -> dict[str, float]:
    out = {f"icvs_{name}": value for name, value in volume_fractions(pvms).items()}
    out.update({f"rpve_{name}": value for name, value in rpve(pvms).items()})
    return out


def compute_iqms(
    t1w: str | os.PathLike,
    t1w_preproc: str | os.PathLike,
    bias: str | os.PathLike,
    mask: str | os.PathLike,
    dseg: str | os.PathLike,
    tpms: Sequence[str | os.PathLike],
    std_t1w: str | os.PathLike,
    std_tpms: Sequence[str | os.PathLike],
    template: str = DEFAULT_TEMPLATE,
    notes: dict[str, str] | None = None,
) -> dict[str, float]:
    """Compute every IQM and processing-quality metric of one T1w (see ``docs/iqms.md``).

    The union of :func:`image_iqms` (the native images) and :func:`template_iqms` (the normalized ones).

    Parameters
    ----------
    t1w : path
        Conformed raw T1w (RAS; ``ConformImage.out_file``).
    t1w_preproc : path
        N4-corrected T1w on the same grid.
    bias : path
        N4 bias field on the same grid.
    mask : path
        Brain mask.
    dseg : path
        Tissue labels (1 GM, 2 WM, 3 CSF).
    tpms : sequence of path
        GM, WM and CSF probability maps, in this order.
    std_t1w : path
        T1w resampled into the template.
    std_tpms : sequence of path
        GM, WM and CSF probability maps resampled into the template.
    template : str
        Template of the normalization (for its T1w, brain mask and probability maps).
    notes : dict or None
        Filled with metric name → one-line reason for every metric that is undefined on this input
        (e.g. a zero spread, a non-positive white-matter median of a z-scored image): such a metric is NaN
        instead of an exception that would fail the subject.

    Returns
    -------
    dict
        Metric name → float (NaN where undefined), sorted by name.
    """
    if len(tpms) != 3 or len(std_tpms) != 3:
        raise ValueError(
            f"compute_iqms: 'tpms' and 'std_tpms' must list 3 files (GM, WM, CSF); "
            f"got {len(tpms)} and {len(std_tpms)}."
        )
    notes = {} if notes is None else notes
    out = image_iqms(t1w, t1w_preproc, bias, mask, dseg, tpms, notes=notes)
    out.update(template_iqms(std_t1w, std_tpms, template, notes=notes))
    return {key: out[key] for key in sorted(out)}


def _finite(out: dict[str, float], notes: dict[str, str]) -> dict[str, float]:
    """``out`` as floats sorted by name, a non-finite value NaN with a note."""
    for key, value in out.items():
        if not math.isfinite(float(value)) and key not in notes:
            notes[key] = "undefined on this input (not a finite number)"
            out[key] = math.nan
    return {key: float(out[key]) for key in sorted(out)}


def image_iqms(
    t1w: str | os.PathLike,
    t1w_preproc: str | os.PathLike,
    bias: str | os.PathLike,
    mask: str | os.PathLike,
    dseg: str | os.PathLike,
    tpms: Sequence[str | os.PathLike],
    notes: dict[str, str] | None = None,
) -> dict[str, float]:
    """The metrics of the native images: all of :func:`compute_iqms`'s but ``reg_*`` and ``tpm_overlap_*``.

    They need no normalization, so they can be computed while it runs (``qc.yml``). The parameters are
    :func:`compute_iqms`'s.
    """
    if len(tpms) != 3:
        raise ValueError(f"image_iqms: 'tpms' must list 3 files (GM, WM, CSF); got {len(tpms)}.")
    raw_img = load_image(t1w)
    zooms = tuple(float(z) for z in raw_img.header.get_zooms()[:3])
    raw = _data(raw_img)
    images = {"t1w_preproc": t1w_preproc, "bias": bias, "mask": mask, "dseg": dseg}
    loaded = {key: load_image(path) for key, path in images.items()}
    loaded.update({f"tpm_{name}": load_image(path) for name, path in zip(TISSUES, tpms, strict=True)})
    for key, img in loaded.items():
        check_same_grid(
            raw_img,
            img,
            f"compute_iqms: '{key}' is not on the grid of the T1w ({img.shape[:3]} vs {raw_img.shape[:3]}).",
        )
    brain = _data(loaded["mask"]) > 0
    pvms = {name: np.clip(_data(loaded[f"tpm_{name}"]), 0.0, 1.0) for name in TISSUES}
    if brain.sum() == 0:
        raise ValueError(f"compute_iqms: the brain mask {mask} is empty.")

    head = iqm_head_mask(raw, zooms, brain)
    frame = frame_mask(raw) & ~head
    air = ~head & ~frame
    out: dict[str, float] = {}
    notes = {} if notes is None else notes
    erode = all(z < 1.9 for z in zooms)
    _intensity_iqms(out, notes, lambda: _data(loaded["t1w_preproc"]), pvms, head, frame, air, erode=erode)

    dseg_data = np.rint(_data(loaded["dseg"])).astype(np.int16)  # read here: not held during the above
    _guarded(out, notes, ("inu_range", "inu_med"), lambda: _inu(_data(loaded["bias"]), dseg_data))
    _guarded(out, notes, FWHM_IQMS, lambda: _fwhm(raw, brain))
    _guarded(out, notes, [f"{k}_{n}" for k in ("icvs", "rpve") for n in TISSUES], lambda: _fractions(pvms))

    # processing quality
    from smriflow.data.atlases import tissue_volumes

    in_memory = {  # the arrays already read: nibabel would decompress the files again
        name: nb.Nifti1Image(pvms[name], raw_img.affine, loaded[f"tpm_{name}"].header) for name in TISSUES
    }
    mask_img = nb.Nifti1Image(brain.astype(np.uint8), raw_img.affine, loaded["mask"].header)
    volumes = tissue_volumes(*(in_memory[name] for name in TISSUES), mask_img)
    out["volume_brain_cm3"] = volumes["brain_volume_mm3"] / 1000.0
    out["volume_tiv_cm3"] = volumes["tiv_mm3"] / 1000.0
    out["volume_mask_cm3"] = volumes["mask_volume_mm3"] / 1000.0
    n_components, largest = mask_components(brain)
    out["mask_n_components"] = float(n_components)
    out["mask_lcc_fraction"] = largest
    _guarded(
        out,
        notes,
        ("seg_entropy",),
        lambda: {"seg_entropy": segmentation_entropy([pvms[name] for name in TISSUES], brain)},
    )

    return _finite(out, notes)


def template_iqms(
    std_t1w: str | os.PathLike,
    std_tpms: Sequence[str | os.PathLike],
    template: str = DEFAULT_TEMPLATE,
    notes: dict[str, str] | None = None,
) -> dict[str, float]:
    """The metrics of the normalized images: ``reg_ncc``, ``reg_dice`` and ``tpm_overlap_*``.

    The parameters are :func:`compute_iqms`'s.
    """
    if len(std_tpms) != 3:
        raise ValueError(f"template_iqms: 'std_tpms' must list 3 files (GM, WM, CSF); got {len(std_tpms)}.")
    notes = {} if notes is None else notes
    out: dict[str, float] = {}
    std_img = load_image(std_t1w)
    std_tpm_imgs = [load_image(path) for path in std_tpms]
    for name, img in zip(TISSUES, std_tpm_imgs, strict=True):
        check_same_grid(
            img,
            std_img,
            f"compute_iqms: the {name.upper()} map in template space is not on the grid of 'std_t1w'.",
        )
    tpl_mask = _template_on(std_img, template, "mask") > 0
    tpl_t1w = _template_on(std_img, template, "T1w")
    out["reg_ncc"] = ncc(_data(std_img), tpl_t1w, tpl_mask)
    std_pvms = [np.clip(_data(img), 0.0, 1.0) for img in std_tpm_imgs]
    from smriflow.utils.metrics import dice

    out["reg_dice"] = dice(np.sum(std_pvms, axis=0) >= 0.5, tpl_mask)
    for name, std_pvm in zip(TISSUES, std_pvms, strict=True):
        tpl = _template_on(std_img, template, "probseg", label=name.upper())
        out[f"tpm_overlap_{name}"] = fuzzy_jaccard(std_pvm, np.clip(tpl, 0.0, 1.0))
    return _finite(out, notes)


def write_iqms(
    iqms: Mapping[str, float], path: str | os.PathLike, notes: Mapping[str, str] | None = None
) -> str:
    """Write the metrics as a JSON object (sorted keys, floats, 2-space indent); return the path.

    JSON has no NaN: an undefined metric is written as ``null``, and the object then has a ``notes`` key
    (metric name → why it is undefined, from :func:`compute_iqms`'s ``notes``). Readers take ``null`` as
    NaN and skip ``notes`` (:func:`read_iqms`).
    """
    values: dict[str, Any] = {
        key: (float(iqms[key]) if math.isfinite(float(iqms[key])) else None) for key in sorted(iqms)
    }
    undefined = sorted(key for key, value in values.items() if value is None)
    if undefined:
        notes = dict(notes or {})
        values["notes"] = {key: notes.get(key, "undefined on this input") for key in undefined}
    text = json.dumps(values, indent=2, allow_nan=False) + "\n"
    Path(path).write_text(text, encoding="utf-8")
    return str(path)


def read_iqms(path: str | os.PathLike) -> tuple[dict[str, float], dict[str, str]]:
    """Read a file of :func:`write_iqms`: (metric name → float, NaN for ``null``; notes).

    Raises
    ------
    ValueError
        One line naming the file when it is not such a JSON object.
    """
    try:
        values = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: cannot read the IQMs ({exc})") from None
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected a JSON object of numbers (IQM name -> value)")
    notes = values.pop("notes", {})
    if not isinstance(notes, dict) or not all(
        value is None or (isinstance(value, int | float) and not isinstance(value, bool))
        for value in values.values()
    ):
        raise ValueError(f"{path}: expected a JSON object of numbers (IQM name -> value)")
    return (
        {str(k): math.nan if v is None else float(v) for k, v in values.items()},
        {str(k): str(v) for k, v in notes.items()},
    )


def add_thickness_iqms(
    iqms_file: str | os.PathLike, record_file: str | os.PathLike | None, out_file: str | os.PathLike
) -> str:
    """Write the metrics of ``iqms_file`` plus the finite ``iqms`` of a thickness record; return the path.

    Parameters
    ----------
    iqms_file : path
        A file of :func:`write_iqms`.
    record_file : path or None
        ``CorticalThickness``'s JSON record: its ``iqms`` (``thickness_mean_lh`` …) join the metrics, except
        the undefined ones (null or NaN), which are left out. None: the metrics are written unchanged.
    out_file : path
        Where to write the result (:func:`write_iqms`'s format).
    """
    iqms, notes = read_iqms(iqms_file)
    if record_file is not None:
        try:
            extra = json.loads(Path(record_file).read_text(encoding="utf-8"))["iqms"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{record_file}: cannot read the thickness record's 'iqms' ({exc})") from None
        iqms.update({str(k): float(v) for k, v in extra.items() if v is not None and math.isfinite(float(v))})
    return write_iqms(iqms, out_file, notes)


def add_template_iqms(
    iqms_file: str | os.PathLike,
    std_t1w: str | os.PathLike,
    std_tpms: Sequence[str | os.PathLike],
    out_file: str | os.PathLike,
    template: str = DEFAULT_TEMPLATE,
) -> str:
    """Write the metrics of ``iqms_file`` (:func:`image_iqms`'s) plus :func:`template_iqms`; return the path.

    The file is byte for byte the one :func:`compute_iqms` and :func:`write_iqms` give.
    """
    iqms, notes = read_iqms(iqms_file)
    iqms.update(template_iqms(std_t1w, std_tpms, template, notes=notes))
    return write_iqms(iqms, out_file, notes)
