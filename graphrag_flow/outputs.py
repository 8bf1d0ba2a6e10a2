"""The write stage: assemble GraphRAG's tables, write them atomically, verify, record the run.

They are written into the run's staging folder (each file by rename), verified as written, and
the manifest last: a folder's manifest names the run whose outputs there all verified. The
flow then switches the folder in (graphrag_flow/storage/generations.py).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from graphrag_flow.errors import VerifyError
from graphrag_flow.hashing import sha256_json
from graphrag_flow.storage.atomic import read_json, write_json, write_parquet
from graphrag_flow.storage.vectors import VectorTable
from graphrag_flow.tables import SCHEMAS, VECTOR_FIELDS, conform, embedding_inputs, with_readable_ids

MANIFEST = "_manifest.json"
LANCEDB_DIR = "lancedb"


def community_periods(communities: pd.DataFrame, text_units: pd.DataFrame, documents: pd.DataFrame) -> list[str]:
    """A community's period: the newest creation date (YYYY-MM-DD) of its documents."""
    doc_date = dict(zip(documents["id"], documents["creation_date"].str.slice(0, 10)))
    unit_date = {u: doc_date[d] for u, d in zip(text_units["id"], text_units["document_id"])}
    return [max((unit_date[u] for u in units if u in unit_date), default="") for units in communities["text_unit_ids"]]


def assemble_tables(
    documents: pd.DataFrame,
    text_units: pd.DataFrame,
    entities: pd.DataFrame,
    relationships: pd.DataFrame,
    communities: pd.DataFrame,
    reports: pd.DataFrame,
    degree: dict[str, int],
    graph_model: str,
) -> dict[str, pd.DataFrame]:
    """The six output tables with GraphRAG's columns, ids ordered and numbered."""
    units_by_doc = (
        text_units.sort_values(["document_id", "chunk_index"]).groupby("document_id")["id"].agg(list).to_dict()
    )
    docs = documents.copy()
    docs["text_unit_ids"] = [units_by_doc.get(i, []) for i in docs["id"]]
    docs["raw_data"] = None
    docs["model"] = ""

    ent_by_unit: dict[str, list[str]] = defaultdict(list)
    for eid, units in zip(entities["id"], entities["text_unit_ids"]):
        for u in units:
            ent_by_unit[u].append(eid)
    rel_by_unit: dict[str, list[str]] = defaultdict(list)
    for rid, units in zip(relationships["id"], relationships["text_unit_ids"]):
        for u in units:
            rel_by_unit[u].append(rid)
    units = text_units.copy()
    units["entity_ids"] = [sorted(ent_by_unit.get(u, [])) for u in units["id"]]
    units["relationship_ids"] = [sorted(rel_by_unit.get(u, [])) for u in units["id"]]
    units["covariate_ids"] = [[] for _ in range(len(units))]
    units["model"] = ""

    ents = entities.copy()
    ents["degree"] = [int(degree.get(t, 0)) for t in ents["title"]]
    ents["model"] = graph_model

    rels = relationships.copy()
    rels["combined_degree"] = [int(degree.get(s, 0) + degree.get(t, 0)) for s, t in zip(rels["source"], rels["target"])]
    rels["model"] = graph_model

    comms = communities.copy()
    comms["period"] = community_periods(comms, text_units, documents)
    comms["content_sha256"] = [
        sha256_json([e, r]) for e, r in zip(comms["entity_ids"], comms["relationship_ids"])
    ]
    comms["model"] = ""

    reps = reports.copy()
    reps["model"] = graph_model

    tables = {
        "documents": with_readable_ids(docs),
        "text_units": with_readable_ids(units),
        "entities": with_readable_ids(ents),
        "relationships": with_readable_ids(rels),
        "communities": with_readable_ids(comms),
    }
    reps = reps.sort_values("community", kind="stable").reset_index(drop=True)
    reps.insert(1, "human_readable_id", reps["community"].astype("int64"))
    tables["community_reports"] = reps
    return {name: conform(name, frame) for name, frame in tables.items()}


def write_tables(tables: dict[str, pd.DataFrame], out_dir: Path,
                 after_each: Callable[[str], None] | None = None) -> dict[str, int]:
    for name, frame in tables.items():
        write_parquet(frame, Path(out_dir) / f"{name}.parquet", schema=SCHEMAS[name])
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


def check_vectors(tables: dict[str, pd.DataFrame], lancedb_dir: Path, model: str, unit_length: bool) -> list[VectorCheck]:
    """One vector per source row, current text, right model, no duplicates, one dimension."""
    from graphrag_flow.hashing import sha256_text

    checks = []
    for field, source in VECTOR_FIELDS.items():
        inputs = embedding_inputs(field, tables[source])
        expected = dict(zip(inputs["id"], (sha256_text(t) for t in inputs["text"])))
        table = VectorTable(lancedb_dir, field)
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


def verify_outputs(tables: dict[str, pd.DataFrame], lancedb_dir: Path, model: str, unit_length: bool) -> list[VectorCheck]:
    checks = check_vectors(tables, lancedb_dir, model, unit_length)
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
