"""HTML building blocks shared by the subject and the group reports: page, styles, images, marked blocks.

Reports are single self-contained files: images are ``data:`` URIs or inline SVG, the style sheet and the
few lines of script are inline, nothing is fetched (no network, works from ``file://``).

Blocks that the group step rewrites (the IQM table, the QC verdict, the methods) sit between HTML comments
``<!-- smriflow:<name>:begin -->`` and ``<!-- smriflow:<name>:end -->``; :func:`replace_block` swaps them.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Iterable, Sequence

__all__ = [
    "BLOCKS",
    "block",
    "escape",
    "figure",
    "page",
    "replace_block",
    "section",
    "svg_data_uri",
    "svg_img",
    "svg_inline",
    "table",
]

#: names of the marked blocks a subject report holds (in this order)
BLOCKS = ("verdict", "iqms", "methods")

_STYLE = """
:root { --fg: #1d1d1f; --muted: #5f6368; --line: #d9d9de; --accent: #0b57d0; --bad: #c5221f;
        --warn: #a15c00; --ok: #137333; }
* { box-sizing: border-box; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg);
       margin: 0; background: #fafafa; }
nav { position: sticky; top: 0; background: #fff; border-bottom: 1px solid var(--line); padding: .5em 1.5em;
      z-index: 2; display: flex; flex-wrap: wrap; gap: .2em 1.2em; }
nav a { color: var(--accent); text-decoration: none; font-size: .9em; }
nav b { margin-right: 1em; }
main { max-width: 1060px; margin: 0 auto; padding: 0 1.5em 3em; }
section { background: #fff; border: 1px solid var(--line); border-radius: 6px; margin: 1.2em 0;
          padding: .8em 1.2em; }
h1 { font-size: 1.5em; margin: .8em 0 .2em; } h2 { font-size: 1.15em; margin: .2em 0 .5em; }
p.how, p.caption { color: var(--muted); font-size: .9em; margin: .3em 0 .6em; }
figure { margin: .4em 0; } figure img { width: 100%; height: auto; display: block; }
table { border-collapse: collapse; font-size: .88em; margin: .4em 0; }
th, td { border-bottom: 1px solid var(--line); padding: .2em .7em; text-align: left; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.bad { color: var(--bad); } .warn { color: var(--warn); } .ok { color: var(--ok); }
.badge { display: inline-block; padding: .05em .6em; border-radius: 1em; font-size: .85em; color: #fff; }
.badge.bad { background: var(--bad); color: #fff; } .badge.ok { background: var(--ok); color: #fff; }
.badge.none { background: #888; }
.flicker { position: relative; }
.flicker img.top { position: absolute; left: 0; top: 0;
                   animation: smriflow-flicker 2s steps(1, end) infinite; }
.flicker:hover img.top { animation-play-state: paused; }
@keyframes smriflow-flicker { 0% { opacity: 1; } 50% { opacity: 0; } }
.legend span { display: inline-block; width: .9em; height: .9em; border-radius: 2px; margin: 0 .3em 0 1em;
               vertical-align: -.1em; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(300px, 1fr)); gap: .6em; }
.grid figure { border: 1px solid var(--line); border-radius: 4px; padding: .2em; margin: 0; }
.grid svg { width: 100%; height: auto; }
.methods { font-size: .92em; } .methods li { margin: .2em 0; }
"""


def escape(value: object) -> str:
    """HTML-escape ``str(value)`` (quotes included)."""
    return html.escape(str(value), quote=True)


def svg_data_uri(svg: str) -> str:
    """An SVG document as a ``data:image/svg+xml;base64,...`` URI."""
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode("utf-8")).decode("ascii")


def svg_img(svg: str, alt: str, *, css_class: str | None = None) -> str:
    """An ``<img>`` showing an SVG document, inlined as a data URI."""
    cls = f' class="{escape(css_class)}"' if css_class else ""
    return f'<img{cls} alt="{escape(alt)}" src="{svg_data_uri(svg)}">'


def svg_inline(svg: str) -> str:
    """An SVG document ready to inline in HTML: the XML declaration, DOCTYPE and comments removed."""
    svg = re.sub(r"<\?xml[^>]*\?>", "", svg)
    svg = re.sub(r"<!DOCTYPE[^>]*>", "", svg, flags=re.S)
    svg = re.sub(r"<!--.*?-->", "", svg, flags=re.S)
    return svg.strip()


def table(header: Sequence[str], rows: Iterable[Sequence[str]], *, numeric: Sequence[bool] = ()) -> str:
    """An HTML table; cells are inserted as given (escape them first), ``numeric`` columns right-aligned."""
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            cls = ' class="num"' if i < len(numeric) and numeric[i] else ""
            cells.append(f"<td{cls}>{cell}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def section(anchor: str, title: str, how: str, content: str) -> str:
    """A report section: ``<section id=anchor>``, its title, a line on how to read it (HTML), the content."""
    return f'<section id="{anchor}"><h2>{escape(title)}</h2><p class="how">{how}</p>{content}</section>'


def figure(svg: str, alt: str, caption: str = "") -> str:
    """A figure showing an SVG document (inlined as a data URI), with an optional caption (HTML)."""
    cap = f'<p class="caption">{caption}</p>' if caption else ""
    return f"<figure>{svg_img(svg, alt)}{cap}</figure>"


def block(name: str, content: str) -> str:
    """``content`` between the markers of block ``name``."""
    return f"<!-- smriflow:{name}:begin -->\n{content}\n<!-- smriflow:{name}:end -->"


def replace_block(document: str, name: str, content: str) -> str:
    """Replace the content of block ``name`` in ``document``.

    Raises
    ------
    ValueError
        When the document does not hold the block exactly once.
    """
    pattern = re.compile(
        rf"<!-- smriflow:{re.escape(name)}:begin -->.*?<!-- smriflow:{re.escape(name)}:end -->", re.S
    )
    found = pattern.findall(document)
    if len(found) != 1:
        raise ValueError(
            f"the report holds {len(found)} '{name}' blocks, expected 1 (not a smriflow report?)"
        )
    return pattern.sub(lambda _: block(name, content), document)


def page(title: str, nav: Sequence[tuple[str, str]], body: str, *, script: str = "") -> str:
    """A complete HTML document: title, a sticky navigation bar of ``(anchor, label)`` and the body."""
    links = "".join(f'<a href="#{escape(anchor)}">{escape(label)}</a>' for anchor, label in nav)
    script_tag = f"<script>{script}</script>" if script else ""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
        f"<nav><b>{escape(title)}</b>{links}</nav>\n<main>\n{body}\n</main>\n{script_tag}\n</body>\n</html>\n"
    )
