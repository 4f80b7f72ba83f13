"""The bad-input corpus of the reliability suite, made by code (no committed binaries), and run helpers.

Each case is a function writing one subject's T1w into a BIDS folder. :data:`CASES` maps the subject label
(letters and digits, as BIDS wants) to the writer and to the message ``smriflow run`` must print for it.
The good subject and the anisotropic one are made from the shared T1w (see ``tests/_anat_data.py``); the
others are small synthetic images, refused by the first node (``conform``), so they cost nothing.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import _anat_data
import nibabel as nb
import numpy as np

#: A node that cannot read the image fails at ``conform``; its full name in the summary.
CONFORM = "sub_{label}_wf.anat_preproc_wf.conform"


def _head(shape=(40, 44, 40), zoom=(4.0, 4.0, 4.0), seed=0) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic 'head' (an ellipsoid with noise) and a RAS affine with voxel sizes ``zoom``."""
    rng = np.random.default_rng(seed)
    grid = np.indices(shape, dtype=np.float32)
    centre = (np.array(shape) - 1) / 2
    radius = sum((grid[i] - centre[i]) ** 2 / (shape[i] / 2.5) ** 2 for i in range(3))
    data = np.where(radius < 1, 100.0, 0.0).astype(np.float32) + rng.random(shape, dtype=np.float32)
    affine = np.diag([*zoom, 1.0])
    affine[:3, 3] = -np.asarray(zoom) * centre
    return data, affine


def _save(path: Path, data: np.ndarray, affine: np.ndarray, *, qform=None, qcode=1, scode=1) -> Path:
    img = nb.Nifti1Image(data, affine)
    img.set_sform(affine, code=scode)
    img.set_qform(affine if qform is None else qform, code=qcode)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.to_filename(str(path))
    return path


