"""What every ``smriflow stats`` sub-command shares: value parsers and the usage-error wrapper.

Kept apart from :mod:`smriflow.cli.stats` so that :mod:`smriflow.cli.stats_vbm`, which that module imports,
can use them too.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

__all__ = ["non_negative", "param_type", "positive_float", "probability", "usage_errors"]


def usage_errors(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Turn the stats layer's ValueError (a bad value, a bad file) into a one-line usage error (exit 2)."""

    def wrapped(args: argparse.Namespace) -> int:
        from smriflow.cli.main import CLIError

        try:
            return handler(args)
        except (ValueError, FileNotFoundError) as exc:
            raise CLIError(f"smriflow stats {args.stats_command}: {exc}") from exc

    return wrapped


def _number(kind: type, text: str) -> Any:
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid {kind.__name__} value: {text!r}") from None


def positive_float(text: str) -> float:
    """An argparse type: a float > 0."""
    value = _number(float, text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0; got {text}")
    return value


def probability(text: str) -> float:
    """An argparse type: an error rate, strictly between 0 and 1."""
    value = _number(float, text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (exclusive); got {text}")
    return value


def non_negative(kind: type) -> Callable[[str], Any]:
    """An argparse type: a ``kind`` (int or float) >= 0."""

    def parse(text: str) -> Any:
        value = _number(kind, text)
        if value < 0:
            raise argparse.ArgumentTypeError(f"must be >= 0; got {text}")
        return value

    return parse


def param_type(param: Any, name: str) -> Callable[[str], Any]:
    """An argparse type from a declared parameter (:class:`~smriflow.utils.params.Param`): its type and
    bounds, and its message (``'alpha' must be in (0, 1). 5.0 was provided.``)."""

    def parse(text: str) -> Any:
        try:
            return param.parse(name, text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse
