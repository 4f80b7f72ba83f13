"""Noise estimation and adaptive denoising (smriflow.anat.denoise; issue 15, item 4)."""

from __future__ import annotations

import numpy as np
import pytest

from smriflow.anat.denoise import denoise_if_noisy, estimate_noise
from smriflow.data.synth import add_rician_noise


def _phantom(shape=(48, 48, 48)) -> tuple[np.ndarray, np.ndarray]:
    """A smooth 'brain': WM core (1000), GM shell (600), CSF rim (250), in a spherical mask."""
    grid = (
        np.indices(shape, dtype=np.float32) - (np.array(shape, dtype=np.float32)[:, None, None, None] - 1) / 2
    )
    r = np.sqrt((grid**2).sum(0))
    image = np.where(r < 12, 1000.0, np.where(r < 17, 600.0, 250.0)).astype(np.float32)
    return image, r < 21


@pytest.mark.parametrize("fraction", [0.02, 0.04, 0.08])
def test_estimate_noise_recovers_a_known_sigma(fraction):
    image, mask = _phantom()
    noisy = add_rician_noise(image, fraction * 1000.0, np.random.default_rng(1))
    noise = estimate_noise(noisy, mask)
    assert noise["relative"] == pytest.approx(fraction, rel=0.1)
    assert noise["sigma"] == pytest.approx(fraction * 1000.0, rel=0.1)


def test_clean_image_is_left_untouched():
    image, mask = _phantom()
    image = add_rician_noise(image, 5.0, np.random.default_rng(2)).astype(np.float32)  # 0.5 % of WM
    out, record = denoise_if_noisy(image, mask, (1.0, 1.0, 1.0))
    assert not record["denoised"] and record["noise"]["relative"] < 0.01
    assert np.array_equal(out, image)


@pytest.mark.ants
def test_noisy_image_is_denoised_inside_the_mask_only():
    image, mask = _phantom()
    noisy = add_rician_noise(image, 60.0, np.random.default_rng(3)).astype(np.float32)  # 6 % of WM
    out, record = denoise_if_noisy(noisy, mask, (1.0, 1.0, 1.0))
    assert record["denoised"] and record["noise"]["relative"] > 0.05
    assert np.array_equal(out[~mask], noisy[~mask])
    core = np.zeros(mask.shape, dtype=bool)
    core[18:30, 18:30, 18:30] = True  # inside the WM
    assert out[core].std() < 0.6 * noisy[core].std()
    never, record = denoise_if_noisy(noisy, mask, (1.0, 1.0, 1.0), mode="never")
    assert not record["denoised"] and np.array_equal(never, noisy)


def test_auto_leaves_coarse_voxels_alone_and_says_why():
    image, mask = _phantom()
    noisy = add_rician_noise(image, 60.0, np.random.default_rng(3)).astype(np.float32)  # 6 % of WM
    out, record = denoise_if_noisy(noisy, mask, (1.0, 1.0, 3.0))
    assert not record["denoised"] and np.array_equal(out, noisy)
    assert record["voxel_mm"] == 3.0 and record["max_voxel_mm"] == 1.5
    noise = f"{100 * record['noise']['relative']:.1f}"
    assert record["reason"] == f"noise {noise} % but voxels of 3 mm (> 1.5 mm)"
    clean = add_rician_noise(image, 5.0, np.random.default_rng(2)).astype(np.float32)
    assert denoise_if_noisy(clean, mask, (1.0, 1.0, 1.0))[1]["reason"].endswith("is not above 2.5 %")
    assert denoise_if_noisy(clean, mask, (3.0, 3.0, 3.0), mode="never")[1]["reason"] == "denoise=never"


def test_bad_arguments_are_one_line_errors():
    image, mask = _phantom()
    with pytest.raises(ValueError, match="'mode' must be one of auto, always, never"):
        denoise_if_noisy(image, mask, (1, 1, 1), mode="sometimes")
    with pytest.raises(ValueError, match="fewer than 100 voxels"):
        estimate_noise(image, np.zeros(mask.shape, dtype=bool))
