"""Synthetic T1w heads with known ground truth, made from the template smriflow ships (for ``smriflow demo``).

A subject is the MNI152 2009a template's tissue maps (:func:`smriflow.data.templates.get_template`) seen
through a random pose and a smooth deformation, with a head around the brain and the artefacts of a real
scan. Every step is a pure function of its inputs and a :class:`numpy.random.Generator`, so a seed gives the
same bytes on every machine. For one subject (:func:`synthesize_subject`):

1. **Pose and deformation.** A native voxel's world position ``x`` is mapped to the template point
   ``p = y + u(y)`` with ``y = A x`` (``A``: random rotation, translation, scaling and shear,
   :func:`random_affine`) and ``u`` a smooth random displacement field (:func:`random_deformation`), kept
   small enough that ``y ↦ y + u(y)`` is invertible (its Jacobian determinant stays positive).
2. **Tissues.** The template's GM, WM and CSF probabilities and brain mask are sampled at ``p`` (trilinear);
   the ground truth is the sampled mask (> 0.5) and the argmax of the sampled probabilities inside it
   (``dseg``: 1 GM, 2 WM, 3 CSF, as ``anat_preproc`` labels them).
3. **Age effect.** In one atlas region (default the left superior frontal cortex of the Desikan-Killiany
   atlas), the cortex thins by a fraction ``rate × (age − reference_age)`` of its thickness, from its CSF
   side (:func:`thin_cortex`: the outer GM becomes CSF). The region's true GM volume and the thinning
   fraction are recorded, so group analyses of GM volume and of thickness can be scored against them.
4. **Head.** Outside the brain, a thin dark fluid layer, a dark skull and a bright scalp follow the brain's
   outer distance (:func:`head_shell`), with thicknesses that vary smoothly over the head, so that brain
   extraction has real work to do.
5. **Image.** Intensities per tissue (:data:`INTENSITIES`), times a smooth multiplicative bias field
   (:func:`bias_field`), then Rician noise (:func:`add_rician_noise`), stored as int16.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import nibabel as nb
import numpy as np
import pandas as pd
from scipy import ndimage

__all__ = [
    "INTENSITIES",
    "SynthParams",
    "SyntheticSubject",
    "TemplateModel",
    "add_rician_noise",
    "bias_field",
    "head_shell",
    "jacobian_determinant",
    "load_template_model",
    "model_from_arrays",
    "participant_table",
    "random_affine",
    "random_deformation",
    "synthesize_subject",
    "thin_cortex",
    "thin_region",
    "write_dataset",
]

#: T1w intensity of each tissue (white matter = 1).
INTENSITIES: Mapping[str, float] = {
    "GM": 0.60,
    "WM": 1.00,
    "CSF": 0.18,
    "fluid": 0.15,
    "skull": 0.06,
    "scalp": 0.75,
}
_PAD_MM = 24.0  # room around the template brain for the head


@dataclass(frozen=True)
class SynthParams:
    """How much of each effect a synthetic subject gets (defaults: those of ``smriflow demo``)."""

    voxel_size: float = 1.5  #: native voxel size (mm, isotropic)
    rotation_deg: float = 8.0  #: maximum rotation about each axis (degrees)
    translation_mm: float = 8.0  #: maximum translation along each axis (mm)
    scaling: float = 0.05  #: maximum relative scaling along each axis
    shear: float = 0.02  #: maximum shear coefficient
    deformation_mm: float = 2.5  #: maximum displacement of the smooth deformation (mm)
    deformation_sigma_mm: float = 16.0  #: smoothness of the deformation (Gaussian sigma, mm)
    bias_strength: float = 0.25  #: the bias field lies within exp(±bias_strength) over the head
    noise: float = 0.03  #: standard deviation of each Gaussian noise component, relative to WM
    region: str = "ctx-lh-superiorfrontal"  #: Desikan-Killiany region that thins with age
    thinning_rate: float = (
        0.008  #: fraction of the region's cortical thickness lost per year after reference_age
    )
    reference_age: float = 20.0  #: age without thinning (years)


@dataclass
class TemplateModel:
    """The template's tissue maps on a padded 1 mm grid and the thinning region (see load_template_model)."""

    gm: np.ndarray
    wm: np.ndarray
    csf: np.ndarray
    mask: np.ndarray  #: float32 in {0, 1}
    outer_distance: np.ndarray  #: mm from the brain mask (0 inside)
    region: np.ndarray  #: bool, the thinning region
    affine: np.ndarray  #: voxel → template mm
    region_name: str = ""

    @property
    def brain_box_mm(self) -> tuple[np.ndarray, np.ndarray]:
        """Corners (min, max) of the brain mask in template mm."""
        idx = np.argwhere(self.mask > 0)
        corners = nb.affines.apply_affine(self.affine, np.stack([idx.min(0), idx.max(0)]))
        return corners.min(0), corners.max(0)


