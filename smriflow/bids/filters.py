"""Selecting input files: NiPreps' ``--bids-filter-file`` and ``--session-label``, applied to pybids queries.

A filter file is a JSON object as fMRIPrep reads it: its keys are the workflow's BIDS inputs (for
``anat_preproc``: ``t1w``, ``t2w``, ``flair``, ``lesion_mask``), its values pybids entity filters that are
added to (and override) the input's own query::

    {"t1w": {"acquisition": "mprage", "reconstruction": null},
     "t2w": {"run": [1, 2]}}

``null`` means "the entity is absent" (pybids' ``Query.NONE``), ``"*"`` any value but present
(``Query.ANY``), and a list any of its values. Nothing here touches the files: :func:`load_bids_filters`
checks a file against the inputs and the entities pybids knows; :func:`apply_filters` merges it into the
queries that :func:`smriflow.bids.inputs.collect_subjects` runs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

__all__ = ["BIDSFilterError", "apply_filters", "bids_entities", "load_bids_filters", "pybids_value"]


class BIDSFilterError(ValueError):
    """A filter file that cannot be used; the message is one line naming the file."""


@cache
def bids_entities() -> frozenset[str]:
    """The entity names pybids' BIDS configuration knows (``acquisition``, ``run`` ...)."""
    from bids.layout.models import Config

    return frozenset(Config.load("bids").entities)


def load_bids_filters(path: str | os.PathLike, inputs: Collection[str]) -> dict[str, dict[str, Any]]:
    """Read and check a NiPreps BIDS filter file.

    Parameters
    ----------
    path : path
        The JSON file.
    inputs : collection of str
        The workflow's inputs that have a BIDS query (the keys the file may use).

    Returns
    -------
    dict
        Input name → {entity: value} as written in the file (``None`` kept for "absent").

    Raises
    ------
    BIDSFilterError
        The file is missing or not JSON, is not an object of objects, names an unknown input or an unknown
        entity, or holds a value that is not a string, a number, null or a list of those.

    Examples
    --------
    >>> import json, tempfile
    >>> with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
    ...     json.dump({"t1w": {"acquisition": "mprage", "reconstruction": None}}, f)
    >>> load_bids_filters(f.name, ["t1w", "t2w"])
    {'t1w': {'acquisition': 'mprage', 'reconstruction': None}}
    """
    where = f"--bids-filter-file {path}"
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise BIDSFilterError(f"{where}: cannot read it ({exc.strerror or exc})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BIDSFilterError(f"{where}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
    if not isinstance(data, dict):
        example = '{"t1w": {"acquisition": "mprage"}}'
        raise BIDSFilterError(f"{where}: expected a JSON object such as {example}")
    known = bids_entities()
    filters: dict[str, dict[str, Any]] = {}
    for name, query in data.items():
        if name not in inputs:
            raise BIDSFilterError(
                f"{where}: unknown input '{name}'{_hint(name, inputs)}; the workflow's BIDS inputs are "
                f"{', '.join(sorted(inputs))}"
            )
        if not isinstance(query, dict):
            raise BIDSFilterError(
                f"{where}: '{name}' must map entities to values, not {type(query).__name__}"
            )
        for entity, value in query.items():
            if entity not in known:
                raise BIDSFilterError(
                    f"{where}: '{name}' filters on unknown entity '{entity}'{_hint(entity, known)} "
                    "(use pybids' full names: acquisition, reconstruction, run, session ...)"
                )
            values = value if isinstance(value, list) else [value]
            if not values or not all(v is None or isinstance(v, str | int | float) for v in values):
                raise BIDSFilterError(
                    f"{where}: '{name}.{entity}' must be a string, a number, null or a non-empty list of "
                    f"them; got {json.dumps(value)}"
                )
        filters[name] = dict(query)
    return filters


def _hint(word: str, choices: Collection[str]) -> str:
    import difflib

    close = difflib.get_close_matches(word, sorted(choices), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def pybids_value(value: Any) -> Any:
    """A filter value as pybids takes it: ``None`` → ``Query.NONE``, ``"*"`` → ``Query.ANY``."""
    from bids.layout import Query

    if isinstance(value, list):
        return [pybids_value(item) for item in value]
    if value is None:
        return Query.NONE
    if value == "*":
        return Query.ANY
    return value


def apply_filters(
    queries: Mapping[str, tuple[dict[str, Any], bool]],
    filters: Mapping[str, Mapping[str, Any]] | None = None,
    session_labels: Sequence[str] | None = None,
) -> dict[str, tuple[dict[str, Any], bool]]:
    """Merge filters and session labels into the inputs' queries (the filter wins on a shared key).

    Filter values become pybids values (:func:`pybids_value`).

    Parameters
    ----------
    queries : mapping
        Input name → (pybids query, required), as :func:`~smriflow.bids.inputs.collect_subjects` takes.
    filters : mapping, optional
        From :func:`load_bids_filters`.
    session_labels : sequence of str, optional
        Sessions to take (with or without ``ses-``), for every input whose filter names no session.

    Returns
    -------
    dict
        New queries; the inputs are not modified.

    Examples
    --------
    >>> apply_filters({"t1w": ({"suffix": "T1w"}, True)}, {"t1w": {"acquisition": "mprage"}}, ["ses-1"])
    {'t1w': ({'suffix': 'T1w', 'acquisition': 'mprage', 'session': ['1']}, True)}
    """
    sessions = [label.removeprefix("ses-") for label in session_labels or ()]
    merged = {}
    for name, (query, required) in queries.items():
        extra = (filters or {}).get(name, {})
        query = {**query, **{entity: pybids_value(value) for entity, value in extra.items()}}
        if sessions and "session" not in query:
            query["session"] = list(dict.fromkeys(sessions))
        merged[name] = (query, required)
    return merged
