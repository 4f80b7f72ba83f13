"""Say pydantic's validation errors in smriflow's words.

Both configuration files (workflow specs and execution configs) are validated by pydantic models, and
users must never see pydantic's own text. :func:`issue_from_error` turns one pydantic error into an
:class:`Issue` (a key path, a message and a hint) that the caller then places in its file.
"""

from __future__ import annotations

import re
import typing
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from smriflow.config.errors import did_you_mean
from smriflow.config.loader import KeyPath

_TYPE_WORDS = {
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "string_type": "must be text",
    "path_type": "must be a path",
    "list_type": "must be a list",
    "model_type": "must be a mapping of keys to values",
    "model_attributes_type": "must be a mapping of keys to values",
    "dict_type": "must be a mapping of keys to values",
}
_YAML11_BOOLS = {"yes", "no", "on", "off", "y", "n", "true", "false", "1", "0"}
_BOUND_WORDS = {
    "greater_than": ("gt", "must be greater than"),
    "greater_than_equal": ("ge", "must be at least"),
    "less_than": ("lt", "must be less than"),
    "less_than_equal": ("le", "must be at most"),
}


@dataclass(frozen=True)
class Issue:
    """A problem at a key path, before it is placed in a file or on the command line."""

    path: KeyPath
    message: str
    hint: str = ""
    at_key: bool = False


def describe(value: Any) -> str:
    """How a YAML value is named in a message."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return repr(value) if isinstance(value, str) else str(value)


def model_at(model: type[BaseModel] | None, path: KeyPath) -> type[BaseModel] | None:
    """The model class that validates the mapping at ``path`` below ``model``.

    Follows nested models and the values of ``dict[str, Model]`` fields (``nodes.<name>`` → NodeSpec).
    """
    parts = list(path)
    while parts and model is not None:
        field = model.model_fields.get(str(parts.pop(0)))
        annotation = field.annotation if field else None
        if typing.get_origin(annotation) is dict:
            if not parts:
                return None  # the mapping itself: its keys are free names
            parts.pop(0)
            annotation = typing.get_args(annotation)[1]
        model = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    return model


def allowed_keys(model: type[BaseModel] | None) -> list[str]:
    """The keys a model accepts, as written in YAML (aliases)."""
    return [field.alias or name for name, field in model.model_fields.items()] if model else []


def issue_from_error(error: dict[str, Any], root: type[BaseModel], loc: KeyPath | None = None) -> Issue:
    """Turn one pydantic error into our own words.

    Parameters
    ----------
    error : dict
        One item of ``ValidationError.errors()``.
    root : type of BaseModel
        The model that validated the whole document (to find the keys allowed where one is unknown).
    loc : tuple, optional
        The error's location as a key path of the document, when the caller has cleaned pydantic's
        (which may contain union tags); defaults to ``error["loc"]``.
    """
    loc = tuple(error["loc"]) if loc is None else loc
    kind, value, ctx = error["type"], error.get("input"), error.get("ctx") or {}
    if kind == "extra_forbidden":
        key = str(loc[-1])
        return Issue(
            loc, f"unknown key {key!r}", did_you_mean(key, allowed_keys(model_at(root, loc[:-1]))), True
        )
    if kind == "missing":
        return Issue(loc[:-1], f"missing required key {loc[-1]!r}", at_key=True)
    if kind == "literal_error":
        choices = re.findall(r"'([^']*)'|(\d+)", str(ctx.get("expected", "")))
        choices = [quoted or number for quoted, number in choices]
        hint = did_you_mean(str(value), choices, list_all=False)
        return Issue(loc, f"must be one of {', '.join(choices)}; got {describe(value)}", hint)
    if kind in _BOUND_WORDS:
        bound_key, words = _BOUND_WORDS[kind]
        bound = ctx.get(bound_key)
        if isinstance(bound, float) and bound.is_integer():
            bound = int(bound)
        return Issue(loc, f"{words} {bound}; got {describe(value)}")
    if kind in _TYPE_WORDS:
        hint = ""
        if kind.startswith("bool") and str(value).lower() in _YAML11_BOOLS:
            hint = "YAML 1.2 booleans are only true and false; other words are text."
        return Issue(loc, f"{_TYPE_WORDS[kind]}; got {describe(value)}", hint)
    if kind == "value_error":
        return Issue(loc, str(ctx.get("error", "invalid value")))
    # Anything else: pydantic's wording, reshaped as ours ("Input should be x" -> "must be x").
    words = re.sub(r"^Input should be", "must be", str(error.get("msg", "invalid value")))
    return Issue(loc, f"{words[:1].lower()}{words[1:]}; got {describe(value)}")
