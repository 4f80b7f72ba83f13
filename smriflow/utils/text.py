"""Wording helpers for user-facing messages (pure; any layer may use them)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def did_you_mean(word: str, choices: Iterable[str], *, list_all: bool = True, max_listed: int = 12) -> str:
    """Return a hint such as ``Did you mean 'out_file'? Available: out_bias, out_file``.

    Parameters
    ----------
    word : str
        What the user wrote.
    choices : iterable of str
        The valid names.
    list_all : bool
        Append the list of valid names (shortened past ``max_listed``).
    """
    choices = sorted(set(choices))
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    parts = []
    if close:
        parts.append(f"Did you mean '{close[0]}'?")
    if list_all:
        if not choices:
            parts.append("There are none.")
        else:
            shown = ", ".join(choices[:max_listed])
            more = f", … ({len(choices) - max_listed} more)" if len(choices) > max_listed else ""
            parts.append(f"Available: {shown}{more}")
    return " ".join(parts)


def one_line(exc: BaseException, *, limit: int = 200) -> str:
    """The message of ``exc`` on one line (white space folded), cut to ``limit`` characters."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