@dataclass
class SyntheticSubject:
    """One synthetic T1w and its ground truth (all images on the same native grid)."""

    t1w: nb.Nifti1Image  #: int16 image, what the scanner gives
    mask: nb.Nifti1Image  #: true brain mask (uint8)
    dseg: nb.Nifti1Image  #: true tissue labels: 1 GM, 2 WM, 3 CSF (uint8)
    clean: np.ndarray  #: noiseless, bias-free intensities
    bias: np.ndarray  #: the multiplicative bias field
    shell: np.ndarray  #: partial volume of skull and scalp
    truth: dict[str, float] = field(default_factory=dict)  #: volumes (mm³) and the transform's parameters


def load_template_model(region: str = "ctx-lh-superiorfrontal") -> TemplateModel:
    """Load the template's GM/WM/CSF maps and brain mask at 1 mm, padded, with ``region`` resampled onto them.

    Parameters
    ----------
    region : str
        A region name of the Desikan-Killiany atlas (``atlas_labels("desikankilliany")``).

    Returns
    -------
    TemplateModel
        Cached per process (the arrays must not be modified).
    """
    return _load_template_model(region)


@lru_cache(maxsize=2)
def _load_template_model(region: str) -> TemplateModel:
    from smriflow.data.atlases import atlas_labels, cached_atlas_dseg
    from smriflow.data.templates import get_template

    labels = atlas_labels("desikankilliany")
    match = labels.loc[labels["name"] == region, "label"]
    if match.empty:
        raise ValueError(
            f"'region' must be a region of the desikankilliany atlas (e.g. 'ctx-lh-superiorfrontal'). "
            f"{region!r} was provided."
        )
    pad = int(_PAD_MM)

    def load(path: Path) -> tuple[np.ndarray, np.ndarray]:
        img = nb.load(path)
        data = np.pad(np.asarray(img.dataobj, dtype=np.float32), pad)
        affine = img.affine.copy()
        affine[:3, 3] -= affine[:3, :3] @ np.full(3, float(pad))
        return data, affine

    gm, affine = load(get_template(suffix="probseg", label="GM"))
    wm, _ = load(get_template(suffix="probseg", label="WM"))
    csf, _ = load(get_template(suffix="probseg", label="CSF"))
    mask, _ = load(get_template(suffix="mask"))
    atlas = nb.load(cached_atlas_dseg("desikankilliany"))
    region_mask = _resample(
        (np.asarray(atlas.dataobj) == int(match.iloc[0])).astype(np.float32),
        np.linalg.inv(atlas.affine) @ affine,
        mask.shape,
        order=0,
    )
    return model_from_arrays(gm, wm, csf, mask, region_mask > 0.5, affine, region_name=region)


def model_from_arrays(
    gm: np.ndarray,
    wm: np.ndarray,
    csf: np.ndarray,
    mask: np.ndarray,
    region: np.ndarray,
    affine: np.ndarray,
    *,
    region_name: str = "",
) -> TemplateModel:
    """A :class:`TemplateModel` from tissue maps on one grid (the distance outside the mask is computed).

    The grid must leave about 20 mm around the mask for the head.
    """
    mask = (np.asarray(mask) > 0).astype(np.float32)
    zooms = np.sqrt((affine[:3, :3] ** 2).sum(0))
    outer = ndimage.distance_transform_edt(mask == 0, sampling=zooms).astype(np.float32)
    arrays = [np.asarray(a, dtype=np.float32) for a in (gm, wm, csf)]
    return TemplateModel(*arrays, mask, outer, (np.asarray(region) > 0) & (mask > 0), affine, region_name)


def _resample(data: np.ndarray, vox2vox: np.ndarray, shape: tuple[int, ...], order: int) -> np.ndarray:
    """Resample ``data`` onto a grid whose voxel ``i`` is ``data``'s voxel ``vox2vox @ i``."""
    return ndimage.affine_transform(
        data, vox2vox[:3, :3], offset=vox2vox[:3, 3], output_shape=shape, order=order, cval=0.0
    )


