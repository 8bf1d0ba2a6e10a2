"""The graph the output tables describe, as parameter rows per label and relationship type, and
the statements that write it (pure: no driver; also the expected graph `verify` compares with)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from graphrag_flow.stages.neo4j.cypher import (
    DELETE, DELETE_TARGETS, NODE_LABELS, REL_TYPES, UPSERT, Statement,
)


@dataclass(frozen=True)
class GraphRows:
    """The graph the tables describe, as parameter rows per label/type (sorted, deduplicated)."""

    rows: dict[str, list[dict[str, Any]]]
    skipped_edges: dict[str, int]

    def counts(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.rows.items()}


def _py(value: Any) -> Any:
    """A pandas/numpy cell as a plain Python value the driver packs (NaN/NA -> None)."""
    if value is None:
        return None
    if hasattr(value, "item") and not isinstance(value, (str, bytes)) and getattr(value, "ndim", 0) == 0:
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if value is pd.NA or value is pd.NaT:
        return None
    return value


def _ids(value: Any) -> list[str]:
    """A list cell (list, tuple, numpy array or None) as a list of str."""
    if value is None:
        return []
    if isinstance(value, float) and math.isnan(value):
        return []
    return [str(v) for v in list(value)]


def _frame(tables: Mapping[str, pd.DataFrame], name: str, columns: Iterable[str]) -> pd.DataFrame:
    if name not in tables or tables[name] is None:
        raise ValueError(f"neo4j sink: table '{name}' is missing (pass an empty frame if it has no rows)")
    frame = tables[name]
    missing = [c for c in columns if c not in frame.columns]
    if missing and len(frame):
        raise ValueError(f"neo4j sink: table '{name}' lacks column(s) {missing}")
    if missing:  # an empty frame without columns
        frame = pd.DataFrame({c: [] for c in columns})
    return frame


def graph_rows(tables: Mapping[str, pd.DataFrame]) -> GraphRows:
    """Map the output tables to node and edge rows (pure; the expected graph for verify)."""
    docs = _frame(tables, "documents", ["id", "title"])
    units = _frame(tables, "text_units", ["id", "text", "n_tokens", "document_id"])
    ents = _frame(tables, "entities", ["id", "title", "type", "description", "degree", "text_unit_ids"])
    rels = _frame(tables, "relationships", ["id", "source", "target", "description", "weight"])
    comms = _frame(tables, "communities", ["id", "community", "level", "parent", "title", "entity_ids"])
    reports = _frame(tables, "community_reports", ["community", "summary", "rank"])

    def node_rows(frame: pd.DataFrame, props: dict[str, str]) -> list[dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for rec in frame.to_dict("records"):
            row = {"id": str(rec["id"])}
            row.update({prop: _py(rec[col]) for prop, col in props.items()})
            out[row["id"]] = row
        return [out[k] for k in sorted(out)]

    rows: dict[str, list[dict[str, Any]]] = {}
    rows["Document"] = node_rows(docs, {"title": "title"})
    rows["Chunk"] = node_rows(units, {"text": "text", "n_tokens": "n_tokens"})
    rows["Entity"] = node_rows(
        ents, {"title": "title", "type": "type", "description": "description", "degree": "degree"}
    )
    report_by_number = {int(_py(r["community"])): r for r in reports.to_dict("records")}
    comm_rows: dict[str, dict[str, Any]] = {}
    for rec in comms.to_dict("records"):
        report = report_by_number.get(int(_py(rec["community"])), {})
        cid = str(rec["id"])
        comm_rows[cid] = {
            "id": cid,
            "level": _py(rec["level"]),
            "title": _py(rec["title"]),
            "summary": _py(report.get("summary")),
            "rating": _py(report.get("rank")),
        }
    rows["Community"] = [comm_rows[k] for k in sorted(comm_rows)]

    doc_ids = {r["id"] for r in rows["Document"]}
    chunk_ids = {r["id"] for r in rows["Chunk"]}
    entity_ids = {r["id"] for r in rows["Entity"]}
    comm_ids = set(comm_rows)
    skipped: dict[str, int] = {t: 0 for t in REL_TYPES}

    def edges(kind: str, pairs: Iterable[tuple[str, str]], sources: set[str], targets: set[str]) -> None:
        kept = set()
        for s, t in pairs:
            if s in sources and t in targets:
                kept.add((s, t))
            else:
                skipped[kind] += 1
        rows[kind] = [{"source": s, "target": t} for s, t in sorted(kept)]

    edges(
        "PART_OF",
        ((str(r["id"]), str(r["document_id"])) for r in units.to_dict("records")),
        chunk_ids,
        doc_ids,
    )
    title_to_id = {str(r["title"]): str(r["id"]) for r in ents.to_dict("records")}
    related: dict[str, dict[str, Any]] = {}
    for rec in rels.to_dict("records"):
        s, t = title_to_id.get(str(rec["source"])), title_to_id.get(str(rec["target"]))
        if s is None or t is None:
            skipped["RELATED"] += 1
            continue
        rid = str(rec["id"])
        related[rid] = {
            "id": rid,
            "source": s,
            "target": t,
            "description": _py(rec["description"]),
            "weight": _py(rec["weight"]),
        }
    rows["RELATED"] = [related[k] for k in sorted(related)]
    edges(
        "MENTIONED_IN",
        ((str(r["id"]), tu) for r in ents.to_dict("records") for tu in _ids(r["text_unit_ids"])),
        entity_ids,
        chunk_ids,
    )
    edges(
        "IN_COMMUNITY",
        ((e, str(r["id"])) for r in comms.to_dict("records") for e in _ids(r["entity_ids"])),
        entity_ids,
        comm_ids,
    )
    number_to_id = {int(_py(r["community"])): str(r["id"]) for r in comms.to_dict("records")}
    parents = []
    for rec in comms.to_dict("records"):
        parent = _py(rec["parent"])
        if parent is None or int(parent) < 0:
            continue
        parents.append((str(rec["id"]), number_to_id.get(int(parent), f"<community {int(parent)}>")))
    edges("PARENT", parents, comm_ids, comm_ids)
    return GraphRows(rows=rows, skipped_edges={k: v for k, v in skipped.items() if v})


def _batched(items: list[Any], size: int) -> tuple[tuple[Any, ...], ...]:
    return tuple(tuple(items[i : i + size]) for i in range(0, len(items), size))


def build_statements(
    tables: Mapping[str, pd.DataFrame] | None,
    *,
    deletes: Mapping[str, Iterable[str]] | None = None,
    batch_size: int = 1000,
) -> list[Statement]:
    """All write statements, in the order they run: deletes, then nodes, then edges (pure).

    `deletes` maps a table name (documents, text_units, entities, relationships, communities) to
    ids that left the index; an id that is still in `tables` is never deleted. Empty statements
    are left out.
    """
    if batch_size <= 0:
        raise ValueError("neo4j.batch_size must be > 0")
    graph = graph_rows(tables) if tables is not None else None
    live: dict[str, set[str]] = {}
    if graph is not None:
        live = {k: {r["id"] for r in v} for k, v in graph.rows.items() if k in DELETE}
    statements: list[Statement] = []
    unknown = set(deletes or {}) - set(DELETE_TARGETS)
    if unknown:
        raise ValueError(f"neo4j sink: cannot delete from {sorted(unknown)}; use {sorted(DELETE_TARGETS)}")
    for table, target in DELETE_TARGETS.items():
        ids = sorted({str(i) for i in (deletes or {}).get(table, ())} - live.get(target, set()))
        if ids:
            statements.append(Statement(target, "delete", DELETE[target], "ids", _batched(ids, batch_size)))
    if graph is not None:
        for target in (*NODE_LABELS, *REL_TYPES):
            rows = graph.rows[target]
            if rows:
                statements.append(Statement(target, "upsert", UPSERT[target], "rows", _batched(rows, batch_size)))
    return statements


def compute_deletes(old: Mapping[str, pd.DataFrame], new: Mapping[str, pd.DataFrame]) -> dict[str, list[str]]:
    """Ids present in the previous run's tables and absent from this run's (for `deletes`)."""
    out: dict[str, list[str]] = {}
    for table in DELETE_TARGETS:
        before = set(old[table]["id"].astype(str)) if table in old and old[table] is not None else set()
        after = set(new[table]["id"].astype(str)) if table in new and new[table] is not None else set()
        gone = sorted(before - after)
        if gone:
            out[table] = gone
    return out


