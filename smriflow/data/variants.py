"""Hard versions of a real T1w, each with the transform that carries a reference into its space.

The robustness bench (``bench/robustness.py``) and its tests make, from one real T1w, the kinds of scans
other sites produce: no face, a field of view down to the shoulders, a tilted or off-centre head, other
intensity ranges and types, strong smooth inhomogeneity, noise, coarse or anisotropic voxels, a missing
top of the head, no skull, z-scored intensities. Every function here is pure (a seed gives the same bytes)
and returns a :class:`Variant`: the new image and a :class:`Carry`, which resamples any image aligned with
the input in world coordinates (e.g. FreeSurfer's conformed ``aseg.mgz`` and ``brainmask.mgz``) onto the
variant's grid, through the same geometric change. Intensity-only changes keep the grid (the carry is the
identity on it); a tilted or moved head moves the data in world space (the carry moves the reference with
it); resampling, padding and cropping change the grid only.

Masks that a variant needs (the brain mask to deface or skull-strip) are given as images in any space
aligned with the input; nothing is tuned to one subject: positions come from the image's own head mask and
the given brain mask, lengths are in mm.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import nibabel as nb
import numpy as np
from scipy import fft, ndimage

from smriflow.data.synth import add_rician_noise, bias_field
from smriflow.utils.morphology import head_mask

__all__ = [
    "VARIANTS",
    "Carry",
    "Variant",
    "acquire_voxels",
    "add_neck",
    "contrast_gamma",
    "cut_top",
    "deface",
    "make_variant",
    "move_head",
    "rescale_intensity",
    "resample_voxels",
    "rician_noise",
    "rotate_head",
    "skull_strip",
    "unchanged",
    "smooth_bias",
    "zscore",
]

Image = nb.spatialimages.SpatialImage


@dataclass(frozen=True)
class Carry:
    """A variant's grid (``shape``, ``affine``) and the map from its world space to the input's.

    ``to_source`` is a 4 × 4 matrix taking a point of the variant's world space to the point of the input's
    world space it came from (the identity unless the data moved).
    """

    shape: tuple[int, int, int]
    affine: np.ndarray
    to_source: np.ndarray

    def __call__(self, image: Image, order: int = 0, cval: float = 0.0) -> np.ndarray:
        """Sample ``image`` (aligned with the input in world space) on the variant's grid.

        Nearest neighbour by default (labels, masks); exact when the two grids differ by a permutation
        or flip of axes and an integer shift. Outside ``image``: ``cval``.
        """
        vox = np.linalg.inv(image.affine) @ self.to_source @ self.affine
        data = np.asanyarray(image.dataobj)
        if order == 0 and np.allclose(vox, np.round(vox), atol=1e-3):
            coords = np.indices(self.shape, dtype=np.int32).reshape(3, -1)
            idx = np.round(vox[:3, :3]).astype(np.int32) @ coords + np.round(vox[:3, 3:4]).astype(np.int32)
            inside = np.all((idx >= 0) & (idx < np.array(data.shape[:3])[:, None]), axis=0)
            out = np.full(idx.shape[1], cval, dtype=data.dtype if cval == 0 else np.float32)
            out[inside] = data[tuple(idx[:, inside])]
            return out.reshape(self.shape)
        source = data if order == 0 else data.astype(np.float32, copy=False)
        return ndimage.affine_transform(
            source, vox, output_shape=self.shape, order=order, mode="constant", cval=cval
        )

    def then(self, other: Carry) -> Carry:
        """The carry of a variant made from this one's variant by ``other`` (composed, one resampling)."""
        return Carry(other.shape, other.affine, self.to_source @ other.to_source)


class Variant(NamedTuple):
    """A variant image and the carry of references into its space."""

    image: nb.Nifti1Image
    carry: Carry


def identity(img: Image) -> Carry:
    """The carry of an image onto its own grid."""
    return Carry(tuple(int(n) for n in img.shape[:3]), img.affine.copy(), np.eye(4))


def _nifti(data: np.ndarray, affine: np.ndarray, dtype: type | None = None) -> nb.Nifti1Image:
    out = nb.Nifti1Image(np.asarray(data, dtype=dtype or np.float32), affine)
    out.set_qform(affine, 1)
    out.set_sform(affine, 1)
    return out