def random_affine(
    rng: np.random.Generator, params: SynthParams, centre: np.ndarray | None = None
) -> np.ndarray:
    """A random 4 × 4 affine (rotation, scaling, shear, translation) about ``centre`` (mm).

    Each rotation angle, log-scale, shear and translation is uniform within ``±`` its ``params`` maximum.
    The result maps a native world point to the template (``y = A x``).
    """
    centre = np.zeros(3) if centre is None else np.asarray(centre, dtype=float)
    angles = np.deg2rad(rng.uniform(-params.rotation_deg, params.rotation_deg, 3))
    cx, cy, cz = np.cos(angles)
    sx, sy, sz = np.sin(angles)
    rot_x = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    rot_y = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rot_z = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    scale = np.diag(np.exp(rng.uniform(-1, 1, 3) * np.log1p(params.scaling)))
    shear = np.eye(3)
    shear[np.triu_indices(3, 1)] = rng.uniform(-params.shear, params.shear, 3)
    linear = rot_z @ rot_y @ rot_x @ shear @ scale
    translation = rng.uniform(-params.translation_mm, params.translation_mm, 3)
    out = np.eye(4)
    out[:3, :3] = linear
    out[:3, 3] = centre - linear @ centre + translation
    return out


def random_deformation(
    rng: np.random.Generator,
    box_min: np.ndarray,
    box_max: np.ndarray,
    *,
    amplitude_mm: float,
    sigma_mm: float,
    spacing_mm: float = 4.0,
) -> tuple[np.ndarray, np.ndarray]:
    """A smooth random displacement field over a box: Gaussian-smoothed white noise, scaled to a maximum.

    Parameters
    ----------
    rng : numpy.random.Generator
        Random numbers.
    box_min, box_max : array-like of 3 floats
        Corners of the box (template mm) the field covers.
    amplitude_mm : float
        The largest displacement length (mm).
    sigma_mm : float
        Standard deviation (mm) of the Gaussian that smooths the noise: larger is smoother.
    spacing_mm : float
        Grid spacing of the field (mm).

    Returns
    -------
    field : numpy.ndarray
        ``(nx, ny, nz, 3)`` displacements (mm).
    affine : numpy.ndarray
        The field grid's voxel → mm affine.
    """
    box_min, box_max = np.asarray(box_min, float), np.asarray(box_max, float)
    shape = tuple(int(np.ceil(n)) + 1 for n in (box_max - box_min) / spacing_mm)
    noise = rng.standard_normal((*shape, 3))
    field = np.stack(
        [ndimage.gaussian_filter(noise[..., k], sigma_mm / spacing_mm, mode="nearest") for k in range(3)],
        axis=-1,
    )
    longest = np.sqrt((field**2).sum(-1)).max()
    field *= amplitude_mm / longest if longest > 0 else 0.0
    affine = np.diag([spacing_mm] * 3 + [1.0])
    affine[:3, 3] = box_min
    return field.astype(np.float64), affine


def jacobian_determinant(field: np.ndarray, spacing_mm: float) -> np.ndarray:
    """Jacobian determinant of ``y ↦ y + u(y)`` for a displacement field ``u`` on a regular grid."""
    grads = np.stack(
        [np.stack(np.gradient(field[..., k], spacing_mm), axis=-1) for k in range(3)], axis=-2
    )  # (..., component, direction)
    return np.linalg.det(grads + np.eye(3))


