"""The LLM answer cache: every answer stored the moment it arrives, in SQLite (WAL).

Keys are hashes of what changes an answer (model, messages, schema, temperature, ...),
never the API key, the base URL or a run id, so a re-run of any run sends no request whose
answer is stored. `synchronous=FULL` makes each committed answer survive a power cut, not
only a kill -9; an answer costs far more to fetch than an fsync costs to keep.

Each answer is stored with what it was billed (`prompt_tokens`, `completion_tokens`; NULL for
answers stored before usage was kept, and for offline answers): a cache hit costs nothing, and
the estimate (graphrag_flow/estimate.py) reads what this project's answers cost.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any, Iterable

from graphrag_flow.hashing import sha256_json


#: Never part of a key: a key must not carry a secret, and must not change between runs
#: or providers that would give the same answer.
_NOT_KEY_PARTS = frozenset({"api_key", "key", "authorization", "api_base", "base_url", "run_id"})
#: Keys per SELECT ... IN (...): well under SQLite's limit on bound parameters.
_LOOKUP_CHUNK = 500
#: What an answer was billed, beside it.
_USAGE_COLUMNS = ("prompt_tokens", "completion_tokens")
_INSERT = "INSERT OR REPLACE INTO answers (key, value, prompt_tokens, completion_tokens) VALUES (?, ?, ?, ?)"
#: A row to store: key, answer, and its billed prompt and completion tokens (None: not known).
Row = tuple[str, str, "int | None", "int | None"]


def answer_key(model: str, messages: list[dict], schema_name: str, schema: Any, temperature: float, **other: Any) -> str:
    """sha256 of the canonical JSON of everything that changes an answer.

    The response_format mode (json_schema or the json_object fallback) is left out on
    purpose: both ask for, and validate against, the same schema, and a re-run must find
    answers stored before the client learned that a server needs the fallback.
    """
    bad = _NOT_KEY_PARTS.intersection(k.lower() for k in other)
    if bad:
        raise ValueError(f"answer_key must not include {', '.join(sorted(bad))}")
    return sha256_json(
        {"model": model, "messages": messages, "schema_name": schema_name, "schema": schema,
         "temperature": temperature, **other}
    )


class AnswerCache:
    """key -> answer text; usable from several threads (one connection, one lock)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        # isolation_level=None: autocommit, so each put() is its own committed transaction.
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            self._add_usage_columns()

    def _add_usage_columns(self) -> None:
        """Migrates a cache made before usage was stored, in place: its rows keep their
        answers and get NULL usage (ALTER TABLE ADD COLUMN rewrites no row)."""
        have = {row[1] for row in self._db.execute("PRAGMA table_info(answers)")}
        for column in _USAGE_COLUMNS:
            if column not in have:
                try:
                    self._db.execute(f"ALTER TABLE answers ADD COLUMN {column} INTEGER")
                except sqlite3.OperationalError as exc:  # another process added it meanwhile
                    if "duplicate column" not in str(exc):
                        raise

    def get(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM answers WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def get_many(self, keys: Iterable[str]) -> dict[str, str]:
        """The stored answers among `keys` (absent keys are left out)."""
        return {key: value for key, value, _p, _c in self._select(keys, "key, value, 0, 0")}

    def usage_many(self, keys: Iterable[str]) -> dict[str, tuple[int | None, int | None]]:
        """(prompt_tokens, completion_tokens) stored with each answer among `keys` (None: not known)."""
        return {key: (p, c) for key, _v, p, c in self._select(keys, "key, 0, prompt_tokens, completion_tokens")}

    def _select(self, keys: Iterable[str], columns: str) -> list[tuple]:
        wanted = list(dict.fromkeys(keys))
        found: list[tuple] = []
        with self._lock:
            for start in range(0, len(wanted), _LOOKUP_CHUNK):
                chunk = wanted[start : start + _LOOKUP_CHUNK]
                marks = ",".join("?" * len(chunk))
                found += self._db.execute(f"SELECT {columns} FROM answers WHERE key IN ({marks})", chunk)
        return found

    def put(self, key: str, value: str, prompt_tokens: int | None = None, completion_tokens: int | None = None) -> None:
        with self._lock:
            self._db.execute(_INSERT, (key, value, prompt_tokens, completion_tokens))

    def put_many(self, items: Iterable[Row | tuple[str, str]]) -> None:
        """All of `items` in one committed transaction: one fsync for the lot (group commit).
        An item without usage, (key, value), stores NULL usage."""
        rows = [item if len(item) == 4 else (*item, None, None) for item in items]
        if not rows:
            return
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(_INSERT, rows)
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:  # e.g. a full disk at COMMIT: leave no transaction open
                    self._db.execute("ROLLBACK")
                raise

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT count(*) FROM answers").fetchone()[0]

    def close(self) -> None:
        """Idempotent: a run's finally-block may close a cache a failed step closed already."""
        with self._lock:
            self._db.close()
