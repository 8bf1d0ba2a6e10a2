"""Readers by file type: bytes in, documents' text out, through a well-kept library per type.

Each reader works on the file's bytes (never on a path), so a file listed from any store reads
the same way. PDF, DOCX and HTML are parsed in worker processes (../workers.py), capped in memory
and time. A reader names its version (its own rules plus its library's version): the
extracted text is cached under it, and a new version reads every file of its type again.

| suffix | reader | library | install |
| --- | --- | --- | --- |
| .pdf | pdf | pdfminer.six (layout analysis: reading order of columns) | default |
| .docx | docx | python-docx | extra `docx` |
| .html .htm | html | selectolax (lexbor) | extra `html` |
| .csv | csv | the standard library's csv | default |
| .json .jsonl | json, jsonl | orjson | default |
| anything else | text | a byte-order mark, else UTF-8 (reading.py) | default |
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import PurePosixPath
from typing import Any, Callable

from graphrag_flow.config import InputSettings


class Unreadable(Exception):
    """The file cannot be read by its reader; the message says why (without the file's name)."""


@dataclass(frozen=True)
class Extracted:
    """One document a file yields: a whole file's text, or one record of a table."""

    text: str
    record: str | None = None  # a record's name within its file ("Ada Lovelace", "row 3")
    metadata: dict[str, str] | None = None  # input.metadata_columns of a record


@dataclass
class Extraction:
    """What a reader made of one file: its documents and what it dropped or skipped, and why."""

    documents: list[Extracted] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    refused: str | None = None  # why the file cannot be read (kept too: a scan is not parsed every run)

    def to_json(self) -> dict:
        return {"documents": [[d.text, d.record, d.metadata] for d in self.documents], "notes": self.notes,
                "refused": self.refused}

    @classmethod
    def from_json(cls, value: dict) -> "Extraction":
        return cls([Extracted(t, r, m) for t, r, m in value["documents"]], list(value["notes"]), value["refused"])


@dataclass(frozen=True)
class Reader:
    """A file type's reader: its read function (`entry`) is imported when first used, so a reader
    whose library is not installed costs nothing until a file of its type is listed."""

    name: str
    rules: str  # bumped when our own handling of the library's output changes the text
    entry: str  # "<module>.<function>" in this package: the read function
    library: str | None  # the distribution whose version is part of the reader's
    extra: str | None  # the pip extra that installs the library; None: in the default install
    settings: Callable[[InputSettings], dict[str, Any]] = lambda s: {}  # settings that change the text
    #: Parsed in a worker process with a memory cap and a time limit (workers.py): the parsers of
    #: compressed or complex formats, in C or not. Records are parsed in-process (linear, bounded
    #: by input.max_file_mb).
    isolated: bool = False
    check: Callable[[bytes], None] | None = None  # a cheap check first, in-process (signatures.py)

    def load(self) -> Callable[[bytes, InputSettings], Extraction]:
        """The read function; ImportError when the reader's extra is not installed."""
        module, function = self.entry.rsplit(".", 1)
        return getattr(importlib.import_module(f"{__name__}.{module}"), function)

    @property
    def version(self) -> str:
        if self.library is None:
            return f"{self.name}-{self.rules}"
        try:
            return f"{self.name}-{self.rules}+{self.library}-{version(self.library)}"
        except PackageNotFoundError:
            return f"{self.name}-{self.rules}+{self.library}-unknown"

    def missing_extra(self) -> str:
        return (f"reading {self.name.upper()} files needs the {self.extra} extra: "
                f"pip install 'graphrag-flow[{self.extra}]'")


from graphrag_flow.stages.load.readers.signatures import check_pdf, check_zip  # noqa: E402  (needs Unreadable)


def _records(s: InputSettings) -> dict[str, Any]:
    return {"text_column": s.text_column, "title_column": s.title_column, "metadata_columns": s.metadata_columns}


READERS: dict[str, Reader] = {
    ".pdf": Reader("pdf", "1", "pdf.read", "pdfminer.six", None, isolated=True, check=check_pdf),
    ".docx": Reader("docx", "1", "word.read", "python-docx", "docx", isolated=True, check=check_zip),
    ".html": Reader("html", "1", "web.read", "selectolax", "html", isolated=True),
    ".csv": Reader("csv", "1", "records.read_csv", None, None, _records),
    ".json": Reader("json", "1", "records.read_json", None, None, _records),
    ".jsonl": Reader("jsonl", "1", "records.read_jsonl", None, None, _records),
}
READERS[".htm"] = READERS[".html"]


def reader_for(title: str) -> Reader | None:
    """The reader of a file by its suffix (any case); None: plain text."""
    return READERS.get(PurePosixPath(title).suffix.lower())