def _sample_field(field: np.ndarray, affine: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Displacements at ``points`` (N × 3 mm) by cubic B-spline interpolation (zero outside the box)."""
    vox = nb.affines.apply_affine(np.linalg.inv(affine), points).T
    return np.stack(
        [ndimage.map_coordinates(field[..., k], vox, order=3, mode="constant") for k in range(3)], axis=-1
    )


def head_shell(
    outer_distance: np.ndarray,
    skull_mm: np.ndarray | float,
    scalp_mm: np.ndarray | float,
    fluid_mm: float = 1.5,
) -> dict[str, np.ndarray]:
    """Partial volumes of the layers outside the brain, from the distance to the brain (mm).

    Layers from the brain outwards: ``fluid`` (``fluid_mm`` thick), ``skull``, ``scalp``; each boundary is a
    1 mm linear ramp, so the fractions of the three layers and of the brain (``1 - ramp(d)``) sum to at most 1
    and are exactly 0 at distances beyond the scalp.
    """
    d = np.asarray(outer_distance, dtype=np.float32)

    def ramp(x: np.ndarray) -> np.ndarray:
        return np.clip(x, 0.0, 1.0)

    inner, skull_end = fluid_mm, fluid_mm + np.asarray(skull_mm)
    scalp_end = skull_end + np.asarray(scalp_mm)
    return {
        "fluid": ramp(d) - ramp(d - inner),
        "skull": ramp(d - inner) - ramp(d - skull_end),
        "scalp": ramp(d - skull_end) - ramp(d - scalp_end),
    }


def thin_region(
    gm: np.ndarray, csf: np.ndarray, region: np.ndarray, fraction: float | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Move ``fraction`` (a number, or one per voxel) of the GM partial volume inside ``region`` to CSF.

    The total volume is unchanged.
    """
    fraction = np.asarray(fraction, dtype=np.float32)
    if not (np.all(fraction >= 0.0) and np.all(fraction <= 1.0)):
        raise ValueError(f"'fraction' must be within [0, 1]. {fraction!r} was provided.")
    lost = np.where(region, gm * fraction, np.float32(0.0))
    return gm - lost, csf + lost


def thin_cortex(
    gm: np.ndarray, wm: np.ndarray, csf: np.ndarray, region: np.ndarray, fraction: float, voxel_mm: float
) -> tuple[np.ndarray, np.ndarray]:
    """Thin the cortex inside ``region`` by ``fraction`` of its thickness, from its outer (CSF) side.

    A GM voxel at distance ``d_in`` from the white matter (``WM ≥ 0.5``) and ``d_out`` from the outside
    (``GM + WM < 0.5``), voxel centre to voxel centre, lies on a profile of thickness
    ``T = d_in + d_out − voxel``; the new outer surface is at depth ``(1 − fraction) T`` and the part of the
    voxel beyond it loses its GM to CSF (partial volume). The cortex's thickness, and about as much of its
    GM volume, is reduced by ``fraction``. Returns the new GM and CSF (:func:`thin_region` moves the GM).
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"'fraction' must be within [0, 1]. {fraction!r} was provided.")
    inner, outer = wm >= 0.5, (gm + wm) < 0.5
    d_in = ndimage.distance_transform_edt(~inner, sampling=voxel_mm)
    d_out = np.maximum(ndimage.distance_transform_edt(~outer, sampling=voxel_mm), voxel_mm)
    # between voxel centres the profile spans d_in + d_out - voxel (each boundary lies half a voxel away)
    beyond = (d_in - (1.0 - fraction) * (d_in + d_out - voxel_mm)) / voxel_mm
    lost = np.where(inner, 0.0, np.clip(beyond, 0.0, 1.0))
    return thin_region(gm, csf, region, lost)


def bias_field(
    rng: np.random.Generator, points_mm: np.ndarray, strength: float, centre: np.ndarray, inside: np.ndarray
) -> np.ndarray:
    """A smooth multiplicative field ``exp(q(x))`` with ``q`` a random quadratic polynomial.

    ``q`` is scaled so that ``max |q| = strength`` over the points where ``inside`` is true.
    """
    x = (np.asarray(points_mm, float) - centre) / 100.0
    terms = [x[:, 0], x[:, 1], x[:, 2], x[:, 0] * x[:, 1], x[:, 0] * x[:, 2], x[:, 1] * x[:, 2]]
    terms += [x[:, k] ** 2 for k in range(3)]
    q = np.stack(terms, axis=-1) @ rng.standard_normal(len(terms))
    q -= np.median(q[inside])
    q *= strength / np.abs(q[inside]).max()
    return np.exp(q)


def add_rician_noise(image: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Magnitude of the image plus complex Gaussian noise: ``|image + n1 + i n2|``, ``n1, n2 ~ N(0, σ²)``."""
    real = image + rng.normal(0.0, sigma, image.shape)
    imag = rng.normal(0.0, sigma, image.shape)
    return np.hypot(real, imag)


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], coarse: int = 8) -> np.ndarray:
    """Smooth random values in [-1, 1] on ``shape``: a ``coarse``³ grid of noise, smoothed and upsampled."""
    small = ndimage.gaussian_filter(rng.standard_normal((coarse,) * 3), 1.5, mode="wrap")
    small /= np.abs(small).max()
    return ndimage.zoom(small, [n / coarse for n in shape], order=1, mode="nearest", grid_mode=True)[
        tuple(slice(0, n) for n in shape)
    ].astype(np.float32)


