"""Every ``smriflow …`` command in README.md and docs/*.md parses with the real parser; the cheap ones run."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from smriflow.cli.main import main, parser_for

REPO = Path(__file__).resolve().parents[2]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
SHELL_FENCES = {"", "bash", "sh", "shell", "console"}  # ```text blocks are outputs
CHEAP = {"list", "validate", "graph", "--version", "--help"}


def _blocks(path: Path) -> list[tuple[int, list[str]]]:
    """(first line number, lines) of every shell code block of a Markdown page."""
    blocks, fence, lines, first = [], None, [], 0
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if line.strip().startswith("```"):
            if fence is None:
                fence, lines, first = line.strip()[3:].strip(), [], number + 1
            else:
                if fence in SHELL_FENCES:
                    blocks.append((first, lines))
                fence = None
            continue
        if fence is not None:
            lines.append(line)
    return blocks


def shell_commands(path: Path) -> list[tuple[int, str, int | None]]:
    """(line number, command, expected exit code) of every ``smriflow`` command in a page's shell blocks.

    In a block that shows prompts (``$ ``), only prompted lines are commands, and a following
    ``$ echo $?`` gives the exit code the page documents (else None). Continuation lines are joined and
    ``&&``-chained commands before ``smriflow`` are dropped.
    """
    found: list[tuple[int, str, int | None]] = []
    for first, lines in _blocks(path):
        prompted = any(line.startswith("$ ") for line in lines)
        pending, start, last = "", 0, None
        for offset, line in enumerate(lines):
            stripped = line.strip()
            if prompted and not pending:
                if stripped == "$ echo $?" and last is not None and offset + 1 < len(lines):
                    found[last] = (*found[last][:2], int(lines[offset + 1].strip()))
                    continue
                if not stripped.startswith("$ "):
                    continue
            if not pending:
                start = first + offset
            pending += " " + stripped.removeprefix("$ ")
            if stripped.endswith("\\"):
                pending = pending[:-1]
                continue
            text, pending = pending.strip(), ""
            for part in re.split(r"\s(?:&&|;)\s", text):
                part = part.strip()
                if re.match(r"smriflow( [\w-]+)*:", part):  # output ("smriflow stats vbm: …"), not a command
                    continue
                if part.startswith("smriflow ") or part == "smriflow":
                    found.append((start, part, None))
                    last = len(found) - 1
    return found


def _is_synopsis(command: str, argv: list[str]) -> bool:
    """A usage line (``[--opt ...]``, ``a|b``, ``FILE...``, a description after wide spaces): not run."""
    if re.search(r"\S {3,}[^\s#]", command):
        return True
    return any(t.startswith("[") or t.endswith(("...", "…")) or ("|" in t and "{" not in t) for t in argv)


CASES = [
    pytest.param(argv, code, id=f"{path.name}:{line}")
    for path in PAGES
    for line, command, code in shell_commands(path)
    if not _is_synopsis(command, argv := shlex.split(command, comments=True))
]


def test_the_pages_hold_commands():
    pages = {case.id.split(":")[0] for case in CASES}
    assert {"README.md", "cli.md", "user-guide.md", "troubleshooting.md"} <= pages
    assert len(CASES) > 30


@pytest.mark.parametrize(("argv", "code"), CASES)
def test_command_parses(argv: list[str], code: int | None):
    try:  # the parser main() would use: the commands', or the BIDS-Apps form's
        parser_for(argv[1:]).parse_args(argv[1:])
    except SystemExit as exc:  # --help / --version exit 0; a usage error exits 2
        assert exc.code == 0, f"`{shlex.join(argv)}` does not parse"


@pytest.mark.parametrize(
    ("argv", "expected"), [c for c in CASES if c.values[0][1:2] and c.values[0][1] in CHEAP]
)
def test_cheap_command_runs(argv: list[str], expected: int | None, tmp_path: Path, monkeypatch, capsys):
    """A cheap command exits with the code its page shows (``$ echo $?``); else 0, or 1 for bad_specs."""
    argv = list(argv[1:])
    if argv[0] == "graph":  # write the picture into the test's folder
        out = argv.index("-o") + 1
        argv[out] = str(tmp_path / Path(argv[out]).name)
    if expected is None:  # validating the corpus of wrong files fails, as the pages show
        expected = 1 if any("bad_specs" in a for a in argv) else 0
    monkeypatch.chdir(REPO)
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    assert code == expected, capsys.readouterr()


def test_readme_test_command_is_what_ci_runs():
    readme = (REPO / "README.md").read_text()
    assert "python -m pytest -n 2 --dist loadgroup" in readme
    assert "\npython -m pytest -n 2 --dist loadgroup\n" in (REPO / ".ci" / "run").read_text()
    assert "pip install -e . && smriflow demo" in readme


def test_readme_embedding_example_runs(tmp_path: Path, synthetic_t1w: Path):
    """README.md's Python block runs as written, given T1W and WORK_DIR."""
    block = re.search(r"```python\n(.*?)```", (REPO / "README.md").read_text(), re.S).group(1)
    namespace = {"T1W": str(synthetic_t1w), "WORK_DIR": str(tmp_path / "work")}
    exec(compile(block, "README.md", "exec"), namespace)
    stats = list((tmp_path / "work").rglob("*_stats.json"))
    assert len(stats) == 1 and json.loads(stats[0].read_text())["voxels"] > 0
