"""One pass of the transform for several atlases (:mod:`smriflow.anat.label_resampling`) against ANTs."""

from __future__ import annotations

import nibabel as nb
import numpy as np
import pytest

from smriflow.anat.label_resampling import (
    check_coordinates,
    check_covered,
    coordinates_extent,
    label_dtype,
    load_coordinates,
    resample_labels,
    save_coordinates,
    template_coordinates,
    write_labels,
)
from smriflow.anat.spatial_normalization import apply_transforms

pytestmark = pytest.mark.ants


@pytest.fixture
def scene(tmp_path):
    """Template-space labels (5 blobs, 2 mm), a rotated 1.5 mm native grid and the transform between them."""
    ants = pytest.importorskip("ants")
    rng = np.random.default_rng(0)
    shape = (40, 44, 36)
    labels = np.zeros(shape, np.int16)
    grid = np.indices(shape).transpose(1, 2, 3, 0)
    for value in (3, 7, 11, 250, 1001):
        centre = rng.uniform(8, np.array(shape) - 8)
        labels[np.linalg.norm(grid - centre, axis=-1) < rng.uniform(5, 10)] = value
    atlas = tmp_path / "atlas.nii.gz"
    nb.Nifti1Image(
        labels,
        np.diag([2.0, 2.0, 2.0, 1.0]) + np.array([[0, 0, 0, -40.0], [0, 0, 0, -44], [0, 0, 0, -30], [0] * 4]),
    ).to_filename(atlas)
    native = tmp_path / "native.nii.gz"
    affine = np.array([[-1.5, 0, 0, 30.0], [0, 0, 1.5, -40.0], [0, -1.5, 0, 35.0], [0, 0, 0, 1]])
    nb.Nifti1Image(np.zeros((44, 40, 60), np.float32), affine).to_filename(native)
    transform = ants.create_ants_transform(transform_type="AffineTransform", dimension=3)
    angle = np.deg2rad(12.0)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    transform.set_parameters(np.concatenate([(rotation * [1.0, 1.1, 0.95]).ravel(), [2.3, -1.7, 0.9]]))
    xfm = tmp_path / "template_to_native.mat"
    ants.write_transform(transform, str(xfm))
    return atlas, native, xfm


@pytest.mark.parametrize("interpolation", ["genericLabel", "nearestNeighbor"])
def test_labels_equal_ants_through_one_pass_of_the_transform(scene, tmp_path, interpolation):
    atlas, native, xfm = scene
    coords = template_coordinates(native, [xfm], [atlas])
    assert coords.shape == nb.load(native).shape + (3,) and coords.dtype == np.float32
    mine = resample_labels(atlas, coords, interpolation=interpolation)
    theirs = np.asarray(
        nb.load(
            apply_transforms(atlas, native, [xfm], tmp_path / "ants.nii.gz", interpolation=interpolation)
        ).dataobj
    )
    assert set(np.unique(theirs)) == {0, 3, 7, 11, 250, 1001}
    assert np.array_equal(mine, theirs)


def test_points_outside_the_template_are_background(scene):
    atlas, native, xfm = scene
    coords = template_coordinates(native, [xfm], [atlas])
    assert np.isnan(coords).any() and not np.isnan(coords).all()  # the native grid reaches beyond the atlas
    coords[:5] = np.nan
    assert not resample_labels(atlas, coords)[:5].any()


def test_write_labels_takes_the_smallest_type_and_the_reference_header(scene, tmp_path):
    _, native, _ = scene
    labels = np.zeros(nb.load(native).shape, np.int32)
    labels[0, 0, 0] = 300
    out = nb.load(write_labels(labels, native, tmp_path / "labels.nii.gz"))
    assert out.get_data_dtype() == np.uint16 == label_dtype(labels)
    assert np.allclose(out.affine, nb.load(native).affine)
    with pytest.raises(ValueError, match=r"^labels \(2, 2, 2\) are not on the grid of "):
        write_labels(np.zeros((2, 2, 2), np.int32), native, tmp_path / "bad.nii.gz")


def test_errors(scene, tmp_path):
    atlas, native, xfm = scene
    with pytest.raises(
        ValueError, match=r"^'extent_images' must name at least one template-space image\. \[\]"
    ):
        template_coordinates(native, [xfm], [])
    with pytest.raises(ValueError, match=r"^'transforms' must list at least one transform file\. \[\]"):
        template_coordinates(native, [], [atlas])
    coords = np.zeros((2, 2, 2, 3), np.float32)
    with pytest.raises(
        ValueError, match=r"^'interpolation' must be 'genericLabel' or 'nearestNeighbor'\. 'linear'"
    ):
        resample_labels(atlas, coords, interpolation="linear")
    four_d = tmp_path / "4d.nii.gz"
    nb.Nifti1Image(np.zeros((4, 4, 4, 2), np.int16), np.eye(4)).to_filename(four_d)
    with pytest.raises(
        ValueError, match=r"^'atlas' must be a 3-D label image\. .*4d\.nii\.gz has 4 dimensions\.$"
    ):
        resample_labels(four_d, coords)


