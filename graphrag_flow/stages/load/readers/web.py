"""HTML text with selectolax (the lexbor engine): the page's main text, without scripts, styles,
navigation, headers, footers, sidebars and forms; `<main>` or `<article>` when the page has one.

Block elements (paragraphs, headings, list items, table cells) become lines of their own;
inline ones (links, emphasis) stay within their line. The encoding: a byte-order mark, else
the page's own `<meta charset>`, else UTF-8, else Windows-1252 (what browsers assume).
"""

from __future__ import annotations

import codecs
import re

from selectolax.lexbor import LexborHTMLParser

from graphrag_flow.config import InputSettings
from graphrag_flow.stages.load.readers import Extracted, Extraction, Unreadable

_NOT_CONTENT = "script, style, noscript, template, nav, aside, form, svg, iframe, button, select"
#: The page's banner and footer; inside <main> or <article>, <header> holds the article's heading.
_PAGE_FRAME = "header, footer"
_BLOCKS = ("p, h1, h2, h3, h4, h5, h6, li, dt, dd, div, section, article, tr, td, th, br, pre, blockquote, "
           "figcaption, caption, hr, table, ul, ol")
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.IGNORECASE)
_BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
_BLANKS = re.compile(r"[ \t\r\f\v\u00a0]+")


def decode_html(data: bytes) -> str:
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return data.decode(encoding, errors="replace")
    declared = _META_CHARSET.search(data[:4096])
    candidates = [declared.group(1).decode("ascii")] if declared else []
    for encoding in [*candidates, "utf-8"]:
        try:
            return data.decode(encoding)
        except (LookupError, UnicodeDecodeError):
            continue
    return data.decode("cp1252", errors="replace")


def _lines(text: str) -> str:
    lines = (_BLANKS.sub(" ", line).strip() for line in text.split("\n"))
    return "\n".join(line for line in lines if line)


def read(data: bytes, settings: InputSettings) -> Extraction:
    try:
        page = LexborHTMLParser(decode_html(data))
        main = page.css_first("main") or page.css_first("article")
        root = main or page.body or page.root
        if root is None:
            raise Unreadable("no HTML body; skipped")
        for node in root.css(_NOT_CONTENT if main else f"{_NOT_CONTENT}, {_PAGE_FRAME}"):
            node.decompose()
        for node in root.css(_BLOCKS):
            node.insert_before("\n")
            node.insert_after("\n")
        text = _lines(root.text(separator=""))
    except Unreadable:
        raise
    except MemoryError:
        raise  # the worker's memory cap (workers.py), not a damaged file
    except Exception as exc:
        raise Unreadable(f"not a readable HTML page ({type(exc).__name__}: {str(exc)[:200]}); skipped") from None
    if not text:
        raise Unreadable("no text in this HTML page; skipped")
    title = page.css_first("title")
    heading = title.text(strip=True) if title is not None else ""
    if heading and heading not in text.split("\n"):  # a page titled as its first heading: once
        text = f"{heading}\n{text}"
    return Extraction([Extracted(text)])
