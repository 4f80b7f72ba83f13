"""``--output-spaces`` in NiPreps' syntax: ``MNI152NLin2009cAsym:res-2 MNI152NLin6Asym``.

Each item is a template name with optional ``:key-value`` modifiers; smriflow knows ``res`` (the
TemplateFlow resolution index of the template-space outputs) and ``cohort``. Non-standard spaces of
fMRIPrep (``T1w``, ``anat``, ``fsnative``, ``fsaverage``...) are refused: smriflow's native outputs are
always written, and it makes no surfaces.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["OutputSpace", "OutputSpaceError", "parse_output_spaces"]

_NAME = re.compile(r"[A-Za-z0-9]+")
_NONSTANDARD = {"T1w", "T2w", "anat", "func", "run", "sbref", "fsnative", "fsaverage", "fsLR", "fsaverage5"}
_MODIFIERS = {"res", "cohort"}


class OutputSpaceError(ValueError):
    """An ``--output-spaces`` item that cannot be used; one line naming it."""


@dataclass(frozen=True)
class OutputSpace:
    """One standard space: a template and, optionally, the resolution index and cohort of its outputs."""

    template: str
    resolution: int | None = None
    cohort: str | None = None

    @property
    def spec(self) -> str:
        """The item as NiPreps writes it (``MNI152NLin2009cAsym:res-2``)."""
        extra = [f"cohort-{self.cohort}"] if self.cohort else []
        extra += [f"res-{self.resolution}"] if self.resolution is not None else []
        return ":".join([self.template, *extra])


def parse_output_spaces(items: Sequence[str]) -> list[OutputSpace]:
    """Parse ``--output-spaces`` items (each may hold several, separated by spaces).

    Raises
    ------
    OutputSpaceError
        An empty list, a malformed item, a non-standard space, an unknown modifier, or a repeated space.

    Examples
    --------
    >>> [s.spec for s in parse_output_spaces(["MNI152NLin2009cAsym:res-2 MNI152NLin6Asym"])]
    ['MNI152NLin2009cAsym:res-2', 'MNI152NLin6Asym']
    >>> parse_output_spaces(["MNI152NLin6Asym:res-native"])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    smriflow.bids.spaces.OutputSpaceError: --output-spaces ...: res must be a positive integer (e.g. res-2)
    """
    tokens = [token for item in items for token in item.split()]
    if not tokens:
        raise OutputSpaceError("--output-spaces: give at least one template, e.g. MNI152NLin2009cAsym:res-2")
    spaces: list[OutputSpace] = []
    for token in tokens:
        where = f"--output-spaces {token}"
        name, *modifiers = token.split(":")
        if name in _NONSTANDARD:
            raise OutputSpaceError(
                f"{where}: smriflow writes native (T1w) outputs always and no surfaces; list standard "
                "templates only (e.g. MNI152NLin2009cAsym)"
            )
        if not _NAME.fullmatch(name.removeprefix("tpl-")):
            raise OutputSpaceError(f"{where}: a template name is alphanumeric (e.g. MNI152NLin6Asym)")
        found: dict[str, str] = {}
        for modifier in modifiers:
            key, dash, value = modifier.partition("-")
            if key not in _MODIFIERS or not dash or not value:
                raise OutputSpaceError(
                    f"{where}: unknown modifier '{modifier}' (smriflow knows res-N, cohort-X)"
                )
            found[key] = value
        resolution = found.get("res")
        if resolution is not None and not (resolution.isdigit() and int(resolution) > 0):
            raise OutputSpaceError(f"{where}: res must be a positive integer (e.g. res-2)")
        space = OutputSpace(
            name.removeprefix("tpl-"), int(resolution) if resolution else None, found.get("cohort")
        )
        if any(s.template == space.template and s.cohort == space.cohort for s in spaces):
            raise OutputSpaceError(f"{where}: the template is listed twice")
        spaces.append(space)
    return spaces
