"""Where ``smriflow run`` writes each output of a workflow: one home for the derivative names.

The runner (:mod:`smriflow.engine.derivatives`) gives each ``bids:`` output's sink the entities of
:func:`output_entities`, and each ``path:`` output's publisher the path of :func:`output_path`; the
documentation generator (``tools/docgen``) names the same files with :func:`derivative_path`, which builds
the name with the sink's own path patterns (:data:`smriflow.interfaces.bids.FILE_PATTERNS`) through
pybids' ``build_path``, the call niworkflows' sink makes. ``tests/docs`` runs the real sinks and checks
that the names agree.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from smriflow.config.spec import OutputSpec
from smriflow.engine.values import substitute

__all__ = ["derivative_path", "mapped_items", "output_entities", "output_path"]

#: The extension of an output whose ``bids:`` names none: the compressed NIfTI images the nodes make.
DEFAULT_EXTENSION = ".nii.gz"


def output_entities(out: OutputSpec, args: Mapping[str, Any]) -> dict[str, Any]:
    """The entities given to an output's sink: its ``bids:`` mapping with the ``$arg`` values replaced.

    Empty when the output has no ``bids:`` (it is not written by a sink).
    """
    return substitute(dict(out.bids or {}), dict(args))


def mapped_items(out: OutputSpec, entities: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    """The entities of each item of an output with ``map_over`` (``None`` for any other output).

    ``entities`` are the output's (:func:`output_entities`). Item *i* takes the *i*-th value of each
    ``map_over`` entity, and leaves out one whose value is ``None``; the other entities are shared.

    Raises
    ------
    ValueError
        When the ``map_over`` entities are not lists of one length (naming them).

    Examples
    --------
    >>> from smriflow.config.spec import OutputSpec
    >>> out = OutputSpec.model_validate(
    ...     {"from": "a.b", "bids": {"space": "$s", "resolution": "$r", "suffix": "T1w"},
    ...      "map_over": ["space", "resolution"]})
    >>> mapped_items(out, {"space": ["A", "B"], "resolution": [2, None], "suffix": "T1w"})
    [{'suffix': 'T1w', 'space': 'A', 'resolution': 2}, {'suffix': 'T1w', 'space': 'B'}]
    """
    if not out.map_over:
        return None
    values = {key: entities[key] for key in out.map_over}
    lengths = {len(value) if isinstance(value, list) else -1 for value in values.values()}
    if len(lengths) != 1 or -1 in lengths:
        shown = ", ".join(f"{key}={value!r}" for key, value in values.items())
        raise ValueError(f"the entities an output maps over must be lists of one length; got {shown}")
    shared = {key: value for key, value in entities.items() if key not in values}
    return [
        {**shared, **{key: value[i] for key, value in values.items() if value[i] is not None}}
        for i in range(lengths.pop())
    ]


def output_path(
    out: OutputSpec, args: Mapping[str, Any], *, subject: str = "", session: str = ""
) -> str | None:
    """The path a ``path:`` output is published to, relative to the output folder (``None``: no ``path:``).

    ``$arg`` values are replaced by ``args``, then ``{subject}`` and ``{session}`` by the labels given. A
    path ending in ``/`` is a folder that receives the files the workflow names.
    """
    path = substitute(out.path, dict(args))
    return None if path is None else path.format(subject=subject, session=session)


def derivative_path(
    entities: Mapping[str, Any], *, subject: str, session: str | None = None, datatype: str = "anat"
) -> str | list[str]:
    """The file the derivatives sink writes for ``entities``, relative to the output folder.

    Parameters
    ----------
    entities : mapping
        An output's entities (:func:`output_entities`); without ``extension``, :data:`DEFAULT_EXTENSION`.
        A list value names one file per item, as the sink writes one file per input file.
    subject, session : str
        The labels the sink takes from the source file (without ``sub-``/``ses-``).
    datatype : str
        The source file's datatype (a T1w's: ``anat``), kept unless ``entities`` sets one: the sink takes
        it from the source file too, and it chooses the path pattern.

    Returns
    -------
    str or list of str
        One path, or one per item of a list-valued entity.

    Examples
    --------
    >>> derivative_path({"desc": "brain", "suffix": "mask"}, subject="01")
    'sub-01/anat/sub-01_desc-brain_mask.nii.gz'
    >>> derivative_path({"atlas": "aal", "suffix": "volumes", "extension": ".tsv"}, subject="01", session="a")
    'sub-01/ses-a/anat/sub-01_ses-a_atlas-aal_volumes.tsv'
    """
    from bids.layout.writing import build_path

    from smriflow.interfaces.bids import FILE_PATTERNS

    full = {"subject": subject, "datatype": datatype, "extension": DEFAULT_EXTENSION, **entities}
    if session:
        full["session"] = session
    return build_path(full, path_patterns=list(FILE_PATTERNS))  # the last pattern takes any suffix
