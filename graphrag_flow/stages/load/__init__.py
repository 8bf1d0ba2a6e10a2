"""The load stage: the input folder -> documents (id = sha256 of the text, title = the path under
input.dir, text, creation_date = the file's modification time), skipping what cannot be text.

Reading is two steps, listing (listing.py: which files, each once, never out of input.dir unless
allowed) then reading (reading.py: decoding, binary and empty files, files changed meanwhile;
readers/ for PDF, DOCX, HTML, CSV and JSON; extracted.py, the extracted-text cache).
"""

from __future__ import annotations

from pathlib import Path

from graphrag_flow.config import InputSettings, StorageSettings, is_url
from graphrag_flow.stages.load.listing import InputFile, InputListing, InputWarning, list_input
from graphrag_flow.stages.load.extracted import ExtractedTextCache
from graphrag_flow.stages.load.readers.text import decode_text
from graphrag_flow.stages.load.reading import DOCUMENT_COLUMNS, LoadedInput, read_listed
from graphrag_flow.storage.paths import ProjectPaths

__all__ = [
    "DOCUMENT_COLUMNS", "ExtractedTextCache", "InputFile", "InputListing", "InputWarning", "LoadedInput", "decode_text", "list_input",
    "load_documents", "read_listed",
]


def load_documents(root: Path, settings: InputSettings, storage: StorageSettings | None = None) -> LoadedInput:
    """Documents of `<root>/<input.dir>` (or of the store input.dir names by URL, reached with
    `storage.options`), one row per distinct content, in title order; what the readers extract is
    cached in the project's cache/extracted/."""
    paths = ProjectPaths(root)
    if is_url(settings.dir):
        from graphrag_flow.stages.load.store_input import list_store_input
        from graphrag_flow.storage.store import store_for

        listing = list_store_input(store_for(settings.dir, storage or StorageSettings()), settings)
    else:
        listing = list_input(paths.input(settings), settings)
    return read_listed(listing, settings, ExtractedTextCache(paths.extracted))
