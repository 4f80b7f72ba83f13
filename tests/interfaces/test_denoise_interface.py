"""AdaptiveDenoise: a clean image passes through as the same file; a noisy one is denoised."""

from __future__ import annotations

from pathlib import Path

import nibabel as nb
import numpy as np
import pytest

from smriflow.data.synth import add_rician_noise
from smriflow.interfaces.denoise import AdaptiveDenoise


def _write(tmp_path: Path, sigma: float) -> tuple[str, str]:
    shape = (40, 40, 40)
    grid = np.indices(shape, dtype=np.float32) - 19.5
    r = np.sqrt((grid**2).sum(0))
    image = np.where(r < 10, 1000.0, np.where(r < 14, 600.0, 250.0))
    image = add_rician_noise(image, sigma, np.random.default_rng(0)).astype(np.float32)
    nb.Nifti1Image(image, np.eye(4)).to_filename(str(tmp_path / f"t1w_{sigma:g}.nii.gz"))
    nb.Nifti1Image((r < 17).astype(np.uint8), np.eye(4)).to_filename(str(tmp_path / "mask.nii.gz"))
    return str(tmp_path / f"t1w_{sigma:g}.nii.gz"), str(tmp_path / "mask.nii.gz")


def test_clean_image_passes_through_as_the_same_file(tmp_path):
    t1w, mask = _write(tmp_path, 5.0)
    result = AdaptiveDenoise(in_file=t1w, in_mask=mask).run(cwd=str(tmp_path))
    assert result.outputs.out_file == str(Path(t1w).resolve())
    assert result.outputs.report["denoised"] is False


@pytest.mark.ants
def test_noisy_image_is_denoised_and_recorded(tmp_path):
    t1w, mask = _write(tmp_path, 80.0)
    result = AdaptiveDenoise(in_file=t1w, in_mask=mask).run(cwd=str(tmp_path))
    assert result.outputs.report["denoised"] is True
    assert result.outputs.report["noise"]["relative"] == pytest.approx(0.08, rel=0.15)
    assert Path(result.outputs.out_file).name.endswith("_denoised.nii.gz")
    assert Path(result.outputs.out_report).is_file()
