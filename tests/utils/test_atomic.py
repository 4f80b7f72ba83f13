"""The one atomic writer (:mod:`smriflow.utils.atomic`): unique temporary names, nothing left on failure."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from smriflow.utils.atomic import FILE_MODE, atomic_write


def test_the_file_appears_complete_with_the_mode_of_a_new_file(tmp_path):
    out = atomic_write(tmp_path / "sub" / "a.nii.gz", lambda tmp: Path(tmp).write_text("data"))
    assert out == tmp_path / "sub" / "a.nii.gz" and out.read_text() == "data"
    assert out.stat().st_mode & 0o777 == FILE_MODE
    assert sorted(p.name for p in out.parent.iterdir()) == ["a.nii.gz"]


def test_each_write_has_its_own_hidden_temporary_name_with_the_extension(tmp_path):
    seen: list[str] = []

    def nested(tmp: str) -> None:  # a second writer of the same file while the first is writing
        seen.append(tmp)
        if len(seen) == 1:
            atomic_write(tmp_path / "a.nii.gz", nested)
        Path(tmp).write_text(str(len(seen)))

    atomic_write(tmp_path / "a.nii.gz", nested)
    names = [Path(tmp).name for tmp in seen]
    assert len(set(names)) == 2
    assert all(name.startswith(".a.nii.gz.") and name.endswith(".nii.gz") for name in names)
    assert [p.name for p in tmp_path.iterdir()] == ["a.nii.gz"]


def test_a_failed_write_keeps_the_old_file_removes_the_temporary_and_names_the_file(tmp_path):
    out = tmp_path / "table.tsv"
    out.write_text("old")

    def full_disk(tmp: str) -> None:
        Path(tmp).write_text("half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError) as info:
        atomic_write(out, full_disk)
    assert str(info.value) == f"[Errno 28] No space left on device: '{out}'"
    assert out.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["table.tsv"]


def test_a_symbolic_link_is_replaced_not_written_through(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    link = tmp_path / "out.txt"
    os.symlink(victim, link)
    atomic_write(link, lambda tmp: Path(tmp).write_text("new"))
    assert victim.read_text() == "keep" and not link.is_symlink() and link.read_text() == "new"
