"""PDF text with pdfminer.six: its layout analysis groups lines into text boxes and orders the
boxes of a page (columns read one after the other, as a person reads them).

On top of the library: page headers and footers repeated on most pages are dropped (they would
be a frequent "entity" of every chunk), a word hyphenated at a line's end is joined, a box's
lines become one paragraph, glyphs without a character (pdfminer's "(cid:13)") are dropped, and a PDF without a text layer (a scan) is refused, never indexed
as empty. Pages stream one at a time: memory stays that of one page whatever the page count.
"""

from __future__ import annotations

import io
import logging
import math
import re
from collections import Counter
from dataclasses import dataclass

from pdfminer.high_level import extract_pages
from pdfminer.layout import LAParams, LTFigure, LTImage, LTPage, LTTextBox, LTTextLine
from pdfminer.pdfdocument import PDFEncryptionError, PDFPasswordIncorrect

from graphrag_flow.config import InputSettings
from graphrag_flow.stages.load.readers import Extracted, Extraction, Unreadable

#: pdfminer logs every oddity of a file at WARNING; the reader reports what matters itself.
logging.getLogger("pdfminer").setLevel(logging.ERROR)

#: A line this close to a page's top or bottom edge (share of its height) may be a header or footer.
MARGIN_SHARE = 0.1
#: A margin line on at least this share of the pages (and on two or more) is dropped from all.
REPEATED_SHARE = 0.5
_LIGATURES = str.maketrans({"\ufb00": "ff", "\ufb01": "fi", "\ufb02": "fl", "\ufb03": "ffi", "\ufb04": "ffl",
                            "\ufb05": "st", "\ufb06": "st"})
_HYPHENATED = re.compile(r"[^\W\d_][-\u00ad]$")
#: pdfminer's stand-in for a glyph its font maps to no character (no ToUnicode map): noise to a reader.
_UNMAPPED_GLYPH = re.compile(r"\(cid:\d+\)")
_SPACES = re.compile(r"\s+")


@dataclass
class _Line:
    text: str
    margin: bool  # in the top or bottom band of its page


@dataclass
class _Page:
    boxes: list[list[_Line]]
    has_image: bool


def _repeat_key(text: str) -> str:
    """A margin line compared across pages: page numbers and dates differ from page to page."""
    return re.sub(r"\d+", "#", _SPACES.sub(" ", text).strip().lower())


def _has_image(item) -> bool:
    if isinstance(item, LTImage):
        return True
    return isinstance(item, LTFigure) and any(_has_image(child) for child in item)


def _page(layout: LTPage) -> _Page:
    top, bottom = layout.y1 - layout.height * MARGIN_SHARE, layout.y0 + layout.height * MARGIN_SHARE
    boxes, has_image = [], False
    for item in layout:
        if isinstance(item, LTTextBox):
            lines = [_Line(_UNMAPPED_GLYPH.sub("", line.get_text().translate(_LIGATURES)).strip(),
                           line.y0 >= top or line.y1 <= bottom)
                     for line in item if isinstance(line, LTTextLine)]
            lines = [line for line in lines if line.text]
            if lines:
                boxes.append(lines)
        elif _has_image(item):
            has_image = True
    return _Page(boxes, has_image)


def _paragraph(lines: list[str]) -> str:
    """A box's lines as one paragraph, words hyphenated across a line break joined."""
    text = ""
    for line in lines:
        if text and _HYPHENATED.search(text) and line[:1].islower():
            text = text[:-1] + line
        else:
            text = f"{text} {line}" if text else line
    return _SPACES.sub(" ", text)


def _repeated_margins(pages: list[_Page]) -> set[str]:
    """Margin lines repeated on most pages: running headers, footers, page numbers."""
    if len(pages) < 2:
        return set()
    seen: Counter[str] = Counter()
    for page in pages:
        seen.update({_repeat_key(line.text) for box in page.boxes for line in box if line.margin})
    needed = max(2, math.ceil(len(pages) * REPEATED_SHARE))
    return {key for key, count in seen.items() if count >= needed}


def read(data: bytes, settings: InputSettings) -> Extraction:
    try:
        pages = [_page(layout) for layout in extract_pages(io.BytesIO(data), laparams=LAParams())]
    except PDFPasswordIncorrect:
        raise Unreadable("encrypted PDF (it needs a password to open); skipped: save a copy without the password")
    except PDFEncryptionError as exc:
        raise Unreadable(f"encrypted PDF ({exc or 'an encryption pdfminer cannot open'}); skipped")
    except MemoryError:
        raise  # the worker's memory cap (workers.py), not a damaged file
    except Exception as exc:  # pdfminer raises many kinds on a damaged file: all mean "cannot be read"
        raise Unreadable(f"not a readable PDF ({type(exc).__name__}: {str(exc)[:200]}); skipped") from None
    if not pages:
        raise Unreadable("a PDF without pages; skipped")
    repeated = _repeated_margins(pages)
    paragraphs: list[str] = []
    textless = 0
    for page in pages:
        for box in page.boxes:
            lines = [line.text for line in box if not (line.margin and _repeat_key(line.text) in repeated)]
            if lines:
                paragraphs.append(_paragraph(lines))
        if not page.boxes and page.has_image:
            textless += 1
    text = "\n\n".join(paragraphs)
    if not text.strip():
        if textless:
            raise Unreadable(f"no text layer ({textless} page(s) of images only, a scan?): OCR it first "
                             "(e.g. with ocrmypdf); skipped")
        raise Unreadable("no text in this PDF; skipped")
    notes = []
    if textless:
        notes.append(f"{textless} of {len(pages)} pages have no text layer (images only): their text is missing; "
                     "OCR the file to read them")
    return Extraction([Extracted(text)], notes)
