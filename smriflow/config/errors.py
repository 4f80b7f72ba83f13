"""Errors in user-written configuration, reported as ``file:line:col: key.path: problem. Hint.``

Every phase of validation collects :class:`Problem` records instead of raising on the first one, then raises a
single :class:`SpecError` listing all of them, sorted by position, so a user fixes a file in one pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from smriflow.utils.text import did_you_mean

__all__ = ["Problem", "SpecError", "did_you_mean"]


@dataclass(frozen=True, order=True)
class Problem:
    """One mistake in a configuration file.

    ``line`` and ``col`` are 1-based, as editors show them; ``None`` when the problem has no single place
    (e.g. an argument given on the command line).
    """

    file: str
    line: int | None
    col: int | None
    key_path: str
    message: str
    hint: str = ""

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}:{self.col or 1}"
        text = f"{where}: {self.key_path}: {self.message}" if self.key_path else f"{where}: {self.message}"
        if not text.endswith((".", "?", "!")):
            text += "."
        return f"{text} {self.hint}" if self.hint else text


class SpecError(ValueError):
    """A configuration file (or arguments given to it) has one or more mistakes.

    Parameters
    ----------
    problems : sequence of Problem
        Everything found wrong; the message lists them one per line, in file order.
    """

    def __init__(self, problems: Sequence[Problem]):
        if not problems:
            raise ValueError("SpecError needs at least one problem")
        self.problems = sorted(set(problems), key=_position_key)
        super().__init__("\n".join(str(p) for p in self.problems))


def _position_key(problem: Problem) -> tuple:
    return (problem.file, problem.line or 0, problem.col or 0, problem.key_path, problem.message)
