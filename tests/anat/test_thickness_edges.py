"""The GM/WM boundary on the T1w's intensity edge (:mod:`smriflow.anat.thickness.boundaries`): phantoms whose
true boundary sits at a known sub-voxel position, imaged with partial volume, and memberships that misplace
it (as a segmentation's priors and smoothing do)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import nibabel as nb
import numpy as np
import pytest
from conftest import require_shared
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


PHASES = np.arange(10.0, 11.0, 0.1)  # the true edge at every tenth of a voxel


def _plane(true_x: float, darker_wm: bool = False, n: int = 24) -> np.ndarray:
    """WM for x < ``true_x`` (mm), GM up to ``true_x + 2.5`` mm, then CSF (a stronger edge than GM/WM),
    imaged with partial volume and a little blur; with ``darker_wm``, the WM's intensity falls by 15 % over
    the last 4 mm before the edge, as superficial WM is darker than deep WM in a real T1w."""
    xs = (np.arange(n * SS) + 0.5) / SS
    wm_level = LEVELS["wm"] - 0.15 * darker_wm * np.clip(1.0 - (true_x - xs) / 4.0, 0.0, 1.0)
    fine = np.where(xs < true_x, wm_level, np.where(xs < true_x + 2.5, LEVELS["gm"], LEVELS["csf"]))
    profile = fine.reshape(n, SS).mean(axis=1)
    return ndimage.gaussian_filter(np.broadcast_to(profile[:, None, None], (n, 8, 8)), 0.5)


def _edges(true_x: float, darker_wm: bool = False, **options) -> np.ndarray:
    """Where :func:`edge_refine` puts five samples started up to 1.2 mm from the edge (minus the edge)."""
    edge = true_x - 0.5  # voxel i spans [i, i + 1) mm: index frame = mm - 0.5
    starts = edge + np.array([-1.2, -0.5, 0.0, 0.5, 1.2])  # where memberships might put it
    points = np.stack([starts, np.full(5, 4.0), np.full(5, 3.5)], axis=1)
    normals = np.tile([1.0, 0.0, 0.0], (5, 1))
    bounds = (np.full(5, LEVELS["gm"]), np.full(5, LEVELS["wm"]))
    shift = edge_refine(
        points, normals, _plane(true_x, darker_wm), np.ones(3), search=1.5, bounds=bounds, **options
    )
    return points[:, 0] + shift - edge


def test_edge_refine_finds_a_subvoxel_plane():
    errors = np.array([_edges(x) for x in PHASES])
    # each sample is within a third of a voxel (the half-maximum run may hold one of the two voxel
    # intervals a partial-volume step falls over, not both), and unbiased over the edge's sub-voxel phase,
    # which varies along a surface and is averaged by the mesh smoothing
    assert np.max(np.abs(errors)) <= 0.34
    assert abs(errors.mean()) <= 0.02
    # the whole falling run is exact for a partial-volume step, sample by sample (here within 0.1 mm: the
    # blur and the intensity bounds trim its ends)
    assert np.max(np.abs([_edges(x, peak_fraction=0.0) for x in PHASES])) <= 0.1
    # without the intensity bounds, a sample on the GM side can take the GM/CSF edge
    edge = 10.2 - 0.5
    points = np.array([[edge + 1.2, 4.0, 3.5]])
    free = edge_refine(points, np.array([[1.0, 0.0, 0.0]]), _plane(10.2), np.ones(3), search=1.5)
    assert abs(points[0, 0] + free[0] - edge) > 0.5
    # no edge within reach (uniform image): the samples stay
    assert np.all(edge_refine(points, np.array([[1.0, 0.0, 0.0]]), np.ones((24, 8, 8)), np.ones(3)) == 0)


def test_edge_refine_ignores_the_darker_superficial_white_matter():
    # the half-maximum run of the fall: the WM's drift moves the edge by a tenth of a mm on average
    errors = np.array([_edges(x, darker_wm=True) for x in PHASES])
    assert -0.12 <= errors.mean() <= 0 and np.max(np.abs(errors)) <= 0.34
    # the whole falling run takes the drift in, and its centroid leaves the edge for the WM
    assert np.array([_edges(x, darker_wm=True, peak_fraction=0.0) for x in PHASES]).mean() < -0.3


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
    with pytest.raises(ValueError, match=r"^'peak_fraction' must be in \[0, 1\)\. 1\.0 was provided\.$"):
        edge_refine(
            np.zeros((1, 3)), np.array([[1.0, 0.0, 0.0]]), np.ones((4, 4, 4)), np.ones(3), peak_fraction=1.0
        )
    gm, wm = _shell(10.0, 12.5, n=32)
    with pytest.raises(ValueError, match="refine"):
        cortical_thickness(gm, wm, t1w=_image(gm, wm), refine=("middle",))
    with pytest.raises(ValueError, match="t1w"):
        cortical_thickness(gm, wm, t1w=np.zeros((4, 4, 4)))


def _bench_thickness():
    path = Path(__file__).resolve().parents[2] / "bench" / "thickness.py"
    spec = importlib.util.spec_from_file_location("smriflow_bench_thickness", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_edge_brings_a_deep_boundary_to_freesurfers_white_surface_on_the_real_t1w():
    # sub-0002's FreeSurfer outputs: its bias-corrected T1w (nu.mgz) and ribbon, 50 coronal slices
    mri = require_shared("aomic", "derivatives", "freesurfer", "sub-0002", "mri")
    ribbon = np.asarray(nb.load(mri / "ribbon.mgz").dataobj)[:, 100:150]
    t1w = np.asarray(nb.load(mri / "nu.mgz").dataobj, dtype=np.float32)[:, 100:150]

    def memberships(mask: np.ndarray, shift: float) -> np.ndarray:
        # a linear ramp across the boundary of ``mask`` moved ``shift`` mm outwards: 0.5 there, 1 inside
        signed = np.where(
            mask, 0.5 - ndimage.distance_transform_edt(mask), ndimage.distance_transform_edt(~mask) - 0.5
        )
        return np.clip(0.5 - (signed - shift) / 2.0, 0.0, 1.0).astype(np.float32)

    brain = memberships(np.isin(ribbon, (2, 41, 3, 42)), 0.0)
    offset = _bench_thickness().white_surface_offset
    for shift, start_within, edge_within in (
        (0.0, (-0.05, 0.05), (-0.06, 0.08)),
        (-0.5, (-0.5, -0.45), (-0.18, 0.0)),
    ):
        wm = memberships(np.isin(ribbon, (2, 41)), shift)
        found = offset(wm, np.maximum(brain, wm), t1w, ribbon, np.ones(3))
        start = found["memberships (WM = 0.5)"][0]
        edge = found["T1w edge (the thickness step)"][0]
        assert start_within[0] <= start <= start_within[1]
        # on FreeSurfer's white surface, the edge stays within a few hundredths of a mm of it; started
        # 0.5 mm inside it (our memberships start ~0.13 mm inside), it comes back to within 0.18 mm (the
        # whole falling run, peak_fraction=0, stays 0.25 mm inside: measured -0.248)
        assert edge_within[0] <= edge <= edge_within[1]