def _native_grid(model: TemplateModel, to_template: np.ndarray, voxel: float, margin: float):
    """A RAS native grid covering the head (brain box + shell + margin) as the subject lies."""
    lo, hi = model.brain_box_mm
    lo, hi = lo - margin, hi + margin
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    native = nb.affines.apply_affine(np.linalg.inv(to_template), corners)
    nlo, nhi = native.min(0), native.max(0)
    shape = tuple(int(np.ceil(n)) for n in (nhi - nlo) / voxel)
    affine = np.diag([voxel] * 3 + [1.0])
    affine[:3, 3] = np.round(nlo)
    return shape, affine


def synthesize_subject(
    model: TemplateModel, *, age: float, rng: np.random.Generator, params: SynthParams = SynthParams()
) -> SyntheticSubject:
    """Make one synthetic T1w of a subject of ``age`` years and its ground truth (module docstring)."""
    lo, hi = model.brain_box_mm
    centre = (lo + hi) / 2
    to_template = random_affine(rng, params, centre)
    field, field_affine = random_deformation(
        rng,
        lo - _PAD_MM,
        hi + _PAD_MM,
        amplitude_mm=params.deformation_mm,
        sigma_mm=params.deformation_sigma_mm,
    )
    shape, affine = _native_grid(model, to_template, params.voxel_size, margin=_PAD_MM - 4)
    points = nb.affines.apply_affine(affine, np.indices(shape).reshape(3, -1).T)
    warped = nb.affines.apply_affine(to_template, points)
    warped += _sample_field(field, field_affine, warped)
    tvox = nb.affines.apply_affine(np.linalg.inv(model.affine), warped).T

    def pull(data: np.ndarray, order: int = 1, cval: float = 0.0) -> np.ndarray:
        out = ndimage.map_coordinates(data, tvox, order=order, mode="constant", cval=cval)
        return out.reshape(shape).astype(np.float32)

    gm, wm, csf, brain = pull(model.gm), pull(model.wm), pull(model.csf), pull(model.mask)
    region = pull(model.region.astype(np.float32), order=0) > 0.5
    distance = pull(model.outer_distance, cval=100.0)
    thinning = float(np.clip(params.thinning_rate * (age - params.reference_age), 0.0, 0.9))
    gm, csf = thin_cortex(gm, wm, csf, region, thinning, params.voxel_size)
    # skull and scalp thicknesses vary smoothly over the head (3-7 mm and 4-8 mm)
    layers = head_shell(
        distance,
        skull_mm=5.0 + 2.0 * _smooth_noise(rng, shape),
        scalp_mm=6.0 + 2.0 * _smooth_noise(rng, shape),
    )
    clean = (
        INTENSITIES["GM"] * gm
        + INTENSITIES["WM"] * wm
        + INTENSITIES["CSF"] * csf
        + sum(INTENSITIES[name] * layer for name, layer in layers.items())
    ).astype(np.float32)
    head = (brain > 0.5) | (layers["scalp"] + layers["skull"] + layers["fluid"] > 0)
    bias = (
        bias_field(rng, points, params.bias_strength, centre, head.ravel()).reshape(shape).astype(np.float32)
    )
    noisy = add_rician_noise(clean * bias, params.noise * INTENSITIES["WM"], rng)
    t1w = np.clip(np.rint(noisy * 1000.0), 0, np.iinfo(np.int16).max).astype(np.int16)

    mask = brain > 0.5
    dseg = np.where(mask, np.argmax(np.stack([gm, wm, csf]), axis=0) + 1, 0).astype(np.uint8)
    voxel_mm3 = float(abs(np.linalg.det(affine[:3, :3])))
    truth = {
        "age": float(age),
        "thinning_fraction": thinning,
        "region_gm_mm3": float(gm[region].sum() * voxel_mm3),
        "gm_mm3": float(gm[mask].sum() * voxel_mm3),
        "wm_mm3": float(wm[mask].sum() * voxel_mm3),
        "csf_mm3": float(csf[mask].sum() * voxel_mm3),
        "brain_mask_mm3": float(mask.sum() * voxel_mm3),
        "affine_det": float(np.linalg.det(to_template[:3, :3])),
        "deformation_min_jacobian": float(jacobian_determinant(field, field_affine[0, 0]).min()),
    }
    return SyntheticSubject(
        t1w=_image(t1w, affine),
        mask=_image(mask.astype(np.uint8), affine),
        dseg=_image(dseg, affine),
        clean=clean,
        bias=bias,
        shell=(layers["skull"] + layers["scalp"]).astype(np.float32),
        truth=truth,
    )


