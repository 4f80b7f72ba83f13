"""Compare two smriflow derivative folders made by the same command: every file byte for byte.

Used by ``containers/ci.sh`` on the derivatives of one ``smriflow run`` outside and inside the container::

    python containers/compare_derivatives.py OUTSIDE INSIDE

Prints one line per difference and exits 1 when there is any, else prints a summary and exits 0. Two
things legitimately differ and are compared as follows:

- ``logs/run-<date>-<time>.{json,log}``: the run log, named after the time the run started, holding its
  times and durations. Each side must hold the same number of them; their contents are not compared.
- ``dataset_description.json``: ``GeneratedBy[].Workflow.Spec`` and ``GeneratedBy[].ExecutionConfig.Source``
  record where the packaged YAML files were read: the checkout outside (an editable install), the
  installed package inside. Those two values must name the same file (``anat_preproc.yml``,
  ``local.yml``); the rest of the file must be equal.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

RUN_LOG = re.compile(r"logs/run-\d{8}-\d{6}\.(json|log)")
DESCRIPTION = "dataset_description.json"


def _files(root: Path) -> set[str]:
    return {path.relative_to(root).as_posix() for path in root.rglob("*") if path.is_file()}


def _located(description: dict) -> list[str]:
    """The values of ``description`` that record where a packaged file was read (set to its file name)."""
    found = []
    for generated in description.get("GeneratedBy", []):
        for section, key in (("Workflow", "Spec"), ("ExecutionConfig", "Source")):
            record = generated.get(section, {})
            if isinstance(record.get(key), str):
                found.append(record[key])
                record[key] = Path(record[key]).name
    return found


def compare(outside: Path, inside: Path) -> list[str]:
    """Return the differences between two derivative folders (empty when they are equal)."""
    problems = []
    left, right = _files(outside), _files(inside)
    logs = [sorted(name for name in files if RUN_LOG.fullmatch(name)) for files in (left, right)]
    if len(logs[0]) != len(logs[1]):
        problems.append(f"run logs: {len(logs[0])} outside, {len(logs[1])} inside")
    left -= set(logs[0])
    right -= set(logs[1])
    problems += [f"only outside: {name}" for name in sorted(left - right)]
    problems += [f"only inside: {name}" for name in sorted(right - left)]
    for name in sorted(left & right):
        a, b = (outside / name).read_bytes(), (inside / name).read_bytes()
        if a == b:
            continue
        if Path(name).name == DESCRIPTION:
            da, db = json.loads(a), json.loads(b)
            where = (_located(da), _located(db))
            if da == db:
                continue  # only the packaged files' locations differ (their names are equal)
            problems.append(f"differs: {name} (beyond the packaged files' locations {where})")
            continue
        problems.append(f"differs: {name}")
    return problems


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python containers/compare_derivatives.py OUTSIDE INSIDE", file=sys.stderr)
        return 2
    outside, inside = map(Path, argv)
    for folder in (outside, inside):
        if not folder.is_dir():
            print(f"compare_derivatives: {folder}: no such folder", file=sys.stderr)
            return 2
    problems = compare(outside, inside)
    for problem in problems:
        print(f"compare_derivatives: {problem}", file=sys.stderr)
    if problems:
        return 1
    compared = len(_files(inside)) - sum(1 for name in _files(inside) if RUN_LOG.fullmatch(name))
    print(f"compare_derivatives: {compared} files equal (run logs excepted)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