def _data(img: Image) -> np.ndarray:
    """A float32 copy of the data (never a view: variants must not change their input)."""
    return np.asanyarray(img.dataobj).astype(np.float32, copy=True)


def _zooms(affine: np.ndarray) -> np.ndarray:
    return np.sqrt((affine[:3, :3] ** 2).sum(0))


def _world_axis(affine: np.ndarray, code: str) -> tuple[int, int]:
    """The voxel axis closest to world axis ``code`` (R, A or S) and +1/-1 when it points that way."""
    world = "RAS".index(code)
    axis = int(np.argmax(np.abs(affine[world, :3]) / _zooms(affine)))
    return axis, int(np.sign(affine[world, axis]))


def _world_coordinate(affine: np.ndarray, shape: Sequence[int], world: int) -> np.ndarray:
    """World coordinate ``world`` (0 R, 1 A, 2 S) of every voxel, float32, without a 3 × N array."""
    idx = [
        np.arange(n, dtype=np.float32).reshape([-1 if k == j else 1 for k in range(3)])
        for j, n in enumerate(shape[:3])
    ]
    return (affine[world, 3] + sum(affine[world, j] * idx[j] for j in range(3))).astype(np.float32)


def _head(img: Image) -> np.ndarray:
    return head_mask(np.asanyarray(img.dataobj), _zooms(img.affine))


def _mask_on(img: Image, mask: Image) -> np.ndarray:
    return identity(img)(mask) > 0


def unchanged(img: Image) -> Variant:
    """The image as it is (same data type), on its own grid."""
    data = np.asanyarray(img.dataobj)
    return Variant(_nifti(data, img.affine, data.dtype), identity(img))


# -- geometry -------------------------------------------------------------------------------------------
def rotate_head(
    img: Image, degrees: float = 20.0, axis: str = "R", centre_mm: Sequence[float] | None = None
) -> Variant:
    """Rotate the head inside the field of view by ``degrees`` about world axis ``axis`` (R: nodding).

    The data move (the affine is kept), about ``centre_mm`` (world, default the centre of the head mask);
    trilinear interpolation.
    """
    if centre_mm is None:
        centre = nb.affines.apply_affine(img.affine, np.argwhere(_head(img)).mean(0))
    else:
        centre = np.asarray(centre_mm, dtype=float)
    angle = np.deg2rad(degrees)
    c, s = np.cos(angle), np.sin(angle)
    k = "RAS".index(axis)
    i, j = [a for a in range(3) if a != k]
    rotation = np.eye(4)
    rotation[[i, i, j, j], [i, j, i, j]] = c, -s, s, c
    to_centre, back = np.eye(4), np.eye(4)
    to_centre[:3, 3], back[:3, 3] = -centre, centre
    moved = back @ rotation @ to_centre  # input world -> variant world
    carry = Carry(identity(img).shape, img.affine.copy(), np.linalg.inv(moved))
    return Variant(_nifti(np.clip(carry(img, order=1), 0, None), img.affine), carry)


def move_head(img: Image, offset_mm: Sequence[float] = (40.0, -40.0, 0.0)) -> Variant:
    """Pad the field of view so that the head lies ``offset_mm`` (RAS) from the volume's centre.

    The padded volume's centre stays where the input's was in world space (the scanner centred its field
    of view), so the head also moves ``offset_mm`` away from the world origin. Voxels are copied, not
    interpolated; the padding is 0.
    """
    zooms = _zooms(img.affine)
    pad, start = np.zeros(3, int), np.zeros(3, int)
    for world, value in enumerate(offset_mm):
        axis, sign = _world_axis(img.affine, "RAS"[world])
        pad[axis] = round(2 * abs(value) / zooms[axis])
        start[axis] = pad[axis] if value * sign > 0 else 0
    shape = tuple(int(n) for n in np.array(img.shape[:3]) + pad)
    old_centre = (np.array(img.shape[:3]) - 1) / 2
    new_centre = (np.array(shape) - 1) / 2
    affine = img.affine.copy()
    affine[:3, 3] = nb.affines.apply_affine(img.affine, old_centre) - img.affine[:3, :3] @ new_centre
    shift = img.affine[:3, :3] @ (start - pad / 2)  # how far the data moved in world space
    to_source = np.eye(4)
    to_source[:3, 3] = -shift
    data = np.zeros(shape, np.float32)
    data[tuple(slice(a, a + n) for a, n in zip(start, img.shape[:3], strict=True))] = _data(img)
    return Variant(_nifti(data, affine), Carry(shape, affine, to_source))


