"""README's derivatives table as data: which files it says ``anat_preproc`` writes, for the tests that compare
it with the files the sinks (tests/docs) and a real run (tests/workflows) write."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def documented_files() -> dict[str, str]:
    """README's derivatives table: output port → documented file name (with placeholders)."""
    block = re.search(
        r"<!-- BEGIN generated: anat_preproc-derivatives -->\n(.*?)<!-- END generated -->",
        README.read_text(),
        re.S,
    )
    assert block, "README.md has no derivatives table"
    rows = re.findall(r"^\| `([^`]+)` \| `(\w+)` \|", block.group(1), re.M)
    return {port: name for name, port in rows}


def expand(name: str, label: str, lists: dict[str, list]) -> set[str]:
    """The files a documented name stands for: ``<label>`` the subject; ``{a,b}`` and ``<list arg>`` each
    of their items."""
    parts = re.split(r"(\{[^}]+\}|<\w+>)", name.replace("<label>", label))
    options = [
        part[1:-1].split(",") if part.startswith("{") else [str(v) for v in lists[part[1:-1]]]
        for part in parts[1::2]
    ]
    return {
        "".join(itertools.chain.from_iterable(itertools.zip_longest(parts[::2], combo, fillvalue="")))
        for combo in itertools.product(*options)
    }


def data_files(folder: Path, files: set[Path] | None = None) -> set[str]:
    """The files under ``folder`` (or the given ones) without the JSON sidecars of other files, relative."""
    files = {p for p in folder.rglob("*") if p.is_file()} if files is None else files
    stems = {(p.parent, p.name.split(".")[0]) for p in files if p.suffix != ".json"}
    return {
        p.relative_to(folder).as_posix()
        for p in files
        if not (p.suffix == ".json" and (p.parent, p.name.split(".")[0]) in stems)
    }
