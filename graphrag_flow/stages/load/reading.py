"""Reading the listed files: one document per distinct content, skipping what cannot be text.

A file's suffix picks its reader (readers/: PDF, DOCX, HTML, CSV, JSON, JSON Lines; anything
else is plain text). What a reader extracts is kept in the extracted-text cache (extracted.py),
so an unchanged file is parsed once, not on every run. A type whose reader's extra is not
installed is skipped with one warning naming the extra.

Bad files are skipped with one warning each (never a crash, never silently), because one
stray PDF in a nightly input folder must not cost the night's index. A file may change between
the listing and the reading (deleted, replaced by a folder or a link, made unreadable): the
reader checks again and skips it with a warning.
"""

from __future__ import annotations

import datetime as dt
import errno
import hashlib
import json
import os
import stat
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import PurePosixPath

import pandas as pd

from graphrag_flow.config import InputSettings
from graphrag_flow.errors import InputError
from graphrag_flow.hashing import sha256_json, sha256_text
from graphrag_flow.stages.load.extracted import ExtractedTextCache
from graphrag_flow.stages.load.listing import InputFile, InputListing, InputWarning
from graphrag_flow.stages.load.readers import Extraction, Reader, Unreadable, reader_for
from graphrag_flow.stages.load.workers import ReaderPool
from graphrag_flow.stages.load.readers.text import decode_text

#: A file whose text has more control characters than this share is treated as binary.
_BINARY_CONTROL_SHARE = 0.01
_ALLOWED_CONTROLS = {"\t", "\n", "\r", "\f", "\v"}
#: Never blocks on a FIFO (its open returns at once; it is then skipped as not a regular file),
#: never follows a link the listing did not see, never leaks the descriptor to a child process.
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)

#: metadata: input.metadata_columns of a record as a JSON object (a string: it keeps its keys
#: through the stage store's parquet files), None for a whole file.
DOCUMENT_COLUMNS = ["id", "title", "text", "creation_date", "content_sha256", "metadata"]


@dataclass
class LoadedInput:
    """The documents of the input folder, the warnings of the files skipped or altered, one
    line per extension of the files no pattern matches, and how many files a reader parsed
    (`extracted`) or the extracted-text cache served (`reused`)."""

    documents: pd.DataFrame
    warnings: list[InputWarning]
    not_matched: list[str]
    extracted: int = 0
    reused: int = 0


def _control_share(text: str) -> float:
    sample = text[:65536]
    controls = sum(1 for ch in sample if ch < " " and ch not in _ALLOWED_CONTROLS and ch != "\x00")
    return controls / max(1, len(sample))


def _open_error(exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError):
        return "deleted after the input folder was listed; skipped"
    if exc.errno == errno.ELOOP:
        return "replaced by a link after the input folder was listed; skipped"
    return f"cannot be read ({exc.strerror or exc}); skipped"


def _read_bytes(file: InputFile, max_file_mb: float | None) -> tuple[bytes | None, float, str | None]:
    """(contents, mtime, None) or (None, 0, why not): the file as it is now, checked again."""
    if file.store is not None:
        from graphrag_flow.stages.load.store_input import read_store_bytes

        return read_store_bytes(file, max_file_mb)
    try:
        fd = os.open(file.path, _OPEN_FLAGS)
    except OSError as exc:
        return None, 0.0, _open_error(exc)
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            return None, 0.0, "a folder now, not a file; skipped"
        if not stat.S_ISREG(st.st_mode):
            return None, 0.0, "not a regular file (a device, FIFO or socket); skipped"
        if os.path.realpath(file.path) != str(file.path):  # a folder on its path became a link
            return None, 0.0, "moved behind a link after the input folder was listed; skipped"
        if max_file_mb is not None and st.st_size > max_file_mb * 1024 * 1024:
            return None, 0.0, f"{st.st_size / 1048576:.1f} MB is over input.max_file_mb={max_file_mb}; skipped"
        with os.fdopen(fd, "rb", closefd=False) as handle:
            return handle.read(), st.st_mtime, None
    except OSError as exc:
        return None, 0.0, f"cannot be read ({exc.strerror or exc}); skipped"
    finally:
        os.close(fd)


