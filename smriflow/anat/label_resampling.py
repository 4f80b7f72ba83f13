"""Resample several template-space label images onto one native grid through one pass of the transforms.

Warping an atlas with ANTs' ``genericLabel`` interpolator applies the template → T1w transform (an affine
and a displacement field) to every voxel of the T1w grid, once per atlas: 4.6-7.1 s of CPU an atlas at
1 mm, five atlases per subject in ``anat_preproc``. The transform is the same for all of them, so here it is
applied once:

1. :func:`template_coordinates` warps three *coordinate images* — template-space images whose voxels hold
   their own physical x, y or z (ITK's LPS frame) — onto the T1w grid with linear interpolation. A linear
   function is interpolated exactly, so every T1w voxel receives the template coordinates it maps to, to
   float32 precision; voxels that map outside the images get NaN.
2. :func:`resample_labels` then reads each atlas at those coordinates as ``genericLabel`` does (ITK's
   ``LabelImageGenericInterpolateImageFunction``): each label's indicator is interpolated linearly from the
   8 atlas voxels around the point and the label of largest interpolated indicator wins (exact ties: the
   smallest label, as in ITK; a point exactly half-way between two voxels is a tie that ITK's own rounding
   of the point may break either way). Points whose 8 neighbours carry one label take it without a vote,
   which is most of them.

On the shared T1w the labels equal ANTs' for the Desikan-Killiany, Destrieux and Harvard-Oxford atlases
and differ in 2 of 1.0 M labelled voxels for AAL (points within float rounding of a voxel boundary).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import nibabel as nb
import numpy as np

from smriflow.utils.antsenv import import_ants
from smriflow.utils.antsio import index_to_lps
from smriflow.utils.niftiio import image_like

__all__ = [
    "check_coordinates",
    "check_covered",
    "coordinates_extent",
    "label_dtype",
    "load_coordinates",
    "resample_labels",
    "save_coordinates",
    "template_coordinates",
    "write_labels",
]

_OUTSIDE = -1.0e9  # ANTs' default value for points outside the coordinate images (then NaN)
_SLAB = 16  # output slices per pass of the vote (~50 MB of float64 coordinates at 256²)
_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])
_MAX_VOXELS = 256**3  # reference voxels per ANTs call of template_coordinates (a 1 mm head in one call)
#: voxel step of template_coordinates' first look for the points that map inside (None: the whole grid)
_COARSE: int | None = 4


def _grid_corners(path: str | Path) -> np.ndarray:
    """The LPS corners of an image's grid, one voxel beyond it on every side (8 × 3; the header only)."""
    image = nb.load(str(path))
    grid = np.array(np.meshgrid(*[[-1.0, float(n)] for n in image.shape[:3]], indexing="ij")).reshape(3, -1)
    return (_RAS_TO_LPS @ image.affine @ np.vstack([grid, np.ones(grid.shape[1])]))[:3].T


def coordinates_extent(
    extent_images: Sequence[str | Path], *, spacing: float = 2.0
) -> tuple[np.ndarray, np.ndarray]:
    """The template box (LPS mm: low and high corners) that the coordinates of these images cover.

    The images' grids, one voxel beyond them, with a margin of two ``spacing``; the corners lie on the
    ``spacing`` grid of the coordinate images (:func:`template_coordinates`).
    """
    if not extent_images:
        raise ValueError("'extent_images' must name at least one template-space image. [] was provided.")
    corners = np.concatenate([_grid_corners(path) for path in extent_images])
    low = np.floor(corners.min(axis=0)) - 2 * spacing
    shape = np.ceil((corners.max(axis=0) + 2 * spacing - low) / spacing).astype(int) + 1
    return low, low + spacing * (shape - 1)


