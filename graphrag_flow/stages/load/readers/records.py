"""Tables of records, one document per record: CSV (the standard library's csv), a JSON file
holding one object or a list of objects, and JSON Lines (one object per line), parsed by orjson.

The columns follow GraphRAG's settings: `input.text_column` holds the text, `input.title_column`
names the record (else its row number), `input.metadata_columns` are carried along with it.
A malformed row or line is skipped with a note naming its line; the file's other records are read.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from typing import Any, Mapping

import orjson

from graphrag_flow.config import InputSettings
from graphrag_flow.stages.load.readers import Extracted, Extraction, Unreadable
from graphrag_flow.stages.load.readers.text import decode_text

#: Notes of one file beyond this are counted, not listed (a broken export can have a bad line each).
MAX_NOTES = 20


class _Records:
    """The documents of one file as its records are read, with the notes on those skipped."""

    def __init__(self, settings: InputSettings):
        self.settings = settings
        self.extraction = Extraction()
        self.names: dict[str, int] = {}
        self.skipped_notes = 0

    def note(self, text: str) -> None:
        if len(self.extraction.notes) < MAX_NOTES:
            self.extraction.notes.append(text)
        else:
            self.skipped_notes += 1

    def check_columns(self, columns: list[str]) -> None:
        """Notes on the configured columns a table does not have (text: the file is refused)."""
        s = self.settings
        if s.text_column not in columns:
            raise Unreadable(f"no column {s.text_column!r} (setting input.text_column) among its columns "
                             f"{', '.join(map(repr, columns[:20]))}; skipped")
        if s.title_column and s.title_column not in columns:
            self.note(f"no column {s.title_column!r} (setting input.title_column): records are named by row number")
        for column in s.metadata_columns:
            if column not in columns:
                self.note(f"no column {column!r} (setting input.metadata_columns)")

    def add(self, values: Mapping[str, Any], where: str, number: int) -> None:
        s = self.settings
        if s.text_column not in values:
            self.note(f"{where}: no {s.text_column!r} (setting input.text_column); skipped")
            return
        text = _cell(values[s.text_column])
        if not text.strip():
            self.note(f"{where}: {s.text_column!r} is empty; skipped")
            return
        name = _cell(values.get(s.title_column)).strip() if s.title_column else ""
        name = name or f"row {number}"
        if name in self.names:
            name = f"{name} (row {number})"
        self.names[name] = number
        metadata = {c: _cell(values[c]) for c in s.metadata_columns if c in values}
        self.extraction.documents.append(Extracted(text, name, metadata or None))

    def done(self) -> Extraction:
        if self.skipped_notes:
            self.extraction.notes.append(f"(and {self.skipped_notes} more notes like these)")
        if not self.extraction.documents:
            raise Unreadable("no record with text; skipped" + "".join(f"\n    {n}" for n in self.extraction.notes))
        return self.extraction


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _text(data: bytes) -> str:
    text, why_not = decode_text(data)
    if text is None:
        raise Unreadable(why_not or "not text; skipped")
    return text


def read_csv(data: bytes, settings: InputSettings) -> Extraction:
    text = _text(data)
    # a text cell may be as long as the file: csv's default limit (128 KB) would end the file there
    csv.field_size_limit(max(csv.field_size_limit(), min(len(text) + 1, sys.maxsize)))
    rows = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(rows)
    except StopIteration:
        raise Unreadable("an empty CSV file; skipped") from None
    except csv.Error as exc:
        raise Unreadable(f"line 1: malformed CSV header ({exc}); skipped") from None
    records = _Records(settings)
    records.check_columns(header)
    number = 0
    while True:
        line = rows.line_num + 1
        try:
            fields = next(rows)
        except StopIteration:
            break
        except csv.Error as exc:
            records.note(f"line {line}: malformed CSV ({exc}); this line and the rest of the file are not read")
            break
        if not fields:
            continue  # a blank line
        number += 1
        if len(fields) != len(header):
            records.note(f"line {line}: {len(fields)} fields where the header has {len(header)}; skipped")
            continue
        records.add(dict(zip(header, fields)), f"line {line}", number)
    return records.done()


def _json_error(exc: orjson.JSONDecodeError) -> str:
    return f"not valid JSON at line {exc.lineno} column {exc.colno} ({exc.msg})"


def read_json(data: bytes, settings: InputSettings) -> Extraction:
    try:
        value = orjson.loads(_text(data))
    except orjson.JSONDecodeError as exc:
        raise Unreadable(f"{_json_error(exc)}; skipped") from None
    items = value if isinstance(value, list) else [value]
    records = _Records(settings)
    if isinstance(value, dict):
        records.check_columns(list(value))
    for number, item in enumerate(items, 1):
        if isinstance(item, dict):
            records.add(item, f"item {number}", number)
        else:
            records.note(f"item {number}: a JSON {type(item).__name__}, not an object; skipped")
    return records.done()


def read_jsonl(data: bytes, settings: InputSettings) -> Extraction:
    records = _Records(settings)
    number = 0
    for line, raw in enumerate(_text(data).split("\n"), 1):
        if not raw.strip():
            continue
        number += 1
        try:
            item = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            records.note(f"line {line}: not valid JSON ({exc.msg}); skipped")
            continue
        if isinstance(item, dict):
            records.add(item, f"line {line}", number)
        else:
            records.note(f"line {line}: a JSON {type(item).__name__}, not an object; skipped")
    return records.done()