def add_neck(img: Image, length_mm: float = 120.0, slab_mm: float = 20.0, widening: float = 1.2) -> Variant:
    """Extend the field of view ``length_mm`` below the head with a neck that widens into shoulders.

    The lowest ``slab_mm`` of the head whose cross-section is complete (at least 80 % of the largest
    cross-section within 60 mm of the bottom) is mirrored downwards, again and again, and widened
    left-right towards the bottom by up to ``1 + widening`` times (shoulders). Below that slab only air
    is replaced: the input's own tissue is kept.
    """
    data = _data(img)
    zooms = _zooms(img.affine)
    s_axis, s_sign = _world_axis(img.affine, "S")
    r_axis, _ = _world_axis(img.affine, "R")
    moved = [s_axis] + [a for a in range(3) if a != s_axis]
    data = np.moveaxis(data, s_axis, 0)[::s_sign]  # index 0: the lowest slice
    head = np.moveaxis(_head(img), s_axis, 0)[::s_sign]
    step = float(zooms[s_axis])
    area = head.sum((1, 2))
    bottom = int(np.argmax(area > 0))
    window = area[bottom : bottom + int(60 / step)]
    start = bottom + int(np.argmax(window >= 0.8 * window.max()))
    thickness = max(2, int(round(slab_mm / step)))
    slab = data[start : start + thickness]
    n_new = int(round(length_mm / step))
    total = n_new + start  # synthetic slices: below the grid, then the input's slices under the slab
    depth = np.arange(total, 0, -1)  # distance below the slab, in slices
    period = 2 * thickness
    phase = (depth - 1) % period
    source = np.where(phase < thickness, phase, period - 1 - phase)  # a triangle wave: mirrored copies
    lr = moved.index(r_axis) - 1  # the left-right axis of a slice
    centre = (np.array(slab.shape[1:]) - 1) / 2
    synthetic = np.empty((total, *slab.shape[1:]), np.float32)
    for k in range(total):
        below_grid = max(0.0, (n_new - k) / n_new) if k < n_new else 0.0
        scale = np.ones(2)
        scale[lr] = 1 + widening * (3 * below_grid**2 - 2 * below_grid**3)
        matrix = np.diag(1 / scale)
        synthetic[k] = ndimage.affine_transform(
            slab[source[k]], matrix, offset=centre - matrix @ centre, order=1
        )
    out = np.concatenate([synthetic[:n_new], data], axis=0)
    under = out[n_new : n_new + start]
    air = ~head[:start]
    under[air] = synthetic[n_new:][air]
    out = np.moveaxis(out[::s_sign], 0, s_axis)
    affine = img.affine.copy()
    if s_sign > 0:  # new slices come first along the axis: move the origin
        affine[:3, 3] -= img.affine[:3, s_axis] * n_new
    shape = tuple(int(n) for n in out.shape)
    return Variant(_nifti(out, affine), Carry(shape, affine, np.eye(4)))


def cut_top(img: Image, depth_mm: float = 20.0) -> Variant:
    """Crop the field of view ``depth_mm`` below the top of the head (through the skull into the brain)."""
    axis, sign = _world_axis(img.affine, "S")
    other = tuple(a for a in range(3) if a != axis)
    present = np.nonzero(_head(img).any(other))[0]
    keep = int(round(depth_mm / _zooms(img.affine)[axis]))
    index = [slice(None)] * 3
    if sign > 0:
        index[axis] = slice(0, present.max() + 1 - keep)
    else:
        index[axis] = slice(present.min() + keep, None)
    cropped = img.slicer[tuple(index)]
    affine = cropped.affine.copy()
    shape = tuple(int(n) for n in cropped.shape[:3])
    return Variant(_nifti(_data(cropped), affine), Carry(shape, affine, np.eye(4)))


