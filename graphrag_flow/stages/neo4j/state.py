"""Incremental state and the run summary of the sink: the ids the last successful sink wrote (so
the next deletes what left the index), and one summary row per label and relationship type."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from graphrag_flow.errors import Neo4jSinkError
from graphrag_flow.stages.neo4j.checkpoint import WriteSummary
from graphrag_flow.stages.neo4j.cypher import DELETE_TARGETS, NODE_LABELS, REL_TYPES
from graphrag_flow.stages.neo4j.graph import graph_rows


def live_ids(tables: Mapping[str, pd.DataFrame]) -> dict[str, list[str]]:
    """The ids per deletable table (documents, text_units, entities, relationships, communities)."""
    return {
        table: sorted({str(i) for i in tables[table]["id"]}) if table in tables and tables[table] is not None else []
        for table in DELETE_TARGETS
    }


class SinkState:
    """The ids the last *successful* sink wrote to Neo4j, in a JSON file.

    The next run deletes what left the index since then (`deletes`). It is saved only after a
    verified write, so a failed or interrupted sink leaves it alone and the next run still
    applies those deletes (they are idempotent, and checkpointed per batch like the writes).
    It is not keyed on the URI: deleting absent ids in another database is a harmless no-op.
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)

    def load(self) -> dict[str, list[str]]:
        if not self.path.exists():
            return {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise Neo4jSinkError(
                f"neo4j sink state {self.path} is unreadable ({exc}); delete it, then remove by hand any "
                "nodes whose ids left the index since the last sink run"
            ) from None
        return {str(k): [str(i) for i in v] for k, v in data.get("ids", {}).items()}

    def deletes(self, tables: Mapping[str, pd.DataFrame]) -> dict[str, list[str]]:
        """Ids the last successful sink wrote that the current tables no longer hold."""
        before, now = self.load(), live_ids(tables)
        out = {}
        for table in DELETE_TARGETS:
            gone = sorted(set(before.get(table, ())) - set(now[table]))
            if gone:
                out[table] = gone
        return out

    def save(self, tables: Mapping[str, pd.DataFrame]) -> None:
        from graphrag_flow.storage.atomic import write_json

        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_json({"ids": live_ids(tables)}, self.path)


#: Where each label/type comes from in the parquet tables (for the run summary).
PARQUET_SOURCES: dict[str, str] = {
    "Document": "documents",
    "Chunk": "text_units",
    "Entity": "entities",
    "Community": "communities",
    "PART_OF": "text_units.document_id",
    "RELATED": "relationships",
    "MENTIONED_IN": "entities.text_unit_ids",
    "IN_COMMUNITY": "communities.entity_ids",
    "PARENT": "communities.parent",
}


def summary_rows(tables: Mapping[str, pd.DataFrame], summary: WriteSummary) -> list[dict[str, Any]]:
    """One row per label/type: parquet rows, graph rows expected, written/created/deleted, in Neo4j.

    `parquet_rows` counts the rows (or id pairs) in the tables; `expected` leaves out edges whose
    endpoint is missing (`skipped`); `in_neo4j` is what the database holds after the write.
    """
    graph = graph_rows(tables)
    expected = graph.counts()
    actual = summary.verification.actual if summary.verification is not None else {}
    rows = []
    for name in (*NODE_LABELS, *REL_TYPES):
        skipped = graph.skipped_edges.get(name, 0)
        in_neo4j = actual.get(name)
        rows.append({
            "kind": "node" if name in NODE_LABELS else "relationship",
            "name": name,
            "parquet": PARQUET_SOURCES[name],
            "parquet_rows": expected[name] + skipped,
            "skipped": skipped,
            "expected": expected[name],
            "written": summary.written.get(name, 0),
            "created": summary.created.get(name, 0),
            "deleted": summary.deleted.get(name, 0),
            "in_neo4j": in_neo4j,
            "match": in_neo4j == expected[name] if in_neo4j is not None else None,
        })
    return rows
