"""DOCX text with python-docx: the body's paragraphs and tables in document order (a table row
as its cells joined by " | "), without headers, footers or comments.

A DOCX is a zip file, and python-docx reads every part of it into memory: the sizes the zip
declares are checked first (signatures.check_zip), so a zip bomb is refused before anything is
unpacked.
"""

from __future__ import annotations

import io

import docx
from docx.table import Table

from graphrag_flow.config import InputSettings
from graphrag_flow.stages.load.readers import Extracted, Extraction, Unreadable
from graphrag_flow.stages.load.readers.signatures import check_zip

def _table(table: Table) -> str:
    rows = []
    for row in table.rows:
        cells: list[str] = []
        previous = None
        for cell in row.cells:
            if cell._tc is previous:  # a merged cell is listed once per column it spans
                continue
            previous = cell._tc
            cells.append(" ".join(p.text.strip() for p in cell.paragraphs if p.text.strip()))
        if any(cells):
            rows.append(" | ".join(cells))
    return "\n".join(rows)


def read(data: bytes, settings: InputSettings) -> Extraction:
    check_zip(data)
    try:
        document = docx.Document(io.BytesIO(data))
        blocks: list[str] = []
        for block in document.iter_inner_content():
            text = _table(block) if isinstance(block, Table) else block.text.strip()
            if text:
                blocks.append(text)
    except Unreadable:
        raise
    except MemoryError:
        raise  # the worker's memory cap (workers.py), not a damaged file
    except Exception as exc:  # python-docx and lxml raise many kinds on a damaged file
        raise Unreadable(f"not a readable DOCX file ({type(exc).__name__}: {str(exc)[:200]}); skipped") from None
    text = "\n\n".join(blocks)
    if not text.strip():
        raise Unreadable("no text in this DOCX file; skipped")
    return Extraction([Extracted(text)])
