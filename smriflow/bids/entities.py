"""The entities of a derivative's name: which an output may set, how BIDS spells them, and that none was lost.

An output's ``bids:`` mapping in a workflow file may set the entities of :data:`OUTPUT_ENTITIES` (besides
``suffix`` and ``extension``): :mod:`smriflow.engine.derivatives` checks the workflow files against them.
The datasink (:class:`smriflow.interfaces.bids.DerivativesDataSink`) names each file with its path patterns
and refuses a name from which a pattern dropped an entity that was asked for (:func:`dropped_entities`).
"""

from __future__ import annotations

from typing import Any

from smriflow.utils.niftiio import split_ext

__all__ = ["ENTITY_KEYS", "NIFTI_EXTENSIONS", "OUTPUT_ENTITIES", "dropped_entities"]

#: Entities an output's ``bids:`` mapping may set (besides ``suffix`` and ``extension``); the sink's file
#: patterns know them all. ``subject`` and ``session`` always come from the source file.
OUTPUT_ENTITIES = frozenset(
    {"acquisition", "ceagent", "reconstruction", "run", "space", "cohort", "resolution", "density"}
    | {"label", "desc", "hemi", "from", "to", "mode", "atlas", "datatype"}
)
NIFTI_EXTENSIONS = (".nii.gz", ".nii")

#: BIDS key of each entity an output may set (the file name spells them so).
ENTITY_KEYS = {
    "acquisition": "acq",
    "ceagent": "ce",
    "reconstruction": "rec",
    "run": "run",
    "hemi": "hemi",
    "from": "from",
    "to": "to",
    "mode": "mode",
    "space": "space",
    "cohort": "cohort",
    "resolution": "res",
    "density": "den",
    "atlas": "atlas",
    "label": "label",
    "desc": "desc",
}


def dropped_entities(file_name: str, entities: dict[str, Any]) -> list[str]:
    """Entities that were asked for but do not appear in ``file_name`` (a path pattern dropped them).

    Examples
    --------
    >>> dropped_entities("sub-01_desc-brain_mask.nii.gz", {"desc": "brain", "atlas": "aal"})
    ['atlas']
    """
    stem, _ = split_ext(file_name)
    parts = set(stem.split("_"))
    return [key for key, value in entities.items() if f"{ENTITY_KEYS[key]}-{value}" not in parts]
