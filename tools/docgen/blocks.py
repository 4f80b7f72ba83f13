"""Generated blocks inside hand-written pages: the derivatives table (README.md) and the methods text.

A block sits between ``<!-- BEGIN generated: KEY -->`` and ``<!-- END generated -->``; the markers stay in
the page and only what is between them is rewritten.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from smriflow.engine.loading import LoadedSpec

from ._common import nested_spec, packaged_specs
from .workflows import render_derivatives_table


def render_methods(name: str = "anat_preproc") -> str:
    """The methods text of a packaged workflow: its ``doc`` then those of its nested workflows, in order."""

    def texts(loaded: LoadedSpec) -> list[str]:
        found = [" ".join(loaded.spec.doc.split())]
        for node in loaded.spec.nodes.values():
            child = nested_spec(node.workflow, loaded) if node.workflow else None
            if child is not None:
                found += texts(child)
        return found

    return "\n\n".join(texts(packaged_specs()[name])) + "\n"


#: Each block's key and what fills it.
BLOCKS: dict[str, Callable[[], str]] = {
    "anat_preproc-derivatives": render_derivatives_table,
    "anat_preproc-methods": render_methods,
}


def block_pattern(key: str) -> re.Pattern[str]:
    """The pattern of one generated block (its markers stay in the page)."""
    return re.compile(rf"(<!-- BEGIN generated: {re.escape(key)} -->\n)(.*?)(<!-- END generated -->)", re.S)


def fill_blocks(text: str) -> str:
    """``text`` with every generated block rewritten."""
    for key, render in BLOCKS.items():
        text = block_pattern(key).sub(lambda m, r=render: m.group(1) + r() + m.group(3), text)
    return text
