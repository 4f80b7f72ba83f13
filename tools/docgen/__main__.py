"""``python -m tools.docgen [PAGE.md ...]``: write the generated pages, graph pictures and blocks."""

from __future__ import annotations

import sys

from . import GENERATED, fill_blocks
from ._common import REPO_ROOT
from .graphs import render_graph_images


def main(argv: list[str] | None = None) -> int:
    """Write the generated pages (all, or those named), the graph pictures and the generated blocks.

    Pages go to the repository's ``docs/``; the graph pictures to ``docs/img/``; the blocks are refreshed
    in ``README.md`` and ``docs/*.md``. Returns the exit code (2 for an unknown page).
    """
    argv = sys.argv[1:] if argv is None else argv
    docs = REPO_ROOT / "docs"
    unknown = [name for name in argv if name not in GENERATED]
    if unknown:
        print(f"unknown page(s) {', '.join(unknown)}; choose among {', '.join(GENERATED)}", file=sys.stderr)
        return 2
    for name in argv or GENERATED:
        (docs / name).write_text(GENERATED[name]())
        print(f"wrote {docs / name}")
    if not argv or "workflows.md" in argv:
        for path in render_graph_images(docs / "img"):
            print(f"wrote {path}")
    for page in [REPO_ROOT / "README.md", *sorted(docs.glob("*.md"))]:
        text = page.read_text()
        filled = fill_blocks(text)
        if filled != text:
            page.write_text(filled)
            print(f"updated the generated blocks of {page}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
