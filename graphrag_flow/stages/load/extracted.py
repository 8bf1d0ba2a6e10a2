"""The extracted-text cache: what a reader made of a file, kept under cache/extracted/ so that an
unchanged PDF is not parsed again on every run.

An entry's key is the file's sha256, the reader's version (its rules and its library's version)
and the settings that change its text: an edited file, a new library or another text column
read the file again. Entries are written atomically; one that cannot be read is read again from
the file. Entries no file of the run used are removed when the load stage finishes.
"""

from __future__ import annotations

import os
from pathlib import Path

import orjson

from graphrag_flow.hashing import sha256_json
from graphrag_flow.stages.load.readers import Extraction
from graphrag_flow.storage.atomic import atomic_write


class ExtractedTextCache:
    """Extractions by key in one folder; `None` as the folder keeps nothing (every file is parsed)."""

    def __init__(self, folder: Path | None):
        self.folder = Path(folder) if folder is not None else None
        self.used: set[str] = set()
        self.extracted = 0  # files parsed by their reader in this load
        self.reused = 0  # files served from the cache

    @staticmethod
    def key(content_sha256: str, reader_version: str, settings: dict) -> str:
        return sha256_json([content_sha256, reader_version, settings])

    def _path(self, key: str) -> Path:
        assert self.folder is not None
        return self.folder / f"{key}.json"

    def get(self, key: str) -> Extraction | None:
        if self.folder is None:
            return None
        try:
            extraction = Extraction.from_json(orjson.loads(self._path(key).read_bytes()))
        except (OSError, ValueError, KeyError, TypeError):
            return None
        self.used.add(key)
        self.reused += 1
        return extraction

    def put(self, key: str, extraction: Extraction, keep: bool = True) -> None:
        """Count a parse and keep its result (`keep`: False for one that depends on the machine,
        such as a time limit met, and is tried again next run)."""
        self.extracted += 1
        if self.folder is None or not keep:
            return
        payload = orjson.dumps(extraction.to_json())
        try:
            atomic_write(self._path(key), lambda tmp: tmp.write_bytes(payload))
        except OSError:
            return  # a full disk costs a parse on the next run, never this run
        self.used.add(key)

    def prune(self) -> None:
        """Remove the entries no file of this load used (files edited, deleted, or read by an older reader)."""
        if self.folder is None or not self.folder.is_dir():
            return
        try:
            for entry in os.scandir(self.folder):
                if entry.name.endswith(".json") and entry.name[:-5] not in self.used:
                    Path(entry.path).unlink(missing_ok=True)
        except OSError:
            pass  # a stale entry left costs disk, never the run
