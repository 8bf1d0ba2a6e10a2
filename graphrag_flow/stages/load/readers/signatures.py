"""Cheap checks of a file's bytes, run in the load stage's own process before a file is handed
to a reader's worker process: what is plainly not of its type, or a zip bomb, is refused
without starting a worker.
"""

from __future__ import annotations

import io
import zipfile

from graphrag_flow.stages.load.readers import Unreadable

#: Unpacked size of all a DOCX's parts together: a 1,000-page report with pictures is far below.
MAX_UNPACKED_MB = 512
#: Unpacked / packed size of the whole file: text XML packs about 10:1, a bomb 1000:1.
MAX_RATIO = 200
#: PDF readers accept the header anywhere in the first KB (some writers put bytes before it).
_PDF_HEADER_WITHIN = 1024


def check_pdf(data: bytes) -> None:
    if b"%PDF-" not in data[:_PDF_HEADER_WITHIN]:
        raise Unreadable("not a PDF file (no %PDF- header in its first KB); skipped")


def check_zip(data: bytes) -> None:
    """Refuse a zip whose parts would unpack beyond the bounds, by the sizes it declares
    (Python's zipfile never unpacks more than a member declares: past it, the CRC fails)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise Unreadable(f"not a valid DOCX file (not a zip archive: {exc}); skipped") from None
    if unpacked > MAX_UNPACKED_MB * 1024 * 1024 or unpacked > MAX_RATIO * max(len(data), 1024):
        raise Unreadable(f"its parts unpack to {unpacked / 1048576:,.0f} MB from {len(data) / 1048576:,.1f} MB "
                         "(a zip bomb?); skipped without unpacking")