def _image(data: np.ndarray, affine: np.ndarray) -> nb.Nifti1Image:
    img = nb.Nifti1Image(data, affine)
    img.set_data_dtype(data.dtype)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    img.header.set_xyzt_units("mm")
    return img


def participant_table(n_subjects: int, rng: np.random.Generator) -> pd.DataFrame:
    """``participant_id``, ``age`` (spread over 20-80 years) and ``sex`` (F/M, both present when n ≥ 2)."""
    if n_subjects < 1:
        raise ValueError(f"'n_subjects' must be at least 1. {n_subjects!r} was provided.")
    slots = (np.arange(n_subjects) + rng.uniform(0.1, 0.9, n_subjects)) / n_subjects
    ages = np.round(20.0 + 60.0 * rng.permutation(slots), 1)
    sexes = np.array(["F", "M"] * ((n_subjects + 1) // 2))[:n_subjects]
    return pd.DataFrame(
        {
            "participant_id": [f"sub-{i:02d}" for i in range(1, n_subjects + 1)],
            "age": ages,
            "sex": rng.permutation(sexes),
        }
    )


def write_dataset(
    out_dir: str | Path, *, n_subjects: int = 4, seed: int = 42, params: SynthParams = SynthParams()
) -> pd.DataFrame:
    """Write a synthetic BIDS dataset and its ground truth; return the ground-truth table.

    Layout::

        out_dir/bids/                       dataset_description.json, participants.tsv/.json
        out_dir/bids/sub-XX/anat/sub-XX_T1w.nii.gz
        out_dir/truth/sub-XX_desc-brain_mask.nii.gz, sub-XX_dseg.nii.gz
        out_dir/truth/truth.tsv             per subject: age, sex, true volumes (mm³), transform figures
        out_dir/truth/params.json           the SynthParams and the seed

    Subject ``i`` uses the random stream ``numpy.random.default_rng([seed, i])``, so a subject does not
    change when others are added.
    """
    out = Path(out_dir)
    bids, truth_dir = out / "bids", out / "truth"
    for folder in (bids, truth_dir):
        folder.mkdir(parents=True, exist_ok=True)
    table = participant_table(n_subjects, np.random.default_rng([seed, 0]))
    (bids / "dataset_description.json").write_text(
        json.dumps(
            {
                "Name": "smriflow synthetic demo",
                "BIDSVersion": "1.10.0",
                "DatasetType": "raw",
                "GeneratedBy": [{"Name": "smriflow.data.synth", "Description": f"seed {seed}"}],
            },
            indent=2,
        )
        + "\n"
    )
    table.to_csv(bids / "participants.tsv", sep="\t", index=False)
    (bids / "participants.json").write_text(
        json.dumps(
            {
                "age": {"Description": "age at scan", "Units": "year"},
                "sex": {"Description": "sex", "Levels": {"F": "female", "M": "male"}},
            },
            indent=2,
        )
        + "\n"
    )
    model = load_template_model(params.region)
    rows = []
    for i, row in enumerate(table.itertuples(index=False), start=1):
        subject = synthesize_subject(model, age=row.age, rng=np.random.default_rng([seed, i]), params=params)
        anat = bids / row.participant_id / "anat"
        anat.mkdir(parents=True, exist_ok=True)
        subject.t1w.to_filename(str(anat / f"{row.participant_id}_T1w.nii.gz"))
        subject.mask.to_filename(str(truth_dir / f"{row.participant_id}_desc-brain_mask.nii.gz"))
        subject.dseg.to_filename(str(truth_dir / f"{row.participant_id}_dseg.nii.gz"))
        rows.append({"participant_id": row.participant_id, "sex": row.sex, **subject.truth})
    truth = pd.DataFrame(rows)
    truth.to_csv(truth_dir / "truth.tsv", sep="\t", index=False, float_format="%.9g")
    (truth_dir / "params.json").write_text(json.dumps({"seed": seed, **asdict(params)}, indent=2) + "\n")
    return truth
