"""The GM/WM boundary on the T1w's intensity edge (:mod:`smriflow.anat.thickness.boundaries`): phantoms whose
true boundary sits at a known sub-voxel position, imaged with partial volume, and memberships that misplace
it (as a segmentation's priors and smoothing do)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from smriflow.anat.thickness import cortical_thickness
from smriflow.anat.thickness.boundaries import edge_refine, local_means, outward_normals, smooth_on_mesh

SS = 8  # supersampling of the partial-volume phantoms
LEVELS = {"wm": 1.0, "gm": 0.62, "csf": 0.2}  # T1w-like: WM > GM > CSF


def _reduce(mask: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    split = [v for n in shape for v in (n, SS)]
    return mask.astype(np.float32).reshape(split).mean(axis=tuple(range(1, 2 * len(shape), 2)))


def _shell(inner: float, outer: float, n: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """Partial-volume GM and WM fractions of a WM ball of radius ``inner`` in a GM shell up to ``outer``."""
    g = (np.arange(n * SS) + 0.5) / SS - n / 2
    x, y, z = np.meshgrid(g, g, g, indexing="ij", sparse=True)
    r = np.sqrt(x**2 + y**2 + z**2)
    return _reduce((r > inner) & (r <= outer), (n,) * 3), _reduce(r <= inner, (n,) * 3)


def _image(gm: np.ndarray, wm: np.ndarray) -> np.ndarray:
    """The partial-volume intensity of each voxel: its tissue fractions times the tissue levels."""
    return LEVELS["wm"] * wm + LEVELS["gm"] * gm + LEVELS["csf"] * (1 - gm - wm)


@pytest.mark.parametrize("true_x", [10.2, 10.5, 10.8])
def test_edge_refine_finds_a_subvoxel_plane(true_x):
    # WM for x < true_x (mm), GM up to true_x + 2.5 mm, then CSF (a stronger edge than GM/WM)
    n = 24
    xs = (np.arange(n * SS) + 0.5) / SS
    wm = _reduce(xs < true_x, (n,))
    gm = _reduce((xs >= true_x) & (xs < true_x + 2.5), (n,))
    image = ndimage.gaussian_filter(np.broadcast_to(_image(gm, wm)[:, None, None], (n, 8, 8)), 0.5)
    edge = true_x - 0.5  # voxel i spans [i, i + 1) mm: index frame = mm - 0.5
    starts = edge + np.array([-1.2, -0.5, 0.0, 0.5, 1.2])  # where memberships might put it
    points = np.stack([starts, np.full(5, 4.0), np.full(5, 3.5)], axis=1)
    normals = np.tile([1.0, 0.0, 0.0], (5, 1))
    bounds = (np.full(5, LEVELS["gm"]), np.full(5, LEVELS["wm"]))
    shift = edge_refine(points, normals, image, np.ones(3), search=1.5, bounds=bounds)
    assert np.allclose(points[:, 0] + shift, edge, atol=0.1)
    # without the intensity bounds, a sample on the GM side can take the GM/CSF edge
    free = edge_refine(points, normals, image, np.ones(3), search=1.5)
    assert np.max(np.abs(points[:, 0] + free - edge)) > 0.5
    # no edge within reach (uniform image): the samples stay
    assert np.all(edge_refine(points, normals, np.ones_like(image), np.ones(3)) == 0)


def test_outward_normals_point_out_of_the_tissue():
    _, wm = _shell(10.0, 13.0)
    points = np.array([[20.0 + 10.0, 20.0, 20.0], [20.0, 20.0 - 10.0, 20.0]]) - 0.5
    normals = outward_normals(wm, points, np.ones(3))
    assert np.allclose(normals, [[1, 0, 0], [0, -1, 0]], atol=0.05)


def test_local_means_follow_a_bias_field():
    gm, wm = _shell(10.0, 13.0)
    field = np.linspace(0.8, 1.2, gm.shape[0])[:, None, None]
    image = _image(gm, wm) * field
    mean_gm, mean_wm = local_means(image, [gm, wm], np.ones(3), fwhm=6.0)
    for x in (12, 28):  # a GM/WM boundary point on each side
        assert mean_wm[x, 20, 20] == pytest.approx(LEVELS["wm"] * field[x, 0, 0], rel=0.08)
        assert mean_gm[x, 20, 20] == pytest.approx(LEVELS["gm"] * field[x, 0, 0], rel=0.08)


def test_smooth_on_mesh_averages_neighbours_and_keeps_constants():
    faces = np.array([[0, 1, 2], [1, 2, 3]])
    assert np.allclose(smooth_on_mesh(np.full(4, 0.3), faces, 5), 0.3)
    smoothed = smooth_on_mesh(np.array([1.0, 0.0, 0.0, 0.0]), faces, 1)
    assert smoothed[0] == pytest.approx(1 / 3) and smoothed[3] == 0.0


@pytest.mark.parametrize("change", ["none", "noise", "bias", "contrast"])
def test_thickness_follows_the_intensity_edge_not_the_memberships(change):
    # truth: WM ball of radius 12 mm, GM shell 2.5 mm; the memberships put the GM/WM boundary 0.4 mm
    # inside the WM (as smriflow's segmentation does relative to FreeSurfer's white surface)
    truth = 2.5
    gm_true, wm_true = _shell(12.0, 12.0 + truth)
    gm, wm = _shell(11.6, 12.0 + truth)
    image = _image(gm_true, wm_true)
    rng = np.random.default_rng(0)
    if change == "noise":
        image = image + rng.normal(0, 0.03 * LEVELS["wm"], image.shape)
    elif change == "bias":
        image = image * np.linspace(0.8, 1.2, image.shape[0])[:, None, None]
    elif change == "contrast":
        image = image**0.7
    band = (wm < 0.5) & (gm + wm > 0.5)
    plain = cortical_thickness(gm, wm)
    assert np.median(plain[band]) > truth + 0.3  # the memberships alone: the misplaced boundary's error
    refined = cortical_thickness(gm, wm, t1w=image)
    assert np.all(refined[~band] == 0) and np.all(refined[band] > 0)
    assert abs(np.median(refined[band]) - truth) <= 0.1


def test_refine_options_are_checked():
    gm, wm = _shell(10.0, 12.5, n=32)
    with pytest.raises(ValueError, match="refine"):
        cortical_thickness(gm, wm, t1w=_image(gm, wm), refine=("middle",))
    with pytest.raises(ValueError, match="t1w"):
        cortical_thickness(gm, wm, t1w=np.zeros((4, 4, 4)))