def check_covered(low: np.ndarray, high: np.ndarray, image: str | Path, what: str) -> None:
    """Raise when the grid of ``image`` (a template-space atlas) reaches outside the box ``low``-``high``.

    Coordinates (:func:`template_coordinates`) are NaN outside their box, so an atlas that reaches beyond it
    would silently lose the labels there.

    Raises
    ------
    ValueError
        One line naming ``what``.
    """
    corners = _grid_corners(image)
    if np.any(corners < np.asarray(low) - 1e-3) or np.any(corners > np.asarray(high) + 1e-3):
        raise ValueError(
            f"{what}: its template grid reaches outside the box the coordinates cover "
            f"({np.round(low, 1).tolist()} to {np.round(high, 1).tolist()} mm); compute the coordinates "
            "with this atlas among theirs (AtlasCoordinates 'atlases' or 'also_cover')"
        )


def save_coordinates(coords: np.ndarray, low: np.ndarray, high: np.ndarray, out_file: str | Path) -> Path:
    """Write coordinates with the box they cover (an uncompressed ``.npz``: coords, low, high, shape)."""
    out = Path(out_file)
    with open(out, "wb") as stream:
        box = {"low": np.asarray(low, float), "high": np.asarray(high, float)}
        np.savez(stream, coords=coords, shape=np.array(coords.shape[:3]), **box)
    return out


def load_coordinates(
    path: str | Path, *, box_only: bool = False
) -> tuple[np.ndarray | tuple[int, ...], np.ndarray, np.ndarray]:
    """Read a file of :func:`save_coordinates`: (coords, low, high).

    With ``box_only`` the coordinates are not read: the first item is their grid's shape.

    Raises
    ------
    ValueError
        One line naming the file when it is not such a file.
    """
    try:
        with np.load(str(path), allow_pickle=False) as data:
            first = tuple(int(n) for n in data["shape"]) if box_only else data["coords"]
            return first, data["low"], data["high"]
    except (OSError, ValueError, KeyError) as exc:
        raise ValueError(f"{path}: not a coordinates file of AtlasCoordinates ({exc})") from None


def check_coordinates(path: str | Path, reference: str | Path, atlases: dict[str, str | Path]) -> None:
    """Check that a file of :func:`save_coordinates` is of ``reference``'s grid and covers the atlases.

    Parameters
    ----------
    atlases : dict
        Atlas name -> its template-space image.

    Raises
    ------
    ValueError
        One line naming the file, or the first atlas that reaches outside the coordinates' box.
    """
    grid, low, high = load_coordinates(path, box_only=True)
    shape = tuple(nb.load(str(reference)).shape[:3])
    if grid != shape:
        raise ValueError(f"{path}: coordinates of a {grid} grid, not of the reference's {shape}")
    for name, image in atlases.items():
        check_covered(low, high, image, f"atlas {name!r}")


