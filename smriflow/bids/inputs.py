"""Collecting each subject's input files from a BIDS dataset with pybids, one unit per session.

:func:`collect_subjects` runs a workflow's input queries (after :func:`smriflow.bids.filters.apply_filters`)
and returns one :class:`SubjectFiles` per subject: its files per session, or why it cannot run. The runner of
``smriflow run`` (:mod:`smriflow.engine.run`) plans a subject workflow for each; a dataset that cannot be
used as asked raises :class:`BIDSInputError`, an invalid query :class:`BIDSQueryError`.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["BIDSInputError", "BIDSQueryError", "SubjectFiles", "collect_subjects"]


class BIDSInputError(ValueError):
    """The dataset cannot be used as asked (no subjects, unknown labels); the message is one line."""


class BIDSQueryError(ValueError):
    """An input's pybids query is invalid (e.g. an unknown entity).

    Attributes ``input_name`` and ``key`` locate the mistake in the workflow file; ``choices`` lists the
    valid keys (for a did-you-mean hint).
    """

    def __init__(self, input_name: str, key: str, message: str, choices: Sequence[str] = ()):
        super().__init__(message)
        self.input_name, self.key, self.message, self.choices = input_name, key, message, list(choices)


@dataclass
class SubjectFiles:
    """The input files of one subject, per session (``None`` when the files have no session).

    ``problem`` says why the subject cannot run (a required input without a file, or with several).
    """

    label: str
    units: dict[str | None, dict[str, str | list[str]]] = field(default_factory=dict)
    problem: str | None = None


def collect_subjects(
    bids_dir: str | os.PathLike,
    queries: Mapping[str, tuple[dict[str, Any], bool]],
    participant_labels: Sequence[str] | None = None,
    *,
    many: Collection[str] = (),
    merge_sessions: bool = False,
) -> list[SubjectFiles]:
    """Find each subject's input files with pybids (offline; the dataset is not validated).

    Parameters
    ----------
    bids_dir : path
        The BIDS dataset.
    queries : mapping
        Input name → (pybids query, required), e.g. ``{"t1w": ({"suffix": "T1w"}, True)}``.
    participant_labels : sequence of str, optional
        Labels with or without ``sub-``; default: every subject.
    many : collection of str
        Inputs that take every matching file of a unit, as a sorted list (e.g. several T1w runs).
    merge_sessions : bool
        One unit per subject (session ``None``) holding the files of all its sessions
        (``smriflow run --longitudinal``).

    Returns
    -------
    list of SubjectFiles
        In the order asked (sorted when all subjects are taken). Each session of a subject is a unit, and
        every unit must have exactly one file per required input (at least one for those in ``many``).

    Raises
    ------
    BIDSInputError
        No subjects, or labels that are not in the dataset (all of them named, with the available ones).
    BIDSQueryError
        A query uses an entity pybids does not know.
    """
    from bids import BIDSLayout

    layout = BIDSLayout(str(bids_dir), validate=False)
    available = sorted(layout.get_subjects())
    if not available:
        raise BIDSInputError(f"no subjects (sub-* folders) found in BIDS dataset {bids_dir}")
    if participant_labels:
        labels = list(dict.fromkeys(label.removeprefix("sub-") for label in participant_labels))
        unknown = [label for label in labels if label not in available]
        if unknown:
            quoted = ", ".join(f"'{label}'" for label in unknown)
            noun = "label" if len(unknown) == 1 else "labels"
            raise BIDSInputError(
                f"participant {noun} {quoted} not found in BIDS dataset {bids_dir}. "
                f"Available: {', '.join(available)}"
            )
    else:
        labels = available
    entities = sorted(layout.get_entities())
    for name, (query, _) in queries.items():
        for key in query:
            if key not in entities:
                raise BIDSQueryError(name, key, f"'{key}' is not a BIDS entity", entities)
    return [_subject_files(layout, label, queries, many, merge_sessions) for label in labels]


def _subject_files(
    layout: Any,
    label: str,
    queries: Mapping[str, tuple[dict[str, Any], bool]],
    many: Collection[str],
    merge_sessions: bool,
) -> SubjectFiles:
    found: dict[str, dict[str | None, list[str]]] = {}
    for name, (query, _) in queries.items():
        per_session: dict[str | None, list[str]] = {}
        for item in layout.get(subject=label, return_type="object", **query):
            session = None if merge_sessions else item.entities.get("session")
            per_session.setdefault(session, []).append(item.path)
        found[name] = per_session
    sessions = sorted(
        {session for name, (_, required) in queries.items() if required for session in found[name]}
        or {session for per_session in found.values() for session in per_session},
        key=lambda session: (session is not None, session or ""),
    )
    subject = SubjectFiles(label)
    problems = []
    for session in sessions:
        where = "" if session is None else f" in session '{session}'"
        files = {}
        for name, (query, required) in queries.items():
            matches = sorted(found[name].get(session, []))
            if matches and name in many:
                files[name] = matches
            elif len(matches) == 1:
                files[name] = matches[0]
            elif len(matches) > 1:
                names = ", ".join(Path(path).name for path in matches)
                scope = "subject" if merge_sessions else "subject and session"
                problems.append(
                    f"{len(matches)} files match input '{name}'{where} ({names}); smriflow takes one "
                    f"file per {scope}: narrow the input's 'bids' query (e.g. add run: 1)"
                )
            elif required:
                problems.append(f"no file matches required input '{name}' ({_describe_query(query)}){where}")
        subject.units[session] = files
    if not sessions:
        required = [name for name, (_, req) in queries.items() if req] or list(queries)
        problems += [
            f"no file matches required input '{name}' ({_describe_query(queries[name][0])})"
            for name in required
        ]
    if problems:
        subject.problem = "; ".join(problems)
        subject.units = {}
    return subject


def _describe_query(query: Mapping[str, Any]) -> str:
    def value(item: Any) -> str:
        return "[" + ", ".join(map(str, item)) + "]" if isinstance(item, list) else str(item)

    return ", ".join(f"{key}={value(item)}" for key, item in query.items())
