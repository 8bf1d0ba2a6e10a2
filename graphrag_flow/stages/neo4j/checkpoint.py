"""What a write has done: the committed batches (the unit of resume), progress after each batch,
and the summary and verification of a whole write."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from graphrag_flow.errors import VerifyError
from graphrag_flow.stages.neo4j.cypher import NODE_LABELS, REL_TYPES, Statement


def batch_key(scope: str, statement: Statement, index: int) -> str:
    """Content address of one batch: the same statement and rows at the same target -> same key."""
    payload = json.dumps(
        [scope, statement.cypher, list(statement.batches[index])], sort_keys=True, separators=(",", ":"), default=str
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class BatchCheckpoint:
    """Keys of committed batches, one per line in a file (appended and fsynced per batch).

    A write that crashed skips, on the next run, every batch whose key is here: the batch is
    the unit of resume. Clear it after a completed, verified write.
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self._done: set[str] = set()
        self._torn = False
        if self.path.exists():
            # A torn last line (crash mid-append) is not 64 hex digits: ignored, so that batch is redone.
            text = self.path.read_text(encoding="utf-8")
            self._done = {line.strip() for line in text.splitlines() if len(line.strip()) == 64}
            self._torn = bool(text) and not text.endswith("\n")
        self._lock = threading.Lock()

    def __contains__(self, key: str) -> bool:
        return key in self._done

    def __len__(self) -> int:
        return len(self._done)

    def add(self, key: str) -> None:
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(("\n" if self._torn else "") + key + "\n")
                self._torn = False
                f.flush()
                os.fsync(f.fileno())
            self._done.add(key)

    def clear(self) -> None:
        with self._lock:
            self._done.clear()
            self.path.unlink(missing_ok=True)


@dataclass(frozen=True)
class BatchProgress:
    """Passed to `on_batch` after each batch (committed or skipped as already done)."""

    statement: str  # e.g. "upsert Entity"
    batch: int  # 1-based within the statement
    batches: int
    rows: int
    done: int  # batches finished so far in this write (all statements)
    total: int
    skipped: bool  # True when the checkpoint said it was committed by an earlier run


@dataclass
class Verification:
    """Per label/type: the count the tables call for and the count the database holds."""

    expected: dict[str, int]
    actual: dict[str, int]

    @property
    def mismatches(self) -> dict[str, tuple[int, int]]:
        return {k: (v, self.actual.get(k, 0)) for k, v in self.expected.items() if self.actual.get(k, 0) != v}

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def describe(self) -> str:
        return "; ".join(f"{k}: expected {e}, found {a}" for k, (e, a) in self.mismatches.items())

    def raise_for_mismatch(self) -> None:
        if not self.ok:
            raise VerifyError(f"neo4j graph does not match the output tables: {self.describe()}")


@dataclass
class WriteSummary:
    """What one write did, per label (nodes) and relationship type."""

    written: dict[str, int] = field(default_factory=dict)  # rows merged (sent) per label/type
    created: dict[str, int] = field(default_factory=dict)  # nodes/relationships the server created
    deleted: dict[str, int] = field(default_factory=dict)  # nodes/relationships the server deleted
    skipped_edges: dict[str, int] = field(default_factory=dict)  # edges whose endpoint is not in the tables
    batches: int = 0  # batches committed by this write
    resumed_batches: int = 0  # batches skipped: committed by an earlier, interrupted write
    verification: Verification | None = None

    @property
    def nodes(self) -> dict[str, int]:
        return {k: v for k, v in self.written.items() if k in NODE_LABELS}

    @property
    def relationships(self) -> dict[str, int]:
        return {k: v for k, v in self.written.items() if k in REL_TYPES}

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "written": dict(self.written),
            "created": dict(self.created),
            "deleted": dict(self.deleted),
            "skipped_edges": dict(self.skipped_edges),
            "batches": self.batches,
            "resumed_batches": self.resumed_batches,
        }
        if self.verification is not None:
            out["verification"] = {
                "expected": dict(self.verification.expected),
                "actual": dict(self.verification.actual),
                "ok": self.verification.ok,
            }
        return out