def truncated(path: Path) -> Path:
    """A valid .nii.gz cut in the middle of its data (a copy interrupted by a full disk or a network drop)."""
    _save(path, *_head())
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[: len(raw) // 2], mtime=0))
    return path


def not_an_image(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("<html>403 Forbidden</html>\n")  # what a failed download saves
    return path


def two_d(path: Path) -> Path:
    data, affine = _head()
    return _save(path, data[:, :, 20], affine)


def four_d(path: Path) -> Path:
    data, affine = _head()
    return _save(path, np.stack([data, data, data], -1), affine)


def all_zero(path: Path) -> Path:
    data, affine = _head()
    return _save(path, np.zeros_like(data), affine)


def nan_inf(path: Path) -> Path:
    data, affine = _head()
    data[10, 10, 10], data[20, 20, 20], data[30, 30, 30] = np.nan, np.inf, -np.inf
    return _save(path, data, affine)


def sheared(path: Path) -> Path:
    """An oblique image whose sform is also sheared (its x axis leans 10 degrees towards y)."""
    data, affine = _head()
    angle = np.radians(15)
    rotation = np.array([[1, 0, 0], [0, np.cos(angle), -np.sin(angle)], [0, np.sin(angle), np.cos(angle)]])
    shear = np.eye(3)
    shear[1, 0] = np.tan(np.radians(10))
    affine[:3, :3] = rotation @ shear @ affine[:3, :3]
    return _save(path, data, affine, qcode=0)  # the qform cannot hold a shear: sform only


def qform_sform(path: Path) -> Path:
    """qform 12 mm away from the sform (a header edited by one tool that forgot the other)."""
    data, affine = _head()
    moved = affine.copy()
    moved[0, 3] += 12.0
    return _save(path, data, affine, qform=moved)


def slab(path: Path) -> Path:
    """A 6-slice slab of 2 mm slices: a partial acquisition, not a head."""
    data, affine = _head(shape=(96, 110, 6), zoom=(2.0, 2.0, 2.0))
    return _save(path, data, affine)


def no_t1w(path: Path) -> Path:
    """A subject with a T2w only."""
    data, affine = _head()
    return _save(path.with_name(path.name.replace("_T1w", "_T2w")), data, affine)


def good(path: Path, shared_data: Path) -> Path:
    """The shared T1w at 3 mm (85³, LIA)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return Path(_anat_data.t1w_3mm(shared_data, path.parent)).rename(path)


def anisotropic(path: Path, shared_data: Path) -> Path:
    """The shared T1w at 1 x 1 x 5 mm: 5 mm axial slices (mean of 5 of the 1 mm ones), 1 mm in plane.

    The shared image is LIA, so its second axis runs inferior-superior; it is cropped to the head.
    """
    img = nb.load(shared_data / _anat_data.T1W)
    data = np.asarray(img.dataobj, dtype=np.float32)[24:232, :, 4:252]
    data = data[:, : data.shape[1] // 5 * 5].reshape(data.shape[0], -1, 5, data.shape[2]).mean(2)
    affine = img.affine.copy()
    affine[:3, 3] = img.affine[:3, :3] @ [24, 2, 4] + img.affine[:3, 3]  # first voxel: centre of 5 slices
    affine[:3, 1] *= 5
    return _save(path, data.astype(np.float32), affine)


#: label → (writer, needs the shared data, how the run must end for it: a regex on the summary's error)
CASES: dict[str, tuple[Callable[..., Path], bool, str]] = {
    "good": (good, True, "done"),
    "aniso": (anisotropic, True, "done"),
    "truncated": (truncated, False, r"image data cannot be read \("),
    "notimage": (not_an_image, False, r"not a readable NIfTI/MGH image \(File .* is not a gzip file\)\."),
    "twod": (two_d, False, r"image is 2-D \(shape \(40, 44\)\); a 3-D volume is required\."),
    "fourd": (
        four_d,
        False,
        r"image is 4-D with 3 volumes \(shape \(40, 44, 40, 3\)\); a 3-D volume is required "
        r"\(set take_first_volume=True to use the first one\)\.",
    ),
    "zeros": (all_zero, False, r"image is empty \(all voxels are 0\)\."),
    "naninf": (nan_inf, False, r"image has 3 NaN/Inf voxels\."),
    "sheared": (
        sheared,
        False,
        r"affine is sheared \(voxel axes 10 degrees from perpendicular\), which ITK/ANTs cannot represent; "
        r"resample the image to a grid with perpendicular axes first\.",
    ),
    "qsform": (
        qform_sform,
        False,
        r"qform and sform disagree by up to 12 mm over the field of view; fix the header",
    ),
    "slab": (
        slab,
        False,
        r"field of view is a slab \(192 x 220 x 12 mm; the thinnest side is under 0\.25 of the largest\); "
        r"a whole-head image is required\.",
    ),
    "noT1w": (no_t1w, False, r"no file matches required input 't1w'"),
}


def make_dataset(root: Path, labels, shared_data: Path | None = None) -> Path:
    """A BIDS dataset with the corpus subjects ``labels`` (see :data:`CASES`)."""
    for label in labels:
        writer, shared, _ = CASES[label]
        path = root / f"sub-{label}" / "anat" / f"sub-{label}_T1w.nii.gz"
        writer(path, shared_data) if shared else writer(path)
    (root / "dataset_description.json").write_text('{"Name": "reliability", "BIDSVersion": "1.8.0"}')
    return root


# -- running smriflow as a user does -----------------------------------------------------------------------
COMMAND = [sys.executable, "-c", "import sys; from smriflow.cli.main import main; sys.exit(main())"]


def run_env() -> dict[str, str]:
    return {**os.environ, "PYTHONHASHSEED": "0", "COLUMNS": "200"}


def smriflow(*argv: object, timeout: float = 900, **kwargs) -> subprocess.CompletedProcess:
    """``smriflow ARGV`` in a fresh process, output captured as text."""
    return subprocess.run(
        [*COMMAND, *map(str, argv)], capture_output=True, text=True, env=run_env(), timeout=timeout, **kwargs
    )


def _terminal_signals() -> None:
    """In the child: SIGINT and SIGQUIT with their default actions, as a command typed in a terminal has them.

    A shell's background job (``pytest ... &`` in a script, nohup) inherits both ignored, and Python then
    installs no KeyboardInterrupt handler: Ctrl-C would be ignored, as that shell asked, not tested.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGQUIT, signal.SIG_DFL)


def start(*argv: object, log: Path) -> subprocess.Popen:
    """``smriflow ARGV`` in the background, in its own process group, stdout and stderr into ``log``, with
    the signals of a terminal's command (:func:`_terminal_signals`)."""
    with log.open("w") as handle:
        return subprocess.Popen(
            [*COMMAND, *map(str, argv)],
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=run_env(),
            start_new_session=True,
            preexec_fn=_terminal_signals,
        )


def wait_for(condition: Callable[[], bool], timeout: float, what: str, process=None) -> None:
    """Poll ``condition`` every 0.2 s; fail after ``timeout`` s or when ``process`` ended first."""
    end = time.monotonic() + timeout
    while not condition():
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the run ended (exit {process.returncode}) before {what}")
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.2)


def exit_code(process: subprocess.Popen, timeout: float, log: Path) -> int:
    """The exit code of ``process`` once it ends; after ``timeout`` s, its threads' Python stacks (SIGUSR1:
    ``smriflow`` dumps them, docs/troubleshooting.md) and the end of ``log`` in the failure."""
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.kill(process.pid, signal.SIGUSR1)
        time.sleep(3)
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-80:])
        raise AssertionError(f"the run did not end within {timeout} s; its stacks and log:\n{tail}") from None


def kill_group(process: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    """Send ``sig`` to the process group this suite started (the run and its workers)."""
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass


def tree_digest(root: Path, *, skip=("logs",)) -> dict[str, str]:
    """Relative path → SHA-256 of every file under ``root`` (symlinks listed by their target)."""
    digests = {}
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if relative.parts and relative.parts[0] in skip:
            continue
        if path.is_symlink():
            digests[relative.as_posix()] = "-> " + os.readlink(path)
        elif path.is_file():
            digests[relative.as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digests
