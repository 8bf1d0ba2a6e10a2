"""The neo4j stage: the knowledge graph of the written outputs into Neo4j (the flow's last stage,
when `neo4j.uri` is set). No Prefect imports.

Model (labels, relationship types and property names are constants of cypher.py, never taken
from data; every value travels as a query parameter):

    (:Document {id, title})
    (:Chunk {id, text, n_tokens})-[:PART_OF]->(:Document)
    (:Entity {id, title, type, description, degree})
    (:Entity)-[:RELATED {id, description, weight}]->(:Entity)
    (:Entity)-[:MENTIONED_IN]->(:Chunk)
    (:Community {id, level, title, summary, rating})
    (:Entity)-[:IN_COMMUNITY]->(:Community)
    (:Community)-[:PARENT]->(:Community)

The package, in the order a write goes: cypher.py (the statements), graph.py (the tables as
node and edge rows, and the statements that write them), sink.py (the driver: connect,
constraints, batches, verify), checkpoint.py (committed batches, so a sink that crashed resumes
at the next batch; what a write did), state.py (the ids the last successful sink wrote, so the
next run deletes what left the index; the summary rows). `sink_outputs` below is the whole
stage on one output folder.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from graphrag_flow.config import Settings
from graphrag_flow.progress import StageProgress
from graphrag_flow.stages.neo4j.checkpoint import BatchCheckpoint, BatchProgress, Verification, WriteSummary, batch_key
from graphrag_flow.stages.neo4j.cypher import (
    CONSTRAINTS, COUNT_QUERIES, DELETE_TARGETS, NODE_LABELS, REL_TYPES, TABLES, Statement,
)
from graphrag_flow.stages.neo4j.graph import GraphRows, build_statements, compute_deletes, graph_rows
from graphrag_flow.stages.neo4j.sink import USER_AGENT, Neo4jSink, safe_uri, write_graph, write_graph_async
from graphrag_flow.stages.neo4j.state import PARQUET_SOURCES, SinkState, live_ids, summary_rows
from graphrag_flow.storage.outputs import read_table
from graphrag_flow.storage.paths import ProjectPaths
from graphrag_flow.tables import SCHEMAS

__all__ = [
    "CONSTRAINTS", "COUNT_QUERIES", "DELETE_TARGETS", "NODE_LABELS", "PARQUET_SOURCES", "REL_TYPES", "TABLES",
    "USER_AGENT", "BatchCheckpoint", "BatchProgress", "GraphRows", "Neo4jSink", "SinkState", "Statement",
    "Verification", "WriteSummary", "batch_key", "build_statements", "compute_deletes", "graph_rows", "live_ids",
    "safe_uri", "sink_outputs", "summary_rows", "write_graph", "write_graph_async",
]

#: The stage's name in progress bars, the run summary and errors.
STAGE = "neo4j"


def sink_outputs(
    output: Path, paths: ProjectPaths, settings: Settings, password: str | None, full: bool, cancel: threading.Event
) -> dict[str, Any]:
    """The whole stage, blocking (run it in a worker thread): read the tables in `output`, delete
    what left the index since the last successful sink, write, verify, save the state.

    What it keeps beside the project's caches (ProjectPaths): the committed batches
    (`neo4j_batches`; cleared after a verified write, and under `full`, when MERGE makes redoing
    every batch harmless) and the ids the last successful sink wrote (`neo4j_state`). `cancel`
    stops the write after the batch in flight.
    """
    tables = {name: read_table(output, name) for name in SCHEMAS}
    state = SinkState(paths.neo4j_state)
    checkpoint = BatchCheckpoint(paths.neo4j_batches)
    if full:
        checkpoint.clear()
    deletes = state.deletes(tables)
    bar: list[StageProgress] = []

    def on_batch(p: BatchProgress) -> None:
        if not bar:
            bar.append(StageProgress(STAGE, p.total))
        bar[0].advance()

    summary = write_graph(
        settings.neo4j, password, tables, deletes, checkpoint=checkpoint, on_batch=on_batch, cancel=cancel
    )
    state.save(tables)
    if bar:
        bar[0].finish()
    return {
        "uri": safe_uri(settings.neo4j.uri or ""),
        "database": settings.neo4j.database,
        "rows": summary_rows(tables, summary),
        "batches": summary.batches,
        "resumed_batches": summary.resumed_batches,
        "deleted": dict(summary.deleted),
        "verified": bool(summary.verification and summary.verification.ok),
    }
