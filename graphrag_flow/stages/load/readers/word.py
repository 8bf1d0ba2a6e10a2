"""DOCX text with python-docx: the body's paragraphs and tables in document order (a table row
as its cells joined by " | "), without headers, footers or comments.

A DOCX is a zip file, and python-docx reads every part of it into memory: the sizes the zip
declares are checked first, so a zip bomb (a few KB that unpack to gigabytes) is refused
before anything is unpacked. Python's zipfile never unpacks more than a member declares.
"""

from __future__ import annotations

import io
import zipfile

import docx
from docx.table import Table

from graphrag_flow.config import InputSettings
from graphrag_flow.stages.load.readers import Extracted, Extraction, Unreadable

#: Unpacked size of all a DOCX's parts together: a 1,000-page report with pictures is far below.
MAX_UNPACKED_MB = 512
#: Unpacked / packed size of the whole file: text XML packs about 10:1, a bomb 1000:1.
MAX_RATIO = 200


def check_zip(data: bytes, max_unpacked_mb: float = MAX_UNPACKED_MB) -> None:
    """Refuse a zip whose parts would unpack beyond the bounds, by the sizes it declares."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise Unreadable(f"not a valid DOCX file (not a zip archive: {exc}); skipped") from None
    if unpacked > max_unpacked_mb * 1024 * 1024 or unpacked > MAX_RATIO * max(len(data), 1024):
        raise Unreadable(f"its parts unpack to {unpacked / 1048576:,.0f} MB from {len(data) / 1048576:,.1f} MB "
                         "(a zip bomb?); skipped without unpacking")


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
    except Exception as exc:  # python-docx and lxml raise many kinds on a damaged file
        raise Unreadable(f"not a readable DOCX file ({type(exc).__name__}: {str(exc)[:200]}); skipped") from None
    text = "\n\n".join(blocks)
    if not text.strip():
        raise Unreadable("no text in this DOCX file; skipped")
    return Extraction([Extracted(text)])