def _voxel_axis_sizes(img: Image, zooms: Sequence[float]) -> np.ndarray:
    """``zooms`` given along the world axes R, A, S, put in the order of the image's voxel axes."""
    new = np.empty(3)
    for world, size in enumerate(zooms):
        new[_world_axis(img.affine, "RAS"[world])[0]] = size
    return new


def resample_voxels(img: Image, zooms: Sequence[float]) -> Variant:
    """Resample to voxel sizes ``zooms`` (mm, along the world axes R, A, S) over the same field of view.

    The grid keeps the input's orientation. Before trilinear sampling the data are smoothed with a Gaussian
    whose FWHM makes up the difference to the new voxel size (an acquisition's slice profile, no aliasing).
    Where the new voxel centres fall between the old ones (1.3 mm from 1 mm), the trilinear sampling blurs
    further: such a copy holds less detail than a scan with its voxels (:func:`acquire_voxels` makes that);
    where they fall on old centres (1 × 1 × 3 mm from 1 mm) the Gaussian is a 2-D scan's slice profile.
    """
    old, new = _zooms(img.affine), _voxel_axis_sizes(img, zooms)
    shape = tuple(int(np.ceil(n * o / z - 1e-6)) for n, o, z in zip(img.shape[:3], old, new, strict=True))
    affine = img.affine.copy()
    affine[:3, :3] = img.affine[:3, :3] * (new / old)
    affine[:3, 3] = nb.affines.apply_affine(img.affine, (new / old - 1) / 2)
    sigma = np.sqrt(np.clip(new**2 - old**2, 0, None)) / 2.3548 / old
    smooth = ndimage.gaussian_filter(_data(img), sigma) if np.any(sigma > 0) else _data(img)
    carry = Carry(shape, affine, np.eye(4))
    return Variant(_nifti(carry(_nifti(smooth, img.affine), order=1), affine), carry)