def template_coordinates(
    reference: str | Path,
    transforms: Sequence[str | Path],
    extent_images: Sequence[str | Path],
    *,
    spacing: float = 2.0,
    num_threads: int = 1,
) -> np.ndarray:
    """Template (physical, LPS) coordinates of every voxel centre of ``reference``.

    Only a box of the reference grid is warped: around the points of a grid four times coarser that map
    into the coordinate images, grown until no inner face of the box has a point that maps inside
    (:func:`_grow_box` says why the points outside it are then NaN). On sub-0002's 1 mm head the box holds
    7.6 of the grid's 16.8 M voxels (3.8 M map inside): 6.8 → 4.1 s of CPU, the same values to the bit.

    Parameters
    ----------
    reference : str or pathlib.Path
        The native image that defines the output grid.
    transforms : sequence of str or pathlib.Path
        Template → native ANTs transforms, in ``antsApplyTransforms -t`` order.
    extent_images : sequence of str or pathlib.Path
        Template-space images (the atlases) whose extent the coordinate images cover, with a margin of two
        ``spacing``: points that map outside it get NaN (they are outside every atlas).
    spacing : float
        Voxel size (mm) of the coordinate images. A linear function is interpolated exactly at any spacing,
        so it only sets their size.
    num_threads : int
        ITK threads.

    Returns
    -------
    numpy.ndarray
        float32 array of the reference's shape plus a last axis of 3 (x, y, z in mm).
    """
    transforms = [str(t) for t in transforms]
    if not transforms:
        raise ValueError("'transforms' must list at least one transform file. [] was provided.")
    low, high = coordinates_extent(extent_images, spacing=spacing)
    shape = np.rint((high - low) / spacing).astype(int) + 1
    ants = import_ants(num_threads)
    # only the reference's grid matters, taken as ITK reads it (image_header_info rounds the origin and
    # cleans the direction, which moves a few points across a voxel boundary)
    image = ants.image_read(str(reference))
    grid = _Grid(
        tuple(int(n) for n in image.shape[:3]),
        index_to_lps(image),
        np.asarray(image.direction, dtype=float),
        tuple(float(s) for s in image.spacing),
    )
    del image
    moving = []
    for axis in range(3):
        values = (low[axis] + spacing * np.arange(shape[axis])).astype(np.float32)
        ramp = np.broadcast_to(values.reshape([-1 if k == axis else 1 for k in range(3)]), tuple(shape))
        moving.append(
            ants.from_numpy(
                np.ascontiguousarray(ramp), origin=tuple(float(v) for v in low), spacing=(float(spacing),) * 3
            )
        )
    coords = np.full(grid.dims + (3,), np.nan, dtype=np.float32)
    lo, hi = _first_box(ants, grid, moving[0], transforms)
    while True:
        _warp_box(ants, grid, moving, transforms, lo, hi, coords)
        grown = _grow_box(coords, lo, hi)
        if grown is None:
            return coords
        lo, hi = grown


@dataclass(frozen=True)
class _Grid:
    """The reference grid as ITK reads it: shape, index → LPS matrix, direction and spacing."""

    dims: tuple[int, int, int]
    to_physical: np.ndarray
    direction: np.ndarray
    spacing: tuple[float, ...]

    def image(self, ants, lo: Sequence[int], shape: Sequence[int], step: int = 1):
        """An empty image of ``shape`` voxels, every ``step``-th voxel of the grid from index ``lo``."""
        return ants.make_image(
            tuple(int(n) for n in shape),
            pixeltype="float",
            spacing=tuple(s * step for s in self.spacing),
            origin=tuple(self.to_physical[:3] @ [*(float(i) for i in lo), 1.0]),
            direction=self.direction,
        )


def _mapped(ants, fixed, moving, transforms: list[str]) -> np.ndarray:
    """One coordinate image warped onto ``fixed``; NaN where the point maps outside it."""
    out = ants.apply_transforms(
        fixed=fixed, moving=moving, transformlist=transforms, interpolator="linear", defaultvalue=_OUTSIDE
    ).numpy()
    out[out < _OUTSIDE / 2] = np.nan
    return out


