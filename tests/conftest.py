"""Shared fixtures: the shared data folder (skip or fail when absent) and small synthetic images."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nibabel as nb
import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
# the developer tools (tools/docgen) live outside the wheel: tests import them from the repository root
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))
SHARED_DATA = Path(os.environ.get("SMRIFLOW_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


def require_shared(*relative: str) -> Path:
    """Return ``SHARED_DATA/relative``; skip the test when it is absent, fail instead in CI.

    CI sets ``SMRIFLOW_REQUIRE_SHARED=1`` so that a missing shared file is an error, not a silent skip.
    """
    path = SHARED_DATA.joinpath(*relative)
    if not path.exists():
        message = f"shared data not found: {path}"
        if os.environ.get("SMRIFLOW_REQUIRE_SHARED") == "1":
            pytest.fail(message + " (SMRIFLOW_REQUIRE_SHARED=1)")
        pytest.skip(message)
    return path


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Under ``--dist loadgroup``, fail an ``xdist_group`` test that pytest-xdist did not tag with its group.

    The groups keep module-scoped runs (anat_preproc, the demo, the SLURM cohort) on one worker. If the
    pytest/pytest-xdist pair drops the tags, every group is split: each worker repeats those runs, and the
    live SLURM tests run at once and starve each other of the cluster's CPUs. Checked before any fixture runs.
    """
    if getattr(item.config.option, "loadgroup", False) and item.get_closest_marker("xdist_group"):
        if "@" not in item.nodeid:
            pytest.fail(
                f"--dist loadgroup: pytest-xdist did not put this xdist_group test in its group (pytest "
                f"{pytest.__version__}); install the versions pyproject.toml's [test] extra allows",
                pytrace=False,
            )


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared data folder (``../shared/data`` beside the repository)."""
    return require_shared()


@pytest.fixture
def templateflow_home(tmp_path: Path, monkeypatch) -> Path:
    """A TemplateFlow cache (``TEMPLATEFLOW_HOME``) where MNI152NLin6Asym is installed and MNIColin27 is not.

    Whether a template is installed is read from file sizes only: MNI152NLin6Asym has a 2 KiB T1w (not an
    image; nothing here reads it), MNIColin27 only the empty stub TemplateFlow leaves before a download.
    """
    home = tmp_path / "templateflow"
    for name, size in (("MNI152NLin6Asym", 2048), ("MNIColin27", 0)):
        (home / f"tpl-{name}").mkdir(parents=True)
        (home / f"tpl-{name}" / f"tpl-{name}_res-01_desc-brain_T1w.nii.gz").write_bytes(b"\0" * size)
    monkeypatch.setenv("TEMPLATEFLOW_HOME", str(home))
    return home


@pytest.fixture
def synthetic_t1w(tmp_path: Path) -> Path:
    """A 24³ 2 mm 'head': a bright ellipsoid 'brain' in a dimmer shell, with seeded noise."""
    return write_synthetic_t1w(tmp_path / "sub-01_T1w.nii.gz")


def write_synthetic_t1w(path: Path, *, shape=(24, 24, 24), zoom: float = 2.0, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    grid = np.indices(shape).astype(np.float32)
    centre = (np.array(shape) - 1) / 2
    radius = (
        (grid - centre[:, None, None, None]) ** 2 / (np.array(shape)[:, None, None, None] / 3) ** 2
    ).sum(0)
    data = np.where(radius < 1, 100.0, np.where(radius < 1.6, 40.0, 0.0)).astype(np.float32)
    data += rng.normal(0, 2, shape).astype(np.float32) * (data > 0)
    affine = np.diag([zoom, zoom, zoom, 1.0])
    affine[:3, 3] = -zoom * centre
    img = nb.Nifti1Image(data, affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.to_filename(str(path))
    return path