def acquire_voxels(img: Image, zooms: Sequence[float]) -> Variant:
    """The image a coarser 3-D acquisition of the same field of view gives: k-space cut to the new matrix.

    An MR image is the inverse Fourier transform of the k-space it sampled; a scan with coarser voxels
    samples a smaller central part of the same k-space. Along each voxel axis the ``n`` samples become
    ``m = round(n * old / new)``, so the voxel side is ``n * old / m`` (the field of view is kept exactly;
    ``zooms`` along the world axes R, A, S, as :func:`resample_voxels`), the spatial frequencies the new
    matrix can hold are kept unchanged and the others dropped (no extra blur, unlike a smoothed and
    interpolated copy), and the magnitude is stored, as scanners do. Voxel 0 stays where it was. Only
    coarser or equal voxels: :func:`resample_voxels` makes finer grids.
    """
    old, new = _zooms(img.affine), _voxel_axis_sizes(img, zooms)
    shape = tuple(max(1, int(round(n * o / z))) for n, o, z in zip(img.shape[:3], old, new, strict=True))
    if any(m > n for m, n in zip(shape, img.shape[:3], strict=True)):
        raise ValueError(
            f"acquire_voxels: voxels {tuple(new)} are finer than {tuple(old)}; use resample_voxels"
        )
    spectrum = _data(img).astype(np.complex64)
    for axis, (n, m) in enumerate(zip(img.shape[:3], shape, strict=True)):
        if m == n:
            continue
        spectrum = fft.fftshift(fft.fft(spectrum, axis=axis), axes=axis)
        cut = [slice(None)] * 3
        cut[axis] = slice(n // 2 - m // 2, n // 2 - m // 2 + m)
        spectrum = fft.ifft(fft.ifftshift(spectrum[tuple(cut)], axes=axis), axis=axis) * np.float32(m / n)
    affine = img.affine.copy()
    affine[:3, :3] = img.affine[:3, :3] * (np.array(img.shape[:3]) / np.array(shape))
    return Variant(_nifti(np.abs(spectrum), affine), Carry(shape, affine, np.eye(4)))


# -- what is in the image -------------------------------------------------------------------------------
def deface(img: Image, brain_mask: Image, margin_mm: float = 4.0) -> Variant:
    """Zero the face as defacing tools do: every voxel farther than ``margin_mm`` from the brain that lies in
    front of the brain's front 35 %, below the top of its lower 60 % and above 40 mm under it (eyes, nose,
    mouth, jaw, and the forehead's skin and bone down to the brows).
    """
    brain = _mask_on(img, brain_mask)
    data = _data(img)
    far = ndimage.distance_transform_edt(~brain, sampling=_zooms(img.affine)) > margin_mm
    y = _world_coordinate(img.affine, img.shape, 1)
    z = _world_coordinate(img.affine, img.shape, 2)
    y_brain = np.broadcast_to(y, brain.shape)[brain]
    z_brain = np.broadcast_to(z, brain.shape)[brain]
    front = y > y_brain.min() + 0.65 * np.ptp(y_brain)
    below = (z < z_brain.min() + 0.6 * np.ptp(z_brain)) & (z > z_brain.min() - 40.0)
    data[far & front & below] = 0
    return Variant(_nifti(data, img.affine), identity(img))


def skull_strip(img: Image, brain_mask: Image) -> Variant:
    """Keep only the brain (``brain_mask > 0``; the rest is 0), as skull-stripped datasets are shared."""
    data = _data(img) * _mask_on(img, brain_mask)
    return Variant(_nifti(data, img.affine), identity(img))


# -- intensities ----------------------------------------------------------------------------------------
def rescale_intensity(img: Image, high: float, dtype: type) -> Variant:
    """Map ``[0, max]`` linearly onto ``[0, high]`` and store as ``dtype`` (rounded for integers)."""
    data = _data(img)
    data = np.clip(data, 0, None) * (high / data.max())
    if np.issubdtype(dtype, np.integer):
        data = np.rint(data)
    return Variant(_nifti(data, img.affine, dtype), identity(img))


def zscore(img: Image, mask: Image | None = None) -> Variant:
    """``(x - mean) / sd`` everywhere, with the mean and sd of ``mask`` (default: the head mask).

    The background becomes negative, as in datasets normalized for machine learning.
    """
    data = _data(img)
    inside = _head(img) if mask is None else _mask_on(img, mask)
    values = data[inside]
    return Variant(_nifti((data - values.mean()) / values.std(), img.affine), identity(img))


def smooth_bias(img: Image, amplitude: float, seed: int = 0) -> Variant:
    """Multiply by a smooth field spanning exactly ``[1 - amplitude, 1 + amplitude]`` over the head.

    The field is ``1 + amplitude * u``, ``u`` a random quadratic polynomial of position (the log of
    :func:`smriflow.data.synth.bias_field`) rescaled to [-1, 1] over the head mask.
    """
    if not 0 < amplitude < 1:
        raise ValueError(f"smooth_bias: 'amplitude' must be within (0, 1). {amplitude!r} was provided.")
    head = _head(img)
    step = max(1, int(round(4 / _zooms(img.affine).min())))  # the polynomial is evaluated every ~4 mm
    coarse = tuple(slice(0, n, step) for n in img.shape[:3])
    grid = np.indices(head[coarse].shape).reshape(3, -1).T * step
    points = nb.affines.apply_affine(img.affine, grid)
    inside = head[coarse].ravel()
    rng = np.random.default_rng(seed)
    u = np.log(bias_field(rng, points, 1.0, points[inside].mean(0), inside))
    u = 2 * (u - u[inside].min()) / np.ptp(u[inside]) - 1
    small = u.reshape(head[coarse].shape).astype(np.float32)
    zoom = [n / m for n, m in zip(img.shape[:3], small.shape, strict=True)]
    field = 1 + amplitude * np.clip(ndimage.zoom(small, zoom, order=1, grid_mode=True, mode="nearest"), -1, 1)
    return Variant(_nifti(_data(img) * field, img.affine), identity(img))


def contrast_gamma(img: Image, gamma: float) -> Variant:
    """Map intensities monotonically by ``max * (x / max) ** gamma`` (x ≥ 0): another GM/WM/CSF contrast.

    ``gamma < 1`` brings grey and white matter closer (lower T1 contrast, as at some field strengths and
    sequences), ``gamma > 1`` pulls them apart; the order of the tissues and every edge's position stay.
    """
    if not gamma > 0:
        raise ValueError(f"contrast_gamma: 'gamma' must be positive. {gamma!r} was provided.")
    data = np.maximum(_data(img), 0)
    top = float(data.max()) or 1.0
    return Variant(_nifti(top * (data / top) ** gamma, img.affine), identity(img))


def rician_noise(img: Image, fraction: float, level: float, seed: int = 0) -> Variant:
    """Add Rician noise of σ = ``fraction × level`` (``level``: e.g. the white matter's intensity)."""
    rng = np.random.default_rng(seed)
    noisy = add_rician_noise(_data(img), fraction * level, rng)
    return Variant(_nifti(noisy, img.affine), identity(img))


# -- the bench's set ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Context:
    """What some variants need besides the image: a brain mask and the white matter's intensity."""

    brain_mask: Image
    wm_level: float
    seed: int = 0


def _voxels(
    factors: Sequence[float], make_grid: Callable[[Image, Sequence[float]], Variant] | None = None
) -> Callable[[Image, Context], Variant]:
    def make(img: Image, ctx: Context) -> Variant:
        return (make_grid or resample_voxels)(img, np.asarray(factors) * _zooms(img.affine).min())

    return make


#: The bench's variants: label (BIDS-safe) -> (what it is, how it is made from the image and context).
#: Voxel sizes are relative to the input's (1 mm for the real T1w; a downsampled copy scales them).
VARIANTS: dict[str, tuple[str, Callable[[Image, Context], Variant]]] = {
    "orig": ("unperturbed", lambda img, ctx: unchanged(img)),
    "noface": ("defaced (face zeroed)", lambda img, ctx: deface(img, ctx.brain_mask)),
    "neck": ("long FOV: +120 mm of neck and shoulders", lambda img, ctx: add_neck(img)),
    "tilt": ("head rotated 20° (data, not affine)", lambda img, ctx: rotate_head(img, 20.0)),
    "shift": ("head 57 mm from the volume centre", lambda img, ctx: move_head(img)),
    "int16": ("int16 0-4095", lambda img, ctx: rescale_intensity(img, 4095, np.int16)),
    "float01": ("float 0-1", lambda img, ctx: rescale_intensity(img, 1.0, np.float32)),
    "bias20": ("±20 % smooth bias", lambda img, ctx: smooth_bias(img, 0.2, ctx.seed)),
    "bias50": ("±50 % smooth bias", lambda img, ctx: smooth_bias(img, 0.5, ctx.seed)),
    "noise3": ("Rician noise 3 % of WM", lambda img, ctx: rician_noise(img, 0.03, ctx.wm_level, ctx.seed)),
    "noise6": ("Rician noise 6 % of WM", lambda img, ctx: rician_noise(img, 0.06, ctx.wm_level, ctx.seed)),
    "aniso": ("1 × 1 × 3 mm voxels (2-D slices)", _voxels((1.0, 1.0, 3.0))),
    "iso13": ("1.3 mm isotropic voxels (3-D, k-space)", _voxels((1.3, 1.3, 1.3), acquire_voxels)),
    "iso13interp": ("1.3 mm grid interpolated from 1 mm (smoothed, trilinear)", _voxels((1.3, 1.3, 1.3))),
    "fine06": ("0.6 mm isotropic voxels (upsampled: a fine scan's size)", _voxels((0.6, 0.6, 0.6))),
    "topcut": ("top of the head cut (25 mm)", lambda img, ctx: cut_top(img, 25.0)),
    "skullstripped": (
        "skull removed (brain mask applied)",
        lambda img, ctx: skull_strip(img, ctx.brain_mask),
    ),
    "zscore": ("z-scored intensities (negative background)", lambda img, ctx: zscore(img)),
}


def make_variant(name: str, img: Image, ctx: Context) -> Variant:
    """Variant ``name`` of :data:`VARIANTS` made from ``img``."""
    if name not in VARIANTS:
        raise ValueError(f"unknown variant {name!r}; choose from {', '.join(VARIANTS)}")
    return VARIANTS[name][1](img, ctx)
