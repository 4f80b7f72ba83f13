"""engine.summary: the last line of a crash file or a SLURM log, as the run summary quotes it."""

from __future__ import annotations

from smriflow.engine.summary import last_error_line, last_line


def test_last_line_is_the_last_non_blank_line_cut_to_the_limit(tmp_path):
    log = tmp_path / "task_0.out"
    log.write_text("started\n  ValueError: " + "x" * 400 + "  \n\n   \n")
    assert last_line(log) == "ValueError: " + "x" * 288
    assert last_line(log, limit=20) == "ValueError: xxxxxxxx"
    assert last_line(tmp_path / "missing.out") == ""
    (tmp_path / "blank.out").write_text("\n  \n")
    assert last_line(tmp_path / "blank.out") == ""


def test_last_error_line_reads_text_crash_files_only(tmp_path):
    crash = tmp_path / "crash-node.txt"
    error = "ZeroDivisionError: float division by zero"
    crash.write_text(f"Traceback (most recent call last):\n  File ...\n{error}\n")
    assert last_error_line(crash) == error
    pickled = tmp_path / "crash-node.pklz"
    pickled.write_text(error + "\n")
    assert last_error_line(pickled) == ""
    assert last_error_line(None) == ""
