"""Our parquet and LanceDB tables have GraphRAG 3.3.0's columns, types and order (no GraphRAG needed).

The reference is tests/graphrag_schema/graphrag_3_3_0.json, derived from GraphRAG 3.3.0 itself:
tests/graphrag_schema/derive_schema.py runs GraphRAG's own indexer (with its built-in mock
models) and records the Arrow schema of every table it writes (see that file's docstring).
It is a checked-in file, not graphrag-flow's own SCHEMAS, so a drift in tables.py shows here.
"""

from __future__ import annotations

import json
from pathlib import Path

import lancedb
import pyarrow as pa
import pyarrow.parquet as pq
from graphrag_flow.storage.vectors import vector_schema
from graphrag_flow.tables import SCHEMAS, VECTOR_FIELDS

from graphrag_schema.arrow_types import canonical_type  # the rules the reference was written with

REFERENCE = Path(__file__).parent / "graphrag_schema" / "graphrag_3_3_0.json"
OURS = [["content_sha256", "string"], ["model", "string"]]


def reference() -> dict:
    return json.loads(REFERENCE.read_text(encoding="utf-8"))


def _columns(schema: pa.Schema) -> list[list[str]]:
    return [[f.name, canonical_type(f.type)] for f in schema]


def schema_mismatches(output_dir: Path) -> list[str]:
    """Every difference between a graphrag-flow output folder and GraphRAG 3.3.0's tables."""
    ref = reference()
    problems = []
    for name, columns in ref["tables"].items():
        got = _columns(pq.read_schema(Path(output_dir) / f"{name}.parquet"))
        if got != columns + OURS:
            problems.append(f"{name}.parquet: {got} != GraphRAG {columns} + {OURS}")
    db = lancedb.connect(str(Path(output_dir) / "lancedb"))
    dimensions = set()
    for name, spec in ref["vector_tables"].items():
        schema = db.open_table(name).schema
        got = _columns(schema)
        if got != spec["columns"] + OURS:
            problems.append(f"lancedb/{name}: {got} != GraphRAG {spec['columns']} + {OURS}")
        dimensions.add(schema.field("vector").type.list_size if pa.types.is_fixed_size_list(schema.field("vector").type) else None)
    if len(dimensions) != 1 or None in dimensions:
        problems.append(f"vector tables do not share one fixed dimension: {dimensions}")
    return problems


def test_reference_was_derived_from_graphrag_3_3_0():
    ref = reference()
    assert ref["graphrag_version"] == "3.3.0"
    assert set(ref["tables"]) == set(SCHEMAS)
    assert set(ref["vector_tables"]) == set(VECTOR_FIELDS)
    # spot checks of what the issue names, so a regenerated file that lost them fails here
    reports = dict(map(tuple, ref["tables"]["community_reports"]))
    assert reports["rank"] == "float64" and "rating" not in reports
    assert reports["findings"] == "struct<explanation: string, summary: string>".join(["list<", ">"])
    assert dict(map(tuple, ref["tables"]["communities"]))["children"] == "list<int64>"


def test_declared_schemas_equal_graphrag_3_3_0():
    ref = reference()
    for name, columns in ref["tables"].items():
        assert _columns(SCHEMAS[name]) == columns + OURS, name


def test_declared_vector_schema_equals_graphrag_3_3_0():
    ref = reference()
    for name, spec in ref["vector_tables"].items():
        assert _columns(vector_schema(384)) == spec["columns"] + OURS, name


# The tables an index actually writes are compared with the reference by schema_mismatches in
# tests/test_graphrag_query.py (an openai-provider and an offline-provider index), and with
# SCHEMAS by tests/test_index_offline.py: no extra index run here.