def _first_box(ants, grid: _Grid, moving, transforms: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The reference voxels worth warping: around the points of a coarse grid that map into the template.

    Every ``_COARSE``-th voxel is warped; the box of those that map inside the coordinate images, one coarse
    step wider on every side. Where no coarse point maps inside, the whole grid.
    """
    dims = np.array(grid.dims)
    step = _COARSE
    if step is None or np.any(dims <= 2 * step):
        return np.zeros(3, int), dims
    coarse = (dims - 1) // step + 1
    sample = _mapped(ants, grid.image(ants, (0, 0, 0), coarse, step), moving, transforms)
    inside = np.argwhere(np.isfinite(sample))
    if len(inside) == 0:
        return np.zeros(3, int), dims
    lo = np.maximum(inside.min(axis=0) * step - step, 0)
    return lo, np.minimum(inside.max(axis=0) * step + step + 1, dims)


def _warp_box(ants, grid: _Grid, moving, transforms: list[str], lo, hi, coords: np.ndarray) -> None:
    """Fill ``coords`` in the box ``lo``-``hi``.

    In slabs of at most ``_MAX_VOXELS`` voxels, so that a fine grid does not hold five full-size copies.
    """
    size = np.asarray(hi) - np.asarray(lo)
    step = max(1, _MAX_VOXELS // int(size[0] * size[1]))
    for start in range(int(lo[2]), int(hi[2]), step):
        stop = min(start + step, int(hi[2]))
        fixed = grid.image(ants, (lo[0], lo[1], start), (size[0], size[1], stop - start))
        for axis in range(3):
            warped = _mapped(ants, fixed, moving[axis], transforms)
            coords[lo[0] : hi[0], lo[1] : hi[1], start:stop, axis] = warped


def _grow_box(coords: np.ndarray, lo, hi) -> tuple[np.ndarray, np.ndarray] | None:
    """None when no inner face of the box has a point that maps into the template; else a bigger box.

    The points that map into the coordinate images (a box of the template) form one connected region of the
    reference grid, as the transform is continuous and one-to-one (an affine and a diffeomorphic field). A
    region that touches no face of the box from inside lies inside it: the points outside the box are NaN,
    as warping the whole grid would make them. A face that has such a point moves out by ``_COARSE`` voxels
    (the whole grid without a coarse step), and the box is warped again.
    """
    lo, hi = np.array(lo), np.array(hi)
    dims = np.array(coords.shape[:3])
    grow = dims if _COARSE is None else _COARSE
    new_lo, new_hi = lo.copy(), hi.copy()
    box = coords[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2], 0]
    for axis in range(3):
        if lo[axis] > 0 and np.isfinite(np.take(box, 0, axis=axis)).any():
            new_lo[axis] = max(lo[axis] - grow, 0)
        if hi[axis] < dims[axis] and np.isfinite(np.take(box, -1, axis=axis)).any():
            new_hi[axis] = min(hi[axis] + grow, dims[axis])
    if np.array_equal(new_lo, lo) and np.array_equal(new_hi, hi):
        return None
    return new_lo, new_hi


def resample_labels(
    atlas: str | Path, coords: np.ndarray, *, interpolation: str = "genericLabel"
) -> np.ndarray:
    """An atlas's labels at template coordinates (:func:`template_coordinates`), as ANTs resamples labels.

    Parameters
    ----------
    atlas : str or pathlib.Path
        A 3-D integer label image in template space.
    coords : numpy.ndarray
        ``(..., 3)`` template coordinates (LPS, mm); NaN for points outside the template.
    interpolation : {'genericLabel', 'nearestNeighbor'}
        ``genericLabel``: the label of largest linearly interpolated indicator over the 8 neighbours (exact
        ties: the smallest label, as ITK's loop over its sorted labels keeps the first maximum);
        ``nearestNeighbor``: the nearest voxel's label (a half rounds up, as in ITK).

    Returns
    -------
    numpy.ndarray
        int32 labels of ``coords.shape[:-1]`` (0 outside the atlas).
    """
    if interpolation not in ("genericLabel", "nearestNeighbor"):
        raise ValueError(
            f"'interpolation' must be 'genericLabel' or 'nearestNeighbor'. {interpolation!r} was provided."
        )
    ants = import_ants(1)
    image = ants.image_read(str(atlas))
    if image.dimension != 3:
        raise ValueError(f"'atlas' must be a 3-D label image. {atlas} has {image.dimension} dimensions.")
    labels = np.rint(image.numpy()).astype(np.int32)
    to_index = np.linalg.inv(index_to_lps(image))
    size = np.array(labels.shape)
    # padded by one voxel of 0 on every side: a neighbour outside the atlas is background, as in ITK
    padded = np.zeros(tuple(size + 2), dtype=np.int32)
    padded[1:-1, 1:-1, 1:-1] = labels
    corner = padded[:-1, :-1, :-1]  # the label at the low corner of every 2 × 2 × 2 block
    uniform = np.ones(corner.shape, dtype=bool)
    for dx, dy, dz in np.ndindex(2, 2, 2):
        uniform &= (
            padded[dx : dx + corner.shape[0], dy : dy + corner.shape[1], dz : dz + corner.shape[2]] == corner
        )
    out = np.zeros(coords.shape[:-1], dtype=np.int32)
    for start in range(0, coords.shape[2], _SLAB):
        slab = coords[:, :, start : start + _SLAB].reshape(-1, 3)
        # points outside the template (NaN; most of a head's grid) are background: only the others are read
        mapped = np.flatnonzero(np.isfinite(slab).all(axis=1))
        index = slab[mapped].astype(np.float64) @ to_index[:3, :3].T + to_index[:3, 3]
        result = np.zeros(len(mapped), dtype=np.int32)
        if interpolation == "nearestNeighbor":
            near = np.floor(index + 0.5).astype(np.int64)  # ITK: a half rounds up
            inside = np.all((near >= 0) & (near < size), axis=1)
            result[inside] = labels[tuple(near[inside].T)]
        else:
            floor = np.floor(index)
            block = floor.astype(np.int64) + 1  # the block's low corner, in the padded frame
            inside = np.all((block >= 0) & (block < size + 1), axis=1)
            rows = np.nonzero(inside)[0]
            b = block[rows]
            same = uniform[b[:, 0], b[:, 1], b[:, 2]]
            result[rows[same]] = corner[b[same, 0], b[same, 1], b[same, 2]]
            mixed = rows[~same]
            if len(mixed):
                result[mixed] = _vote(padded, block[mixed], index[mixed] - floor[mixed])
        flat = np.zeros(len(slab), dtype=np.int32)
        flat[mapped] = result
        out[:, :, start : start + _SLAB] = flat.reshape(coords.shape[0], coords.shape[1], -1)
    return out


def _vote(padded: np.ndarray, block: np.ndarray, fraction: np.ndarray) -> np.ndarray:
    """The label of largest trilinear weight summed over the 8 corners of each block (ties: the smallest)."""
    candidates = np.empty((8, len(block)), dtype=np.int32)
    weights = np.empty((8, len(block)))
    for k, (dx, dy, dz) in enumerate(np.ndindex(2, 2, 2)):
        candidates[k] = padded[block[:, 0] + dx, block[:, 1] + dy, block[:, 2] + dz]
        weights[k] = (
            (fraction[:, 0] if dx else 1 - fraction[:, 0])
            * (fraction[:, 1] if dy else 1 - fraction[:, 1])
            * (fraction[:, 2] if dz else 1 - fraction[:, 2])
        )
    score = np.zeros_like(weights)
    for k in range(8):
        score[k] = (weights * (candidates == candidates[k])).sum(axis=0)
    best = score.max(axis=0)
    return np.where(score >= best - 1e-12, candidates, np.iinfo(np.int32).max).min(axis=0)


def label_dtype(data: np.ndarray) -> type:
    """The smallest integer type that holds every label of ``data``."""
    low, high = (int(data.min()), int(data.max())) if data.size else (0, 0)
    for dtype in (np.uint8, np.uint16, np.int16, np.int32):
        info = np.iinfo(dtype)
        if info.min <= low and high <= info.max:
            return dtype
    return np.int64


def write_labels(labels: np.ndarray, reference: str | Path, out_file: str | Path) -> Path:
    """Write labels on the grid and with the header of ``reference``, in the smallest integer type."""
    ref_img = nb.load(str(reference))
    if labels.shape != ref_img.shape[:3]:
        raise ValueError(f"labels {labels.shape} are not on the grid of {reference} {ref_img.shape[:3]}.")
    image_like(labels, ref_img, label_dtype(labels), copy_header=True).to_filename(str(out_file))
    return Path(out_file)
