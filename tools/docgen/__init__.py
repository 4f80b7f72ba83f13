"""Generate smriflow's reference pages from the code: ``python -m tools.docgen [PAGE.md ...]``.

Run from the repository root. It rewrites the pages of :data:`GENERATED` in ``docs/``, the graph pictures in
``docs/img/`` and the generated blocks of ``README.md`` and ``docs/*.md``; ``tests/docs`` fails when any of
them is out of date. The generator lives outside the wheel and reads the code through the engine's own
functions: the interface registry, the workflow loader, ``$arg`` substitution and the derivative names.

* :mod:`.reference`: the YAML and execution-config references (pydantic models);
* :mod:`.interfaces`: the interface catalogue;
* :mod:`.workflows` and :mod:`.graphs`: the workflow catalogue, derivative names and graph pictures;
* :mod:`.troubleshooting`: real CLI messages and the bad-spec corpus;
* :mod:`.blocks`: the derivatives table and the methods text inside hand-written pages.
"""

from __future__ import annotations

from collections.abc import Callable

from .blocks import BLOCKS, block_pattern, fill_blocks
from .interfaces import render_interfaces
from .reference import render_execution_reference, render_workflow_reference
from .troubleshooting import render_troubleshooting
from .workflows import render_workflows

__all__ = ["BLOCKS", "GENERATED", "block_pattern", "fill_blocks"]

#: Each generated page of ``docs/`` and what writes it.
GENERATED: dict[str, Callable[[], str]] = {
    "yaml-reference.md": render_workflow_reference,
    "execution-reference.md": render_execution_reference,
    "interfaces.md": render_interfaces,
    "workflows.md": render_workflows,
    "troubleshooting.md": render_troubleshooting,
}
