"""LanceDB vector tables: one per embedded field, and each one is its own checkpoint.

Rows are merged on `id` batch by batch (never `overwrite`), so a table always holds whole
batches of finished work; a re-run embeds only rows whose (id, content_sha256, model) are
missing, and deletes rows whose source left the index.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import lancedb
import numpy as np
import pyarrow as pa

#: Merges after which the table is compacted (many small merges slow LanceDB down: docs/stack-notes.md).
OPTIMIZE_EVERY = 200
_DELETE_CHUNK = 500


def vector_schema(dimension: int) -> pa.Schema:
    return pa.schema(
        [
            pa.field("id", pa.string(), nullable=False),
            pa.field("vector", pa.list_(pa.float32(), dimension)),
            pa.field("content_sha256", pa.string()),
            pa.field("model", pa.string()),
        ]
    )


@dataclass(frozen=True)
class VectorTableState:
    rows: int
    dimension: int | None
    keys: set[tuple[str, str, str]]  # (id, content_sha256, model)
    duplicate_ids: int


class VectorTable:
    """One field's table under `output/lancedb/`; safe to call from one writer thread at a time."""

    def __init__(self, db_dir: Path | str, name: str, storage_options: dict[str, str] | None = None):
        #: A local folder, or a store URL (`s3://…/lancedb`, read with `storage_options`).
        self.remote = isinstance(db_dir, str) and "://" in db_dir
        self.db_dir = db_dir if self.remote else Path(db_dir)
        self.storage_options = storage_options or {}
        self.name = name
        self._lock = threading.Lock()
        self._merges = 0

    def _db(self) -> lancedb.DBConnection:
        if self.remote:
            return lancedb.connect(str(self.db_dir), storage_options=self.storage_options)
        self.db_dir.mkdir(parents=True, exist_ok=True)
        return lancedb.connect(str(self.db_dir))

    def exists(self) -> bool:
        if not self.remote and not self.db_dir.is_dir():
            return False
        return self.name in self._db().list_tables().tables

    def _open(self):
        return self._db().open_table(self.name)

    def state(self) -> VectorTableState:
        if not self.exists():
            return VectorTableState(0, None, set(), 0)
        table = self._open()
        arrow = table.to_arrow()
        ids = arrow.column("id").to_pylist()
        shas = arrow.column("content_sha256").to_pylist()
        models = arrow.column("model").to_pylist()
        vec_type = arrow.schema.field("vector").type
        dim = vec_type.list_size if pa.types.is_fixed_size_list(vec_type) else None
        return VectorTableState(len(ids), dim, set(zip(ids, shas, models)), len(ids) - len(set(ids)))

    def prepare(self, dimension: int) -> bool:
        """Create the table, or drop it if it holds vectors of another dimension (a new model).

        True when it dropped rows: every row planned as "already embedded" is then gone, which
        the embed stage's count after its pass finds and repairs.
        """
        with self._lock:
            db = self._db()
            reset = False
            if self.name in db.list_tables().tables:
                vec_type = db.open_table(self.name).schema.field("vector").type
                if pa.types.is_fixed_size_list(vec_type) and vec_type.list_size == dimension:
                    return False
                db.drop_table(self.name)
                reset = True
            db.create_table(self.name, schema=vector_schema(dimension), exist_ok=True)
            return reset

    def merge(self, ids: list[str], vectors: np.ndarray, shas: list[str], model: str) -> int:
        """Upsert one finished batch on `id`; duplicate ids in a batch would be inserted twice."""
        if len(ids) != len(set(ids)):
            raise ValueError(f"{self.name}: duplicate ids in one batch")
        vectors = np.asarray(vectors, dtype=np.float32)
        dim = vectors.shape[1]
        batch = pa.table(
            {
                "id": pa.array(ids, pa.string()),
                "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1), pa.float32()), dim),
                "content_sha256": pa.array(shas, pa.string()),
                "model": pa.array([model] * len(ids), pa.string()),
            },
            schema=vector_schema(dim),
        )
        with self._lock:
            table = self._open()
            table.merge_insert("id").when_matched_update_all().when_not_matched_insert_all().execute(batch)
            self._merges += 1
            if self._merges % OPTIMIZE_EVERY == 0:
                table.optimize()
        return len(ids)

    def delete_ids(self, ids: list[str]) -> int:
        if not ids or not self.exists():
            return 0
        with self._lock:
            table = self._open()
            for start in range(0, len(ids), _DELETE_CHUNK):
                chunk = ids[start : start + _DELETE_CHUNK]
                quoted = ",".join("'" + i.replace("'", "''") + "'" for i in chunk)
                table.delete(f"id IN ({quoted})")
        return len(ids)

    def optimize(self) -> None:
        if self.exists():
            with self._lock:
                self._open().optimize()

    def read(self) -> pa.Table:
        return self._open().to_arrow()
