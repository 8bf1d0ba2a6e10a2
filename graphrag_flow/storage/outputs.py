"""A generation's files: GraphRAG's parquet tables, the manifest, and the check that its vector
tables match them.

Every file is written atomically (storage/atomic.py) into the run's staging folder; the manifest
is written last and names the run whose outputs there all verified. `graphrag-flow status` runs
the same checks on the served folder.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from graphrag_flow.errors import VerifyError
from graphrag_flow.hashing import sha256_text
from graphrag_flow.storage.atomic import read_json, write_json, write_parquet
from graphrag_flow.storage.vectors import VectorTable
from graphrag_flow.tables import VECTOR_FIELDS, embedding_inputs, table_schema

MANIFEST = "_manifest.json"
LANCEDB_DIR = "lancedb"


def write_tables(tables: dict[str, pd.DataFrame], out_dir: Path,
                 after_each: Callable[[str], None] | None = None) -> dict[str, int]:
    for name, frame in tables.items():
        write_parquet(frame, Path(out_dir) / f"{name}.parquet", schema=table_schema(name, frame))
        if after_each is not None:
            after_each(name)
    return {name: len(frame) for name, frame in tables.items()}


def read_table(out_dir: Path, name: str) -> pd.DataFrame:
    return pq.read_table(Path(out_dir) / f"{name}.parquet").to_pandas()


@dataclass
class VectorCheck:
    field: str
    source_rows: int
    rows: int
    dimension: int | None
    missing: list[str]
    stale: list[str]
    outdated: list[str]
    duplicates: int
    not_unit: int

    @property
    def ok(self) -> bool:
        if self.source_rows == 0 and self.rows == 0:
            return True
        problems = self.missing or self.stale or self.outdated or self.duplicates or self.not_unit
        return bool(self.dimension) and not problems

    def problem(self) -> str:
        parts = []
        if self.missing:
            parts.append(f"{len(self.missing)} source row(s) without a vector (e.g. {self.missing[:3]})")
        if self.stale:
            parts.append(f"{len(self.stale)} vector(s) of rows no longer in the table (e.g. {self.stale[:3]})")
        if self.outdated:
            parts.append(f"{len(self.outdated)} vector(s) of changed text (e.g. {self.outdated[:3]})")
        if self.duplicates:
            parts.append(f"{self.duplicates} duplicate id(s)")
        if self.not_unit:
            parts.append(f"{self.not_unit} vector(s) not of unit length")
        if not self.dimension and self.source_rows:
            parts.append("no vector table")
        return f"vector table {self.field}: " + "; ".join(parts)


def check_vectors(tables: dict[str, pd.DataFrame], lancedb_dir: Path | str, model: str, unit_length: bool,
                  storage_options: dict[str, str] | None = None) -> list[VectorCheck]:
    """One vector per source row, current text, right model, no duplicates, one dimension.
    `lancedb_dir` is a folder or a store URL (read with `storage_options`)."""
    checks = []
    for field, source in VECTOR_FIELDS.items():
        inputs = embedding_inputs(field, tables[source])
        expected = dict(zip(inputs["id"], (sha256_text(t) for t in inputs["text"])))
        table = VectorTable(lancedb_dir, field, storage_options)
        if not table.exists():
            checks.append(VectorCheck(field, len(expected), 0, None, sorted(expected), [], [], 0, 0))
            continue
        arrow = table.read()
        ids = arrow.column("id").to_pylist()
        shas = dict(zip(ids, arrow.column("content_sha256").to_pylist()))
        models = dict(zip(ids, arrow.column("model").to_pylist()))
        dim = arrow.schema.field("vector").type.list_size
        not_unit = 0
        if unit_length and len(ids):
            vectors = np.asarray(arrow.column("vector").combine_chunks().flatten(), dtype=np.float32).reshape(len(ids), dim)
            not_unit = int((np.abs(np.linalg.norm(vectors, axis=1) - 1.0) > 1e-3).sum())
        checks.append(
            VectorCheck(
                field=field,
                source_rows=len(expected),
                rows=len(ids),
                dimension=dim,
                missing=sorted(set(expected) - set(ids)),
                stale=sorted(set(ids) - set(expected)),
                outdated=sorted(i for i in expected if i in shas and (shas[i] != expected[i] or models[i] != model)),
                duplicates=len(ids) - len(set(ids)),
                not_unit=not_unit,
            )
        )
    return checks


def add_empty_vector_tables(tables: dict[str, pd.DataFrame], lancedb_dir: Path) -> list[str]:
    """Create the table of every vector field with no source rows and no table yet, in the
    dimension of the field tables that exist; returns the fields created.

    GraphRAG's query engine opens the tables it reads, empty or not, and an API's embedding
    dimension is learnt from an answer, which a field with nothing to embed never gets (the
    text units, never empty, always have one).
    """
    fields = {f: VectorTable(lancedb_dir, f) for f in VECTOR_FIELDS}
    present = {f for f, t in fields.items() if t.exists()}
    wanted = [f for f in fields if f not in present and not len(tables[VECTOR_FIELDS[f]])]
    if not wanted:
        return []
    dimension = next((d for d in (fields[f].state().dimension for f in sorted(present)) if d), None)
    if not dimension:
        return []
    for field in wanted:
        fields[field].prepare(dimension)
    return wanted


def verify_outputs(tables: dict[str, pd.DataFrame], lancedb_dir: Path | str, model: str, unit_length: bool,
                   storage_options: dict[str, str] | None = None) -> list[VectorCheck]:
    checks = check_vectors(tables, lancedb_dir, model, unit_length, storage_options)
    bad = [c.problem() for c in checks if not c.ok]
    for name, frame in tables.items():
        if frame["id"].duplicated().any():
            bad.append(f"table {name}: duplicate ids")
    if bad:
        raise VerifyError("outputs do not verify: " + " | ".join(bad))
    return checks


def write_manifest(out_dir: Path, manifest: dict) -> None:
    manifest = dict(manifest, finished_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
    write_json(manifest, Path(out_dir) / MANIFEST)


def read_manifest(out_dir: Path) -> dict | None:
    path = Path(out_dir) / MANIFEST
    return read_json(path) if path.exists() else None
