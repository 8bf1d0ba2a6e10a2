"""Listing and opening input on a store (`input.dir: s3://bucket/prefix`), beside the local
folder's listing.py and reading.py: the same InputListing and InputFile come out, so decoding,
skipping and the documents' rows (reading.py) do not know where a file came from.

A store has no links, devices or folders of its own: every object under the prefix is a file,
titled by its key under the prefix. An object's date is its last upload (S3 keeps no other).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from graphrag_flow.config import InputSettings
from graphrag_flow.errors import InputError
from graphrag_flow.stages.load.listing import InputFile, InputListing, _pattern_parts, matches_any
from graphrag_flow.storage.store import Store


def _mtime(info: dict[str, Any]) -> float:
    """An object's modification time in seconds (S3: LastModified; local: mtime; gcs: updated)."""
    for key in ("LastModified", "last_modified", "mtime", "updated", "created"):
        value = info.get(key)
        if isinstance(value, dt.datetime):
            return value.timestamp()
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
            except ValueError:
                continue
    return 0.0


def list_store_input(store: Store, settings: InputSettings) -> InputListing:
    """The objects under the input URL that input.patterns match, in title order."""
    patterns = [_pattern_parts(p) for p in settings.patterns]
    fs = store.fs()
    root = store.path()
    fs.invalidate_cache(root)  # fsspec keeps listings per filesystem, and one process may run many flows
    try:
        found = fs.find(root, detail=True, withdirs=False)
    except FileNotFoundError:
        found = {}
    except (OSError, ValueError) as exc:  # PermissionError: credentials refused; others: unreachable
        raise InputError(f"input {store.shown} cannot be listed ({type(exc).__name__}: {exc}) "
                         "(setting input.dir; credentials from the environment, endpoint in storage.options)") from None
    if not found and not fs.exists(root):
        raise InputError(f"input {store.shown} does not exist (setting input.dir)")
    listing = InputListing(store.shown)  # type: ignore[arg-type]  # a URL, shown in messages
    for path in sorted(found):
        info = found[path]
        title = path[len(root):].lstrip("/")
        if not title:
            continue
        if not matches_any(title, patterns):
            listing.note_unmatched(title)
            continue
        listing.files.append(InputFile(title, path, False, store=store, size=info.get("size"), mtime=_mtime(info)))  # type: ignore[arg-type]
    return listing


def read_store_bytes(file: InputFile, max_file_mb: float | None) -> tuple[bytes | None, float, str | None]:
    """(contents, mtime, None) or (None, 0, why not), as reading.py's local `_read_bytes`."""
    assert file.store is not None
    if max_file_mb is not None and file.size is not None and file.size > max_file_mb * 1024 * 1024:
        return None, 0.0, f"{file.size / 1048576:.1f} MB is over input.max_file_mb={max_file_mb}; skipped"
    try:
        data = file.store.fs().cat_file(str(file.path))
    except FileNotFoundError:
        return None, 0.0, "deleted after the input was listed; skipped"
    except OSError as exc:
        return None, 0.0, f"cannot be read ({type(exc).__name__}: {exc}); skipped"
    if max_file_mb is not None and len(data) > max_file_mb * 1024 * 1024:  # replaced by a larger one since
        return None, 0.0, f"{len(data) / 1048576:.1f} MB is over input.max_file_mb={max_file_mb}; skipped"
    return data, file.mtime or 0.0, None
