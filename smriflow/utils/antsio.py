"""Small bridges between nibabel/numpy and antspyx, shared by the antspyx-backed steps.

* :func:`to_ants` / :func:`from_ants`: numpy + RAS affine <-> ``ANTsImage`` (ITK's LPS physical space)
  without a round trip through a file; :func:`index_to_lps`: an ``ANTsImage``'s voxel index -> LPS matrix.
* :func:`ants_seed`: run antspyx registrations with a fixed ``--random-seed``. antspyx 0.6 ignores a
  ``random_seed=`` keyword of :func:`ants.registration`; it reads the module attribute
  ``ants.config._random_seed`` (what :func:`ants.set_ants_deterministic` sets, which also forces the ITK
  thread variable to 1 for the whole process). This context manager sets only the seed and restores it.
* :func:`registration_dir`: one fresh folder per :func:`ants.registration` call. antspyx collects the
  transforms it wrote by globbing ``outprefix*``; two calls sharing a folder can pick up each other's
  files (an affine applied twice, with no error).

Determinism: with a fixed seed, antspyx registrations are bit-identical run to run with one thread. With more
threads the Mattes mutual-information metric is not (its joint histogram is accumulated per thread; measured:
affine translations differ by ~0.02 mm between runs), while the global-correlation (GC) and CC metrics are.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

__all__ = ["ants_seed", "from_ants", "index_to_lps", "registration_dir", "to_ants"]

_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])


def to_ants(data: np.ndarray, affine: np.ndarray, ants: ModuleType) -> Any:
    """Wrap a 3-D array and its RAS voxel-to-world affine as a float ``ANTsImage``.

    Parameters
    ----------
    data : numpy.ndarray
        3-D array (converted to float32).
    affine : numpy.ndarray
        4 x 4 RAS affine, as nibabel gives it.
    ants : module
        The imported ``ants`` module (see :func:`smriflow.utils.antsenv.import_ants`).

    Returns
    -------
    ants.ANTsImage
    """
    affine = np.asarray(affine, dtype=np.float64)
    spacing = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    direction = _RAS_TO_LPS @ affine[:3, :3] / spacing
    origin = _RAS_TO_LPS @ affine[:3, 3]
    return ants.from_numpy(
        np.ascontiguousarray(data, dtype=np.float32),
        origin=tuple(float(x) for x in origin),
        spacing=tuple(float(x) for x in spacing),
        direction=direction,
    )


def index_to_lps(image: Any) -> np.ndarray:
    """The 4 × 4 matrix from an ``ANTsImage``'s voxel index to its physical point (ITK's LPS frame)."""
    matrix = np.eye(4)
    matrix[:3, :3] = np.asarray(image.direction, dtype=np.float64) * np.asarray(
        image.spacing, dtype=np.float64
    )
    matrix[:3, 3] = np.asarray(image.origin, dtype=np.float64)
    return matrix


def from_ants(image: Any) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(data, RAS affine)`` of an ``ANTsImage`` (inverse of :func:`to_ants`)."""
    affine = index_to_lps(image)
    affine[:3] = _RAS_TO_LPS @ affine[:3]
    return image.numpy(), affine


@contextmanager
def ants_seed(ants: ModuleType, seed: int) -> Iterator[None]:
    """Make antspyx registrations inside the block use ``--random-seed seed``."""
    config = ants.config
    saved = getattr(config, "_random_seed", None)
    config._random_seed = int(seed)
    try:
        yield
    finally:
        config._random_seed = saved


def registration_dir(parent: str | Path | None, name: str) -> str:
    """Create an empty folder for one registration and return the output prefix inside it.

    Parameters
    ----------
    parent : str, Path or None
        Where to create the folder ``<parent>/<name>`` (emptied first if it exists, so a re-run never picks
        up stale transforms); a fresh temporary folder when None.
    name : str
        Short name of the registration (the folder and the file-name prefix).

    Returns
    -------
    str
        ``<folder>/<name>_``, to pass as ``outprefix``.
    """
    if parent is None:
        folder = Path(tempfile.mkdtemp(prefix=f"{name}_"))
    else:
        folder = Path(parent) / name
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
    return str(folder / f"{name}_")
