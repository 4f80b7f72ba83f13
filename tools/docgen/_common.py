"""What the page generators share: the repository, the packaged workflow files, Markdown cells."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

from smriflow.engine.loading import LoadedSpec, load_spec
from smriflow.engine.registry import UnresolvedReference, packaged_workflows, resolve_workflow
from smriflow.engine.values import default_args

REPO_ROOT = Path(__file__).resolve().parents[2]
#: The command that rebuilds the generated pages, as the pages and the test messages name it.
COMMAND = "python -m tools.docgen"


@cache
def packaged_specs() -> dict[str, LoadedSpec]:
    """Every packaged workflow file, by name (file stem), read by the engine's loader (syntax and schema)."""
    return {name: load_spec(path) for name, path in packaged_workflows().items()}


def nested_spec(ref: str, parent: LoadedSpec) -> LoadedSpec | None:
    """The YAML workflow a ``workflow:`` value of ``parent`` names, as the engine resolves it.

    ``None`` for a Python factory (drawn and described as one box).
    """
    try:
        target = resolve_workflow(ref, relative_to=parent.path)
    except UnresolvedReference:
        return None
    return load_spec(target) if isinstance(target, Path) else None


def doc_args(loaded: LoadedSpec) -> dict[str, Any]:
    """The argument values the pages show: each default, or ``<name>`` for a list, a required argument
    or a value filled by the run (an output folder)."""
    shown: dict[str, Any] = {name: f"<{name}>" for name in loaded.all_args()}
    shown.update({k: v for k, v in default_args(loaded).items() if not isinstance(v, list)})
    return shown


def cell(text: Any) -> str:
    """One Markdown table cell: one line, pipes escaped, reST roles and literals as Markdown code."""
    text = re.sub(r":[\w:]+:`~?([^`]+)`", r"`\1`", " ".join(str(text).split()))
    return text.replace("``", "`").replace("|", "\\|")