def test_a_fine_grid_is_warped_in_slabs_with_the_same_coordinates(scene, monkeypatch):
    from smriflow.anat import label_resampling

    atlas, native, xfm = scene
    whole = template_coordinates(native, [xfm], [atlas])
    monkeypatch.setattr(label_resampling, "_MAX_VOXELS", 44 * 40 * 7)  # slabs of 7 slices: 9 of them
    slabs = template_coordinates(native, [xfm], [atlas])
    assert np.array_equal(np.isnan(whole), np.isnan(slabs))
    np.testing.assert_allclose(slabs, whole, atol=1e-4, equal_nan=True)


@pytest.mark.parametrize("first", ["coarse look", "a corner"])
def test_only_a_box_of_the_grid_is_warped_with_the_coordinates_of_the_whole_grid(scene, monkeypatch, first):
    from smriflow.anat import label_resampling

    atlas, native, xfm = scene
    wide = native.with_name("wide.nii.gz")  # a field of view that reaches far beyond the template
    affine = nb.load(native).affine.copy()
    affine[:3, 3] -= affine[:3, :3] @ [20.0, 20.0, 20.0]
    nb.Nifti1Image(np.zeros((84, 80, 100), np.float32), affine).to_filename(wide)
    native = wide
    monkeypatch.setattr(label_resampling, "_COARSE", None)
    whole = template_coordinates(native, [xfm], [atlas])
    assert np.isfinite(whole).any() and np.isnan(whole).mean() > 0.5
    monkeypatch.setattr(label_resampling, "_COARSE", 4)
    boxes = []
    warp_box = label_resampling._warp_box

    def spy(ants, grid, moving, transforms, lo, hi, coords):
        boxes.append(tuple(int(n) for n in np.asarray(hi) - np.asarray(lo)))
        warp_box(ants, grid, moving, transforms, lo, hi, coords)

    monkeypatch.setattr(label_resampling, "_warp_box", spy)
    if first == "a corner":  # a first look that found one point of the region: the faces make the box grow
        point = np.argwhere(np.isfinite(whole[..., 0]))[0]
        monkeypatch.setattr(label_resampling, "_first_box", lambda *_: (point, point + 2))
    boxed = template_coordinates(native, [xfm], [atlas])
    assert np.array_equal(boxed, whole, equal_nan=True)
    assert np.prod(boxes[-1]) < whole[..., 0].size  # the last box left out part of the grid
    assert (len(boxes) > 2) == (first == "a corner")


@pytest.mark.parametrize("interpolation", ["genericLabel", "nearestNeighbor"])
def test_the_native_geometry_is_read_as_itk_reads_it(scene, tmp_path, interpolation):
    # an origin with more than 4 decimals and a direction a few millidegrees off the axes: a header summary
    # (ants.image_header_info rounds the origin) would move points across voxel boundaries
    ants = pytest.importorskip("ants")
    atlas, _, _ = scene
    angle = np.deg2rad(0.004)
    turn = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = turn @ np.array([[-1.0, 0, 0], [0, 0, 1.0], [0, -1.0, 0]])
    affine[:3, 3] = [30.12345678, -40.98765432, 35.5555555]
    native = tmp_path / "fine_origin.nii.gz"
    nb.Nifti1Image(np.zeros((60, 60, 60), np.float32), affine).to_filename(native)
    identity = tmp_path / "identity.mat"
    ants.write_transform(
        ants.create_ants_transform(transform_type="AffineTransform", dimension=3), str(identity)
    )
    mine = resample_labels(
        atlas, template_coordinates(native, [identity], [atlas]), interpolation=interpolation
    )
    theirs = apply_transforms(
        atlas, native, [identity], tmp_path / "ants.nii.gz", interpolation=interpolation
    )
    assert np.array_equal(mine, np.asarray(nb.load(theirs).dataobj))


def test_coordinates_keep_the_box_they_cover(scene, tmp_path):
    atlas, native, xfm = scene
    coords = template_coordinates(native, [xfm], [atlas])
    low, high = coordinates_extent([atlas])
    path = save_coordinates(coords, low, high, tmp_path / "coords.npz")
    read, read_low, read_high = load_coordinates(path)
    assert np.array_equal(read, coords, equal_nan=True)
    assert np.array_equal(read_low, low) and np.array_equal(read_high, high)
    assert load_coordinates(path, box_only=True)[0] == nb.load(native).shape
    check_coordinates(path, native, {"the atlas": atlas})  # covered: no error
    other = tmp_path / "other.nii.gz"
    nb.Nifti1Image(np.zeros((4, 4, 4), np.float32), np.eye(4)).to_filename(other)
    with pytest.raises(ValueError, match=r"coords\.npz: coordinates of a \(44, 40, 60\) grid, not of the"):
        check_coordinates(path, other, {})
    moved = tmp_path / "moved_atlas.nii.gz"
    img = nb.load(atlas)
    nb.Nifti1Image(np.asanyarray(img.dataobj), img.affine + _shift(30.0)).to_filename(moved)
    with pytest.raises(ValueError, match=r"^atlas 'moved': its template grid reaches outside the box"):
        check_covered(low, high, moved, "atlas 'moved'")
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match=r"bad\.npz: not a coordinates file of AtlasCoordinates"):
        load_coordinates(tmp_path / "bad.npz")


def _shift(mm: float) -> np.ndarray:
    out = np.zeros((4, 4))
    out[0, 3] = mm
    return out
