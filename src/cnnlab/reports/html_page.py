"""Building blocks of the self-contained HTML report: escaping, tables, images, the page shell.

Every piece of text goes through ``esc``; every picture is embedded as a ``data:`` URI; the
page carries its own CSS and a Content-Security-Policy that forbids any network request, so it
opens the same from a mail attachment, a CI artefact or a USB stick.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

import cnnlab
from cnnlab.viz.png import encode_png, png_data_uri, scale_for, upscale

CSS = """
:root { --ink:#1d2430; --muted:#5b6573; --line:#dde2ea; --soft:#f5f7fa; --accent:#1f5fbf;
  --good:#1a7f37; --bad:#c62828; --best:#fff1b8; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--ink); background: #fff;
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", Arial, sans-serif; }
main { max-width: 1140px; margin: 0 auto; padding: 24px 28px 56px; }
h1 { font-size: 26px; margin: 0 0 6px; line-height: 1.25; }
h2 { font-size: 20px; margin: 36px 0 10px; padding-bottom: 4px;
  border-bottom: 2px solid var(--line); }
h3 { font-size: 16px; margin: 22px 0 6px; }
p { margin: 6px 0 10px; }
.lead { font-size: 16px; max-width: 75ch; }
.muted, figcaption, .env { color: var(--muted); font-size: 13px; }
nav.toc { background: var(--soft); border: 1px solid var(--line); border-radius: 6px;
  padding: 8px 14px; margin: 14px 0; font-size: 14px; }
nav.toc a { color: var(--accent); text-decoration: none; margin-right: 14px; white-space: nowrap; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; margin: 8px 0 12px; }
table.data th, table.data td { padding: 5px 10px; border-bottom: 1px solid var(--line);
  text-align: left; vertical-align: top; }
table.data th { background: var(--soft); font-size: 13px; font-weight: 600; }
table.data .num { text-align: right; white-space: nowrap; }
table.data tr.best td { background: var(--best); font-weight: 600; }
table.data tr.low td { background: #fdecea; }
.wide { overflow-x: auto; }
.note { border-left: 4px solid #9db4d6; background: var(--soft); padding: 8px 12px;
  margin: 8px 0; font-size: 14px; }
.note.warn { border-left-color: #d99a00; background: #fff7e0; }
ul.notes li { margin: 4px 0; }
figure { margin: 10px 0 16px; }
img.plot { max-width: 100%; height: auto; }
img.px { image-rendering: pixelated; image-rendering: crisp-edges; }
.grid { display: flex; flex-wrap: wrap; gap: 10px 8px; }
.tile { width: 92px; margin: 0; text-align: center; font-size: 11px; line-height: 1.25;
  overflow-wrap: anywhere; }
.tile img { width: 80px; height: 80px; border: 3px solid var(--line); border-radius: 3px; }
.tile.ok img { border-color: var(--good); }
.tile.big { width: 122px; }
.tile.big img { width: 112px; height: 112px; border-width: 1px; }
.tile.bad img { border-color: var(--bad); }
.tile.bad figcaption { color: var(--bad); }
table.cm { font-size: 12px; }
table.cm td { min-width: 30px; height: 26px; text-align: center; border: 1px solid #fff; }
table.cm th { font-weight: 500; font-size: 11px; padding: 2px 4px; }
table.cm th.col { writing-mode: vertical-rl; transform: rotate(180deg); text-align: left;
  max-height: 110px; }
table.cm th.row { text-align: right; white-space: nowrap; }
.legend { display: inline-block; width: 220px; height: 12px; vertical-align: middle;
  border: 1px solid var(--line); }
pre { background: var(--soft); border: 1px solid var(--line); padding: 10px 12px;
  overflow-x: auto; font-size: 12.5px; line-height: 1.4; white-space: pre-wrap; }
code { font-size: 13px; }
section.model { border-top: 1px dashed var(--line); }
.pair { display: flex; flex-wrap: wrap; gap: 0 28px; align-items: flex-start; }
.pair > div { flex: 0 1 auto; min-width: 0; max-width: 100%; }
.pair figure { display: table; }  /* the caption wraps to the picture's width */
.pair figcaption { display: table-caption; caption-side: bottom; }
.kv { columns: 2 360px; }
@media print {
  nav.toc { display: none; }
  body { font-size: 12px; }
  main { max-width: none; padding: 0; }
  section.model { break-before: page; }
  figure, table, .grid, pre { break-inside: avoid; }
  a { color: inherit; text-decoration: none; }
}
"""

# Counts pictures that failed to decode; tests (and curious readers) read the result from
# <body data-images-ok="ok/total">.
SCRIPT = """
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var bad = imgs.filter(function (img) { return !img.complete || img.naturalWidth === 0; });
  document.body.dataset.imagesOk = (imgs.length - bad.length) + "/" + imgs.length;
});
"""

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"


def esc(text: Any) -> str:
    """HTML-escape ``str(text)`` (quotes too, so it is safe inside attributes)."""
    return html.escape(str(text), quote=True)


@dataclass(frozen=True)
class Cell:
    """A table cell: its text, an optional CSS class and an optional hover title."""

    text: Any
    cls: str = ""
    title: str = ""

    def render(self, tag: str = "td") -> str:
        attrs = f' class="{esc(self.cls)}"' if self.cls else ""
        attrs += f' title="{esc(self.title)}"' if self.title else ""
        return f"<{tag}{attrs}>{esc(self.text)}</{tag}>"


def num(text: Any, title: Any = "") -> Cell:
    """A right-aligned numeric cell (``title`` shows the exact value on hover)."""
    return Cell(text, "num", str(title) if title not in (None, "") else "")


def table(
    head: Sequence[Any],
    rows: Iterable[Sequence[Any]],
    *,
    row_classes: Sequence[str] | None = None,
    cls: str = "data",
) -> str:
    """An HTML table; cells are ``Cell`` or plain values (escaped)."""

    def cell(c: Any, tag: str) -> str:
        return (c if isinstance(c, Cell) else Cell(c)).render(tag)

    out = [f'<div class="wide"><table class="{esc(cls)}"><thead><tr>']
    out += [cell(h, "th") for h in head]
    out.append("</tr></thead><tbody>")
    for i, row in enumerate(rows):
        rc = row_classes[i] if row_classes and i < len(row_classes) else ""
        out.append(f'<tr class="{esc(rc)}">' if rc else "<tr>")
        out += [cell(c, "td") for c in row]
        out.append("</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


def img_png(png: bytes, alt: str, *, cls: str = "plot", width: int | None = None) -> str:
    """An ``<img>`` holding ``png`` as a data URI."""
    size = f' width="{int(width)}"' if width else ""
    return f'<img class="{esc(cls)}" alt="{esc(alt)}"{size} src="{png_data_uri(png)}">'


def img_array(image: np.ndarray, alt: str, *, target: int = 64, width: int | None = None) -> str:
    """An ``<img>`` of a uint8 array, upscaled (nearest) so small pictures stay crisp."""
    factor = scale_for(max(image.shape[:2]), target)
    png = encode_png(upscale(image, factor))
    return img_png(png, alt, cls="px", width=width)


def note(text: str, *, warn: bool = False) -> str:
    """A short boxed remark (why a section is empty, a caveat); ``warn`` for problems."""
    return f'<p class="note{" warn" if warn else ""}">{esc(text)}</p>'


def figure(inner: str, caption: str = "") -> str:
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return f"<figure>{inner}{cap}</figure>"


def section(anchor: str, title: str, body: str, *, cls: str = "", level: int = 2) -> str:
    klass = f' class="{esc(cls)}"' if cls else ""
    return f'<section id="{esc(anchor)}"{klass}><h{level}>{esc(title)}</h{level}>{body}</section>'


def toc(entries: Sequence[tuple[str, str]]) -> str:
    """A small table of contents: ``(anchor, title)`` pairs."""
    links = "\n".join(f'<a href="#{esc(a)}">{esc(t)}</a>' for a, t in entries)
    return f'<nav class="toc">{links}</nav>'


def page(title: str, body: str) -> str:
    """The whole document: head with CSS, CSP and the image check, then ``body``."""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="generator" content="cnnlab {esc(cnnlab.__version__)}">'
        f"<title>{esc(title)}</title><style>{CSS}</style>"
        f"<script>{SCRIPT}</script></head>\n"
        f'<body data-images-ok=""><main>\n{body}\n'
        f'<p class="muted">Generated by cnnlab {esc(cnnlab.__version__)}; this page is '
        "self-contained (no network access needed).</p></main></body></html>\n"
    )


def slug(text: str, taken: set[str]) -> str:
    """An HTML id from ``text`` (letters, digits, dashes), unique within ``taken``."""
    base = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "part"
    anchor, k = base, 2
    while anchor in taken:
        anchor, k = f"{base}-{k}", k + 1
    taken.add(anchor)
    return anchor
