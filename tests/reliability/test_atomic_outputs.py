"""Atomic outputs: a derivative appears only complete; a failure in the middle of a write leaves nothing.

Every writer of the output folder is covered: the datasink (images, tables and their JSON sidecars),
``dataset_description.json`` and the run record in ``logs/`` (both through ``write_json``), and the
``path:`` outputs of group workflows. Failures are injected in the middle of the copy (half the bytes
written, then ``ENOSPC`` as a full disk gives).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import nibabel as nb
import numpy as np
import pytest
from conftest import write_synthetic_t1w

from smriflow.bids import publish
from smriflow.bids.publish import OutsideOutputError, check_inside, publish_file
from smriflow.engine import derivatives
from smriflow.interfaces.bids import DerivativesDataSink


def _half_then_full_disk(calls_before_failure: int = 0):
    """A ``shutil.copyfile`` that copies ``calls_before_failure`` times, then writes half and fails."""
    real = shutil.copyfile
    calls = []

    def copyfile(src, dst, *args, **kwargs):
        calls.append(dst)
        if len(calls) <= calls_before_failure:
            return real(src, dst, *args, **kwargs)
        data = Path(src).read_bytes()
        Path(dst).write_bytes(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    return copyfile


def _everything(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if not p.is_dir())


@pytest.fixture
def t1w(tmp_path) -> Path:
    return write_synthetic_t1w(tmp_path / "bids" / "sub-01" / "anat" / "sub-01_T1w.nii.gz")


def _sink(tmp_path: Path, t1w: Path, in_file, **entities) -> DerivativesDataSink:
    return DerivativesDataSink(
        base_directory=str(tmp_path / "out"),
        source_file=str(t1w),
        in_file=in_file,
        provenance={"GeneratedBy": [{"Name": "smriflow"}]},
        **entities,
    )


def _run(sink: DerivativesDataSink, tmp_path: Path):
    node = tmp_path / "node"
    node.mkdir(exist_ok=True)
    return sink.run(cwd=str(node))


def test_a_sink_failing_in_the_middle_of_the_image_leaves_no_file(tmp_path, t1w, monkeypatch):
    # the sidecar is copied first (call 1), the image fails half-way (call 2)
    monkeypatch.setattr(publish.shutil, "copyfile", _half_then_full_disk(calls_before_failure=1))
    with pytest.raises(OSError) as info:
        _run(_sink(tmp_path, t1w, str(t1w), desc="preproc", suffix="T1w"), tmp_path)
    final = tmp_path / "out" / "sub-01" / "anat" / "sub-01_desc-preproc_T1w.nii.gz"
    assert str(info.value) == f"[Errno 28] cannot write the derivative (No space left on device): '{final}'"
    assert _everything(tmp_path / "out") == []  # no image, no temporary, and the new sidecar rolled back


def test_a_sink_failing_on_its_sidecar_writes_no_image(tmp_path, t1w, monkeypatch):
    monkeypatch.setattr(publish.shutil, "copyfile", _half_then_full_disk(calls_before_failure=0))
    with pytest.raises(OSError, match=r"sub-01_desc-preproc_T1w\.json'$"):
        _run(_sink(tmp_path, t1w, str(t1w), desc="preproc", suffix="T1w"), tmp_path)
    assert _everything(tmp_path / "out") == []


def test_a_list_output_failing_half_way_leaves_only_complete_files(tmp_path, t1w, monkeypatch):
    maps = []
    for index in range(3):
        path = tmp_path / f"tpm{index}.nii.gz"
        nb.Nifti1Image(np.full((4, 4, 4), index, np.float32), np.eye(4)).to_filename(path)
        maps.append(str(path))
    # sidecar + map of GM, sidecar of WM, then the WM map fails
    monkeypatch.setattr(publish.shutil, "copyfile", _half_then_full_disk(calls_before_failure=3))
    with pytest.raises(OSError, match="No space left on device"):
        _run(_sink(tmp_path, t1w, maps, label=["GM", "WM", "CSF"], suffix="probseg"), tmp_path)
    anat = tmp_path / "out" / "sub-01" / "anat"
    assert _everything(anat) == ["sub-01_label-GM_probseg.json", "sub-01_label-GM_probseg.nii.gz"]
    assert np.array_equal(nb.load(anat / "sub-01_label-GM_probseg.nii.gz").get_fdata(), np.zeros((4, 4, 4)))


def test_a_rerun_after_the_failure_completes(tmp_path, t1w, monkeypatch):
    with monkeypatch.context() as patch:
        patch.setattr(publish.shutil, "copyfile", _half_then_full_disk(calls_before_failure=1))
        with pytest.raises(OSError):
            _run(_sink(tmp_path, t1w, str(t1w), desc="preproc", suffix="T1w"), tmp_path)
    _run(_sink(tmp_path, t1w, str(t1w), desc="preproc", suffix="T1w"), tmp_path)
    anat = tmp_path / "out" / "sub-01" / "anat"
    assert _everything(anat) == ["sub-01_desc-preproc_T1w.json", "sub-01_desc-preproc_T1w.nii.gz"]
    assert np.array_equal(
        nb.load(anat / "sub-01_desc-preproc_T1w.nii.gz").get_fdata(), nb.load(t1w).get_fdata()
    )


def test_write_json_failing_in_the_middle_keeps_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "dataset_description.json"
    derivatives.write_json(path, {"Name": "old"})
    real_open = Path.open

    class Full:
        def __init__(self, handle):
            self.handle = handle

        def write(self, text):
            self.handle.write(text[: len(text) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name):
            return getattr(self.handle, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

    def full_open(self, mode="r", *args, **kwargs):
        handle = real_open(self, mode, *args, **kwargs)
        return Full(handle) if "w" in mode else handle

    monkeypatch.setattr(Path, "open", full_open)
    with pytest.raises(OSError, match=r"No space left on device: .*/dataset_description\.json'$"):
        derivatives.write_json(path, {"Name": "new", "long": "x" * 1000})
    monkeypatch.undo()
    assert json.loads(path.read_text()) == {"Name": "old"}
    assert _everything(tmp_path) == ["dataset_description.json"]


# -- never outside the output folder ----------------------------------------------------------------------
def test_a_symlinked_subject_folder_pointing_outside_is_refused(tmp_path, t1w):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "sub-01").symlink_to(outside, target_is_directory=True)
    with pytest.raises(OutsideOutputError) as info:
        _run(_sink(tmp_path, t1w, str(t1w), desc="preproc", suffix="T1w"), tmp_path)
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'out' / 'sub-01' / 'anat'}/sub-01_desc-preproc_T1w.")
    assert (
        f"refusing to write outside the output folder {tmp_path / 'out'} (the path leads to {outside}"
        in message
    )
    assert _everything(outside) == []


def test_a_symlinked_derivative_is_replaced_not_written_through(tmp_path, t1w):
    victim = tmp_path / "precious.nii.gz"
    victim.write_bytes(b"keep me")
    anat = tmp_path / "out" / "sub-01" / "anat"
    anat.mkdir(parents=True)
    (anat / "sub-01_desc-preproc_T1w.nii.gz").symlink_to(victim)
    _run(_sink(tmp_path, t1w, str(t1w), desc="preproc", suffix="T1w"), tmp_path)
    assert victim.read_bytes() == b"keep me"
    written = anat / "sub-01_desc-preproc_T1w.nii.gz"
    assert not written.is_symlink() and np.array_equal(nb.load(written).get_fdata(), nb.load(t1w).get_fdata())


def test_a_symlinked_folder_inside_the_output_is_fine(tmp_path):
    (tmp_path / "out" / "real").mkdir(parents=True)
    (tmp_path / "out" / "link").symlink_to(tmp_path / "out" / "real", target_is_directory=True)
    assert check_inside(tmp_path / "out", tmp_path / "out" / "link" / "a.txt") == tmp_path / "out/link/a.txt"
    source = tmp_path / "a.txt"
    source.write_text("a")
    assert publish_file(source, tmp_path / "out" / "link" / "x" / "a.txt", root=tmp_path / "out") is True
    assert (tmp_path / "out" / "real" / "x" / "a.txt").read_text() == "a"


def test_dotdot_cannot_leave_the_output_folder(tmp_path):
    with pytest.raises(OutsideOutputError, match="refusing to write outside the output folder"):
        check_inside(tmp_path / "out", tmp_path / "out" / "sub-01" / ".." / ".." / "x.txt")


def test_path_outputs_cannot_leave_the_output_folder(tmp_path):
    from smriflow.bids.publish import OutputPathError, publish_outputs

    source = tmp_path / "table.tsv"
    source.write_text("a\n")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "escape").symlink_to(tmp_path, target_is_directory=True)
    for relative in ("../table.tsv", "/etc/table.tsv", "escape/table.tsv"):
        with pytest.raises(OutputPathError, match=r"output path '.*' (must be relative|leads outside)"):
            publish_outputs(source, tmp_path / "out", relative)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "table.tsv"]


def test_os_replace_is_what_makes_a_file_appear(tmp_path, monkeypatch):
    """Until the final rename, the destination folder holds only a hidden temporary name."""
    seen = []
    real = os.replace

    def spy(src, dst):
        seen.append(sorted(p.name for p in Path(dst).parent.iterdir()))
        real(src, dst)

    monkeypatch.setattr(publish.os, "replace", spy)
    source = tmp_path / "a.nii.gz"
    source.write_bytes(b"x" * 100)
    publish_file(source, tmp_path / "out" / "a.nii.gz", root=tmp_path / "out")
    assert (
        len(seen) == 1
        and len(seen[0]) == 1
        and seen[0][0].startswith(".a.nii.gz.")
        and seen[0][0] != ".a.nii.gz."  # a unique name: concurrent writers never share a temporary file
    )


def test_a_run_whose_logs_folder_leads_outside_is_refused(tmp_path):
    """``smriflow run`` checks its own folders (logs, locks) before writing anything."""
    import contextlib
    import io

    from smriflow.cli.main import main

    write_synthetic_t1w(tmp_path / "bids" / "sub-01" / "anat" / "sub-01_T1w.nii.gz")
    (tmp_path / "bids" / "dataset_description.json").write_text('{"Name": "x", "BIDSVersion": "1.8.0"}')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / "logs").symlink_to(elsewhere, target_is_directory=True)
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = main(["run", "example", "--bids-dir", str(tmp_path / "bids"), "--output-dir", str(out)])
    assert code == 2
    assert err.getvalue() == (
        f"{tmp_path / 'out' / 'logs'}/x: refusing to write outside the output folder {tmp_path / 'out'} "
        f"(the path leads to {elsewhere / 'x'})\n"
    )
    assert list(elsewhere.iterdir()) == []
    assert sorted(p.name for p in out.iterdir()) == ["logs"]  # nothing written, no lock either
