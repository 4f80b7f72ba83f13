"""Connected components and bounding boxes (:mod:`smriflow.utils.morphology`)."""

from __future__ import annotations

import numpy as np
import pytest

from smriflow.utils.morphology import (
    bounding_box,
    connected_components,
    dilate_mm,
    erode_mm,
    largest_component,
)


def _two_blobs() -> np.ndarray:
    mask = np.zeros((8, 8, 8), bool)
    mask[1:3, 1:3, 1:3] = True  # 8 voxels
    mask[5:8, 5:8, 5:8] = True  # 27 voxels
    mask[3, 3, 3] = True  # touches the first blob by a corner only
    return mask


def test_components_by_faces_or_by_corners_too():
    _, faces = connected_components(_two_blobs())
    _, full = connected_components(_two_blobs(), full=True)
    assert sorted(faces.tolist()) == [1, 8, 27] and sorted(full.tolist()) == [9, 27]
    assert connected_components(np.zeros((3, 3, 3), bool))[1].size == 0


def test_largest_component_keeps_the_biggest_blob():
    kept = largest_component(_two_blobs())
    assert kept.sum() == 27 and kept[6, 6, 6] and not kept[1, 1, 1]
    assert not largest_component(np.zeros((3, 3, 3), bool)).any()


def test_largest_component_through_edges_with_full():
    chain = np.zeros((8, 8, 8), bool)
    chain[[0, 1, 2, 3, 4, 5, 6, 7], [0, 1, 2, 3, 4, 5, 6, 7], 0] = True  # 8 voxels touching by edges only
    assert largest_component(chain).sum() == 1
    assert largest_component(chain, full=True).sum() == 8


def test_bounding_box_margins_clip_and_an_empty_mask_gives_the_grid():
    mask = np.zeros((10, 10, 10), bool)
    mask[4:6, 2, 7:9] = True
    assert bounding_box(mask) == (slice(4, 6), slice(2, 3), slice(7, 9))
    assert bounding_box(mask, [1, 3, 2]) == (slice(3, 7), slice(0, 6), slice(5, 10))
    assert bounding_box(np.zeros((2, 3, 4), bool)) == (slice(0, 2), slice(0, 3), slice(0, 4))


@pytest.mark.parametrize("seed", range(6))
def test_morphology_in_the_box_equals_the_whole_grid(seed):
    """dilate_mm and erode_mm work in the mask's box; the result must be the whole grid's, bit for bit."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    shape = (30, 26, 22)
    mask = ndimage.gaussian_filter(rng.random(shape), 2.0) > 0.52
    if seed % 2:  # a mask that touches the grid's edges
        mask[0, :, :5] = True
        mask[:, -1, :] |= rng.random(shape[::2]) > 0.5
    zooms = [(1.0, 1.0, 1.0), (0.7, 1.3, 2.5), (2.0, 2.0, 1.0)][seed % 3]
    for radius in (0.5, 1.0, 2.3, 4.0):
        whole_dilated = ndimage.distance_transform_edt(~mask, sampling=zooms) <= radius
        whole_eroded = ndimage.distance_transform_edt(mask, sampling=zooms) > radius
        assert np.array_equal(dilate_mm(mask, radius, zooms), whole_dilated), radius
        assert np.array_equal(erode_mm(mask, radius, zooms), whole_eroded), radius
    assert not erode_mm(np.zeros(shape, bool), 1.0, zooms).any()
    assert not dilate_mm(np.zeros(shape, bool), 1.0, zooms).any()
