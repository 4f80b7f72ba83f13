"""Helpers shared by test modules (import as ``from _helpers import run_cli``)."""

from __future__ import annotations

import contextlib
import io

from smriflow.cli.main import main


def run_cli(*argv: object) -> tuple[int, str, str]:
    """``smriflow ARGV`` in this process; returns (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()
