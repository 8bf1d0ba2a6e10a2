"""The load stage: the input folder -> documents (id = sha256 of the text, title = the path under
input.dir, text, creation_date = the file's modification time), skipping what cannot be text.

Reading is two steps, listing (listing.py: which files, each once, never out of input.dir unless
allowed) then reading (reading.py: decoding, binary and empty files, files changed meanwhile;
readers/ for PDF, DOCX, HTML, CSV and JSON; extracted.py, the extracted-text cache).
"""

from __future__ import annotations

from pathlib import Path

from graphrag_flow.config import InputSettings
from graphrag_flow.stages.load.listing import InputFile, InputListing, InputWarning, list_input
from graphrag_flow.stages.load.extracted import ExtractedTextCache
from graphrag_flow.stages.load.readers.text import decode_text
from graphrag_flow.stages.load.reading import DOCUMENT_COLUMNS, LoadedInput, read_listed
from graphrag_flow.storage.paths import ProjectPaths

__all__ = [
    "DOCUMENT_COLUMNS", "ExtractedTextCache", "InputFile", "InputListing", "InputWarning", "LoadedInput", "decode_text", "list_input",
    "load_documents", "read_listed",
]


def load_documents(root: Path, settings: InputSettings) -> LoadedInput:
    """Documents of `<root>/<input.dir>`, one row per distinct content, in title order; what the
    readers extract is cached in the project's cache/extracted/."""
    paths = ProjectPaths(root)
    return read_listed(list_input(paths.input(settings), settings), settings, ExtractedTextCache(paths.extracted))