def _date(mtime: float) -> str:
    return dt.datetime.fromtimestamp(mtime, tz=dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S %z")


def _plain_text(file: InputFile, data: bytes, mtime: float) -> tuple[dict | None, list[InputWarning]]:
    """A text file's one document; its id is the sha256 of its text (decoding has no version)."""
    title = file.title
    text, why_not = decode_text(data)
    del data
    if text is None:
        return None, [InputWarning(title, why_not or "unreadable; skipped")]
    if _control_share(text) > _BINARY_CONTROL_SHARE:
        return None, [InputWarning(title, "binary file (control characters); skipped")]
    warnings: list[InputWarning] = []
    if "\x00" in text:
        count = text.count("\x00")
        text = text.replace("\x00", "")
        warnings.append(InputWarning(title, f"{count} NUL byte(s) removed"))
    if not text.strip():
        return None, warnings + [InputWarning(title, "empty file; skipped")]
    doc_id = sha256_text(text)
    return {"id": doc_id, "title": title, "text": text, "creation_date": _date(mtime), "content_sha256": doc_id,
            "metadata": None}, warnings


def _extracted_rows(file: InputFile, reader: Reader, extraction: Extraction,
                    mtime: float) -> tuple[list[dict], list[InputWarning]]:
    """A reader's documents as rows: the id is the sha256 of the reader's version and the text
    (and a record's metadata), so a new reader version makes new ids."""
    warnings = [InputWarning(file.title, note) for note in extraction.notes]
    if extraction.refused is not None:
        return [], warnings + [InputWarning(file.title, extraction.refused)]
    rows = []
    for doc in extraction.documents:
        title = file.title if doc.record is None else f"{file.title}: {doc.record}"
        doc_id = sha256_json([reader.version, doc.text, doc.metadata])
        metadata = json.dumps(doc.metadata, ensure_ascii=False, sort_keys=True) if doc.metadata else None
        rows.append({"id": doc_id, "title": title, "text": doc.text, "creation_date": _date(mtime),
                     "content_sha256": doc_id, "metadata": metadata})
    return rows, warnings


@dataclass
class _Parsing:
    """A file handed to a reader's worker: what its rows need once the worker answers."""

    file: InputFile
    reader: Reader
    key: str
    mtime: float
    future: Future


FileResult = tuple[list[dict], list[InputWarning]]


def _start(file: InputFile, settings: InputSettings, cache: ExtractedTextCache,
           pool: ReaderPool) -> FileResult | _Parsing:
    """A file's documents and warnings when they need no parsing (plain text, the extracted-text
    cache, a file that cannot be read), else its parse, handed to a worker.

    ImportError when the file's reader needs an extra that is not installed."""
    data, mtime, why_not = _read_bytes(file, settings.max_file_mb)
    if data is None:
        return [], [InputWarning(file.title, why_not or "unreadable; skipped")]
    reader = reader_for(file.title)
    if reader is None:
        row, warnings = _plain_text(file, data, mtime)
        return ([row] if row else []), warnings
    reader.load()  # before the cache: a missing extra is reported as such, whatever was cached
    key = cache.key(hashlib.sha256(data).hexdigest(), reader.version, reader.settings(settings))
    cached = cache.get(key)
    if cached is not None:
        return _extracted_rows(file, reader, cached, mtime)
    try:
        if reader.check is not None:
            reader.check(data)
        if reader.isolated:
            return _Parsing(file, reader, key, mtime, pool.submit(reader, data))
        extraction = reader.load()(data, settings)  # records: linear, bounded by input.max_file_mb
    except Unreadable as exc:
        extraction = Extraction(refused=str(exc))
    cache.put(key, extraction)
    return _extracted_rows(file, reader, extraction, mtime)


def _finish(parsing: _Parsing, cache: ExtractedTextCache) -> FileResult:
    outcome = parsing.future.result()
    cache.put(parsing.key, outcome.extraction, keep=outcome.cacheable)
    return _extracted_rows(parsing.file, parsing.reader, outcome.extraction, parsing.mtime)


def _nothing_read(listing: InputListing, patterns: list[str], what: str) -> InputError:
    """The error of a folder with nothing to index, with what was passed over and why."""
    notes = listing.unmatched_lines(patterns) + [str(w) for w in listing.warnings[:5]]
    if len(listing.warnings) > 5:
        notes.append(f"(and {len(listing.warnings) - 5} more warnings)")
    return InputError(f"{what}: nothing to index" + "".join(f"\n  {n}" for n in notes))


def _missing_extras(missing: dict[str, tuple[Reader, list[str]]]) -> list[InputWarning]:
    """One warning per type whose reader's extra is not installed, naming the extra."""
    warnings = []
    for suffix, (reader, titles) in missing.items():
        shown = ", ".join(titles[:3]) + (", …" if len(titles) > 3 else "")
        plural = "" if len(titles) == 1 else "s"
        warnings.append(InputWarning(f"{len(titles)} {suffix} file{plural} ({shown})",
                                     f"not read: {reader.missing_extra()}"))
    return warnings


def _read_all(files: list[InputFile], settings: InputSettings, cache: ExtractedTextCache,
              missing: dict[str, tuple[Reader, list[str]]]) -> list[FileResult]:
    """Every file's documents and warnings, in the files' order; parses run in worker processes,
    a few per worker at a time (each holds its file's bytes until it is done)."""
    results: list[FileResult | None] = [None] * len(files)
    in_flight: deque[tuple[int, _Parsing]] = deque()
    with ReaderPool(settings) as pool:
        for i, file in enumerate(files):
            try:
                started = _start(file, settings, cache, pool)
            except ImportError:
                reader = reader_for(file.title)
                assert reader is not None  # plain text needs no library
                missing.setdefault(PurePosixPath(file.title).suffix.lower(), (reader, []))[1].append(file.title)
                results[i] = ([], [])
                continue
            if isinstance(started, _Parsing):
                in_flight.append((i, started))
                while len(in_flight) > 2 * pool.workers:
                    j, parsing = in_flight.popleft()
                    results[j] = _finish(parsing, cache)
            else:
                results[i] = started
        for j, parsing in in_flight:
            results[j] = _finish(parsing, cache)
    return [r for r in results if r is not None]


def read_listed(listing: InputListing, settings: InputSettings,
                cache: ExtractedTextCache | None = None) -> LoadedInput:
    """The listed files' documents, one row per distinct content, in title order. `cache` keeps
    what readers extract across runs (None: every file is parsed)."""
    if not listing.files:
        raise _nothing_read(listing, settings.patterns,
                            f"no input files in {listing.input_dir} matching input.patterns {settings.patterns}")
    cache = cache or ExtractedTextCache(None)
    rows: list[dict] = []
    seen: dict[str, str] = {}
    missing: dict[str, tuple[Reader, list[str]]] = {}
    for file_rows, file_warnings in _read_all(listing.files, settings, cache, missing):
        listing.warnings.extend(file_warnings)
        for row in file_rows:
            if row["id"] in seen:
                listing.warnings.append(
                    InputWarning(row["title"], f"same content as {seen[row['id']]}; indexed once under that title"))
                continue
            seen[row["id"]] = row["title"]
            rows.append(row)
    listing.warnings.extend(_missing_extras(missing))
    if not rows:
        raise _nothing_read(listing, settings.patterns, f"none of the {len(listing.files)} input file(s) in "
                                                        f"{listing.input_dir} could be read as text")
    cache.prune()
    return LoadedInput(pd.DataFrame(rows, columns=DOCUMENT_COLUMNS), listing.warnings,
                       listing.unmatched_lines(settings.patterns), cache.extracted, cache.reused)
