"""smriflow.engine.locks: one lock per subject, refused while held, taken over when its process died."""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from smriflow.engine import locks
from smriflow.engine.derivatives import RunSetupError
from smriflow.engine.locks import LockedError, RunLocks, lock_path, read_holder

HOLDER = """
import sys, time
from smriflow.engine.locks import RunLocks
RunLocks(sys.argv[1], sys.argv[2:], what="holder").acquire()
print("locked", flush=True)
time.sleep(120)
"""


@pytest.fixture
def holder(tmp_path):
    """Start a process holding the locks it is given; yields a function returning it once it holds them."""
    started = []

    def start(*names: str) -> subprocess.Popen:
        process = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(tmp_path / "out"), *names], stdout=subprocess.PIPE, text=True
        )
        started.append(process)
        assert process.stdout.readline() == "locked\n"
        return process

    yield start
    for process in started:
        process.kill()
        process.wait()


def test_a_held_subject_is_refused_with_the_holder_and_lock_file(tmp_path, holder):
    process = holder("sub-01")
    path = lock_path(tmp_path / "out", "sub-01")
    assert path == tmp_path / "out" / ".locks" / "sub-01.lock"
    record = read_holder(path)
    assert record["pid"] == process.pid and record["host"] == socket.gethostname()
    with pytest.raises(LockedError) as info:
        RunLocks(tmp_path / "out", ["sub-01"]).acquire()
    message = str(info.value)
    assert message == (
        f"sub-01 is being processed by process {process.pid} since {record['started']} (lock {path}); "
        "wait for that run to end, or leave this subject out with --participant-label"
    )
    assert isinstance(info.value, RunSetupError)  # the CLI prints it as one line, exit code 2
    assert read_holder(path)["pid"] == process.pid  # the refused run did not touch the holder's file


def test_other_subjects_of_the_same_folder_are_free(tmp_path, holder):
    holder("sub-01")
    with RunLocks(tmp_path / "out", ["sub-02", "sub-03"], what="wf") as held:
        assert read_holder(lock_path(tmp_path / "out", "sub-02"))["pid"] == os.getpid()
        assert read_holder(lock_path(tmp_path / "out", "sub-03"))["what"] == "wf"
    assert held.names == ["sub-02", "sub-03"]
    assert sorted(p.name for p in (tmp_path / "out" / ".locks").iterdir()) == ["sub-01.lock"]


def test_all_or_none(tmp_path, holder):
    holder("sub-02")
    with pytest.raises(LockedError, match=r"^sub-02 is being processed by process \d+ since "):
        RunLocks(tmp_path / "out", ["sub-01", "sub-02", "sub-03"]).acquire()
    # sub-01 was taken before sub-02 was found busy: it is released again, and sub-03 too
    assert sorted(p.name for p in (tmp_path / "out" / ".locks").iterdir()) == ["sub-02.lock"]
    with RunLocks(tmp_path / "out", ["sub-01", "sub-03"]):
        pass


def test_every_busy_subject_is_named(tmp_path, holder):
    first, second = holder("sub-01"), holder("sub-02")
    with pytest.raises(LockedError) as info:
        RunLocks(tmp_path / "out", ["sub-01", "sub-02"]).acquire()
    assert f"sub-01 is being processed by process {first.pid}" in str(info.value)
    assert f"; sub-02 is being processed by process {second.pid}" in str(info.value)
    assert str(info.value).endswith("leave these subjects out with --participant-label")


def test_a_killed_holder_leaves_a_stale_lock_that_is_taken_over(tmp_path, holder):
    process = holder("sub-01")
    path = lock_path(tmp_path / "out", "sub-01")
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert read_holder(path)["pid"] == process.pid  # the file is still there, naming a dead process
    with RunLocks(tmp_path / "out", ["sub-01"]):
        assert read_holder(path)["pid"] == os.getpid()
    assert not path.exists()


def test_the_same_process_cannot_take_a_subject_twice(tmp_path):
    with RunLocks(tmp_path, ["sub-01"]):
        with pytest.raises(LockedError, match=rf"^sub-01 is being processed by process {os.getpid()} "):
            RunLocks(tmp_path, ["sub-01"]).acquire()
    with RunLocks(tmp_path, ["sub-01"]):  # released: free again
        pass


def test_release_removes_the_files(tmp_path):
    held = RunLocks(tmp_path, ["sub-01", "sub-02"])
    held.acquire()
    assert len(list((tmp_path / ".locks").iterdir())) == 2
    held.release()
    assert not (tmp_path / ".locks").exists()  # the folder too, once empty


@pytest.fixture
def no_record_locks(monkeypatch):
    """A filesystem without POSIX record locks (some NFS mounts): lockf fails with ENOLCK."""

    def lockf(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(locks.fcntl, "lockf", lockf)


def _write_holder(path: Path, pid: int, host: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"pid": pid, "host": host, "started": "then"}))


def test_without_record_locks_a_dead_pid_is_stale(tmp_path, no_record_locks):
    sleeper = subprocess.Popen([sys.executable, "-c", "pass"])
    sleeper.wait()  # a PID that existed and is now dead
    path = lock_path(tmp_path, "sub-01")
    _write_holder(path, sleeper.pid, socket.gethostname())
    with RunLocks(tmp_path, ["sub-01"]):
        assert read_holder(path)["pid"] == os.getpid()


def test_without_record_locks_a_live_pid_or_another_host_holds(tmp_path, no_record_locks):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        path = lock_path(tmp_path, "sub-01")
        _write_holder(path, sleeper.pid, socket.gethostname())
        with pytest.raises(LockedError, match=rf"process {sleeper.pid} since then "):
            RunLocks(tmp_path, ["sub-01"]).acquire()
        _write_holder(path, 1, "elsewhere")
        with pytest.raises(LockedError, match=r"process 1 on elsewhere since then "):
            RunLocks(tmp_path, ["sub-01"]).acquire()
    finally:
        sleeper.kill()
        sleeper.wait()
