"""Reading the listed files: one document per distinct content, skipping what cannot be text.

Bad files are skipped with one warning each (never a crash, never silently), because one
stray PDF in a nightly input folder must not cost the night's index. A file may change between
the listing and the reading (deleted, replaced by a folder or a link, made unreadable): the
reader checks again and skips it with a warning.
"""

from __future__ import annotations

import codecs
import datetime as dt
import errno
import os
import stat
from dataclasses import dataclass

import pandas as pd

from graphrag_flow.config import InputSettings
from graphrag_flow.errors import InputError
from graphrag_flow.hashing import sha256_text
from graphrag_flow.stages.load.listing import InputFile, InputListing, InputWarning

#: A file whose text has more control characters than this share is treated as binary.
_BINARY_CONTROL_SHARE = 0.01
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_ALLOWED_CONTROLS = {"\t", "\n", "\r", "\f", "\v"}
#: Never blocks on a FIFO (its open returns at once; it is then skipped as not a regular file),
#: never follows a link the listing did not see, never leaks the descriptor to a child process.
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)

DOCUMENT_COLUMNS = ["id", "title", "text", "creation_date", "content_sha256"]


@dataclass
class LoadedInput:
    """The documents of the input folder, the warnings of the files skipped or altered, and one
    line per extension of the files no pattern matches."""

    documents: pd.DataFrame
    warnings: list[InputWarning]
    not_matched: list[str]



def decode_text(data: bytes) -> tuple[str | None, str | None]:
    """(text, None) or (None, why not). A BOM decides the encoding, else strict UTF-8."""
    encoding = "utf-8"
    for bom, name in _BOMS:
        if data.startswith(bom):
            encoding = name
            break
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        return None, f"not valid {encoding.upper()} text (byte {exc.start}); skipped"
    if encoding == "utf-8" and "\x00" in text and data.count(b"\x00") * 4 >= len(data):
        return None, "binary file (mostly NUL bytes); skipped"
    return text, None


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


def read_document(file: InputFile, max_file_mb: float | None) -> tuple[dict | None, list[InputWarning]]:
    title = file.title
    data, mtime, why_not = _read_bytes(file, max_file_mb)
    if data is None:
        return None, [InputWarning(title, why_not or "unreadable; skipped")]
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
    row = {
        "id": doc_id,
        "title": title,
        "text": text,
        "creation_date": dt.datetime.fromtimestamp(mtime, tz=dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S %z"),
        "content_sha256": doc_id,
    }
    return row, warnings


def _nothing_read(listing: InputListing, patterns: list[str], what: str) -> InputError:
    """The error of a folder with nothing to index, with what was passed over and why."""
    notes = listing.unmatched_lines(patterns) + [str(w) for w in listing.warnings[:5]]
    if len(listing.warnings) > 5:
        notes.append(f"(and {len(listing.warnings) - 5} more warnings)")
    return InputError(f"{what}: nothing to index" + "".join(f"\n  {n}" for n in notes))


def read_listed(listing: InputListing, settings: InputSettings) -> LoadedInput:
    """The listed files' documents, one row per distinct content, in title order."""
    if not listing.files:
        raise _nothing_read(listing, settings.patterns,
                            f"no input files in {listing.input_dir} matching input.patterns {settings.patterns}")
    rows: list[dict] = []
    seen: dict[str, str] = {}
    for file in listing.files:
        row, file_warnings = read_document(file, settings.max_file_mb)
        listing.warnings.extend(file_warnings)
        if row is None:
            continue
        if row["id"] in seen:
            listing.warnings.append(
                InputWarning(file.title, f"same content as {seen[row['id']]}; indexed once under that title"))
            continue
        seen[row["id"]] = file.title
        rows.append(row)
    if not rows:
        raise _nothing_read(listing, settings.patterns, f"none of the {len(listing.files)} input file(s) in "
                                                        f"{listing.input_dir} could be read as text")
    return LoadedInput(pd.DataFrame(rows, columns=DOCUMENT_COLUMNS), listing.warnings,
                       listing.unmatched_lines(settings.patterns))
