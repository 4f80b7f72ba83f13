"""Read YAML 1.2 with ruamel.yaml, keeping the line and column of every key and value.

Duplicate keys are rejected (PyYAML silently keeps the last one). The result is plain Python data plus a
:class:`Positions` map from key paths to places in the file, so later validation phases can point at the
exact spot of a mistake.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smriflow.config.errors import Problem, SpecError

KeyPath = tuple[str | int, ...]


@dataclass
class Positions:
    """Where each key and value of a YAML document sits (1-based line, column)."""

    file: str
    keys: dict[KeyPath, tuple[int, int]] = field(default_factory=dict)
    values: dict[KeyPath, tuple[int, int]] = field(default_factory=dict)

    def of_value(self, path: KeyPath) -> tuple[int | None, int | None]:
        """Position of the value at ``path``, or of its nearest ancestor that exists in the file."""
        return self._nearest(path, self.values)

    def of_key(self, path: KeyPath) -> tuple[int | None, int | None]:
        """Position of the key that ends ``path`` (falls back to the value, then to ancestors)."""
        if path in self.keys:
            return self.keys[path]
        return self._nearest(path, self.values)

    def _nearest(self, path: KeyPath, table: dict) -> tuple[int | None, int | None]:
        for cut in range(len(path), -1, -1):
            sub = tuple(path[:cut])
            if sub in table:
                return table[sub]
            if sub in self.keys:
                return self.keys[sub]
        return (1, 1)

    def problem(self, path: KeyPath, message: str, hint: str = "", *, at_key: bool = False) -> Problem:
        """Make a :class:`Problem` located at ``path`` (at its key with ``at_key=True``)."""
        line, col = self.of_key(path) if at_key else self.of_value(path)
        return Problem(self.file, line, col, format_key_path(path), message, hint)


def format_key_path(path: KeyPath) -> str:
    """``("nodes", "n4", "in", 0)`` → ``nodes.n4.in[0]``."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def load_yaml(path: str | Path, *, display_name: str | None = None) -> tuple[Any, Positions]:
    """Parse a YAML file into plain Python data and the positions of its keys and values.

    Parameters
    ----------
    path : str or Path
        The file to read.
    display_name : str, optional
        How the file is named in messages (defaults to ``path`` as given).

    Raises
    ------
    SpecError
        When the file cannot be read, is not valid YAML, or repeats a key.
    """
    name = display_name or str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError([Problem(name, None, None, "", "file not found")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError([Problem(name, None, None, "", f"cannot read the file ({exc})")]) from None
    return loads_yaml(text, name)


def loads_yaml(text: str, name: str = "<string>") -> tuple[Any, Positions]:
    """Like :func:`load_yaml`, from a string."""
    from ruamel.yaml import YAML
    from ruamel.yaml.constructor import DuplicateKeyError
    from ruamel.yaml.error import MarkedYAMLError

    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    try:
        doc = yaml.load(text)
    except DuplicateKeyError as exc:
        mark = exc.problem_mark
        key = _duplicate_key_name(exc)
        raise SpecError(
            [
                Problem(
                    name,
                    mark.line + 1,
                    mark.column + 1,
                    "",
                    f"duplicate key {key!r}" if key else "duplicate key",
                    "Each key may appear once in a mapping.",
                )
            ]
        ) from exc
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (None, None)
        problem = (exc.problem or exc.context or "invalid YAML").strip()
        raise SpecError([Problem(name, line, col, "", f"invalid YAML: {problem}")]) from exc
    positions = Positions(name)
    return _plain(doc, (), positions), positions


def _duplicate_key_name(exc: Exception) -> str | None:
    import re

    match = re.search(r'found duplicate key "([^"]+)"', str(exc))
    return match.group(1) if match else None


def _plain(node: Any, path: KeyPath, positions: Positions) -> Any:
    """Convert ruamel's round-trip containers to dict/list, recording every position on the way."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    if isinstance(node, CommentedMap):
        out = {}
        for key in node:
            child = (*path, str(key))
            kline, kcol = node.lc.key(key)
            vline, vcol = node.lc.value(key)
            positions.keys[child] = (kline + 1, kcol + 1)
            positions.values[child] = (vline + 1, vcol + 1)
            out[str(key)] = _plain(node[key], child, positions)
        return out
    if isinstance(node, CommentedSeq):
        out_list = []
        for index, item in enumerate(node):
            child = (*path, index)
            line, col = node.lc.item(index)
            positions.values[child] = (line + 1, col + 1)
            out_list.append(_plain(item, child, positions))
        return out_list
    # ruamel returns ScalarFloat/ScalarString subclasses in round-trip mode: make them plain.
    if isinstance(node, bool) or node is None:
        return node
    for plain_type in (int, float, str):
        if isinstance(node, plain_type):
            return plain_type(node)
    return node
