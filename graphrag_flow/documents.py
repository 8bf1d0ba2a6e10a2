"""The load stage: turn the input folder into documents, skipping what cannot be text.

Bad files are skipped with one warning each (never a crash, never silently), because one
stray PDF in a nightly input folder must not cost the night's index.
"""

from __future__ import annotations

import codecs
import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from graphrag_flow.config import InputSettings
from graphrag_flow.errors import InputError
from graphrag_flow.hashing import sha256_text

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

DOCUMENT_COLUMNS = ["id", "title", "text", "creation_date", "content_sha256"]


@dataclass(frozen=True)
class InputWarning:
    """One file that was skipped or altered, and why (shown in the run summary)."""

    file: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file}: {self.reason}"


def find_input_files(input_dir: Path, patterns: list[str]) -> list[Path]:
    files: set[Path] = set()
    for pattern in patterns:
        files.update(p for p in input_dir.glob(pattern) if p.is_file())
    return sorted(files, key=lambda p: p.relative_to(input_dir).as_posix())


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


def read_document(path: Path, title: str, max_file_mb: float | None) -> tuple[dict | None, list[InputWarning]]:
    warnings: list[InputWarning] = []
    size = path.stat().st_size
    if max_file_mb is not None and size > max_file_mb * 1024 * 1024:
        return None, [InputWarning(title, f"{size / 1048576:.1f} MB is over input.max_file_mb={max_file_mb}; skipped")]
    try:
        data = path.read_bytes()
    except OSError as exc:
        return None, [InputWarning(title, f"cannot be read ({exc.strerror}); skipped")]
    text, why_not = decode_text(data)
    del data
    if text is None:
        return None, [InputWarning(title, why_not or "unreadable; skipped")]
    if _control_share(text) > _BINARY_CONTROL_SHARE:
        return None, [InputWarning(title, "binary file (control characters); skipped")]
    if "\x00" in text:
        count = text.count("\x00")
        text = text.replace("\x00", "")
        warnings.append(InputWarning(title, f"{count} NUL byte(s) removed"))
    if not text.strip():
        return None, warnings + [InputWarning(title, "empty file; skipped")]
    mtime = dt.datetime.fromtimestamp(path.stat().st_mtime, tz=dt.timezone.utc)
    doc_id = sha256_text(text)
    row = {
        "id": doc_id,
        "title": title,
        "text": text,
        "creation_date": mtime.strftime("%Y-%m-%d %H:%M:%S %z"),
        "content_sha256": doc_id,
    }
    return row, warnings


def load_documents(root: Path, settings: InputSettings) -> tuple[pd.DataFrame, list[InputWarning]]:
    """Documents of `<root>/<input.dir>`, one row per distinct content, in title order."""
    input_dir = (Path(root) / settings.dir).resolve()
    if not input_dir.is_dir():
        raise InputError(f"input folder {input_dir} does not exist (setting input.dir)")
    files = find_input_files(input_dir, settings.patterns)
    if not files:
        raise InputError(
            f"no input files in {input_dir} matching input.patterns {settings.patterns}: nothing to index"
        )
    rows: list[dict] = []
    warnings: list[InputWarning] = []
    seen: dict[str, str] = {}
    for path in files:
        title = path.relative_to(input_dir).as_posix()
        row, file_warnings = read_document(path, title, settings.max_file_mb)
        warnings.extend(file_warnings)
        if row is None:
            continue
        if row["id"] in seen:
            warnings.append(InputWarning(title, f"same content as {seen[row['id']]}; indexed once under that title"))
            continue
        seen[row["id"]] = title
        rows.append(row)
    if not rows:
        raise InputError(f"none of the {len(files)} input file(s) in {input_dir} could be read as text: nothing to index")
    return pd.DataFrame(rows, columns=DOCUMENT_COLUMNS), warnings
