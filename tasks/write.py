"""Write task: GraphRAG's parquet tables (atomically), verification, then the manifest."""

from __future__ import annotations

import asyncio

from prefect import task
from prefect.cache_policies import NO_CACHE

from graphrag_flow.hashing import CODE_VERSION
from graphrag_flow.outputs import add_empty_vector_tables, assemble_tables, verify_outputs, write_manifest, write_tables
from graphrag_flow.storage.stages import StageRef
from tasks._common import current_run, timed


def _write(documents, text_units, graph, communities, reports, embedding_model, graph_model, flow_run_id) -> dict:
    run = current_run()
    store = run.store
    degrees = store.load(communities, "degrees")
    tables = assemble_tables(
        documents=store.load(documents, "documents"),
        text_units=store.load(text_units, "text_units"),
        entities=store.load(graph, "entities"),
        relationships=store.load(graph, "relationships"),
        communities=store.load(communities, "communities"),
        reports=store.load(reports, "community_reports"),
        degree=dict(zip(degrees["title"], degrees["degree"])),
        graph_model=graph_model,
    )
    add_empty_vector_tables(tables, run.lancedb_dir)
    checks = verify_outputs(tables, run.lancedb_dir, embedding_model, unit_length=True)
    counts = write_tables(tables, run.out_dir)
    docs = tables["documents"]
    manifest = {
        "run_id": flow_run_id,
        "settings_sha256": run.settings.fingerprint(),
        "code_version": CODE_VERSION,
        "tables": counts,
        "vector_tables": {c.field: {"rows": c.rows, "dimension": c.dimension} for c in checks},
        "embedding_model": embedding_model,
        "documents": [
            {"id": i, "title": t, "content_sha256": s}
            for i, t, s in zip(docs["id"], docs["title"], docs["content_sha256"])
        ],
    }
    write_manifest(run.out_dir, manifest)
    return manifest


@task(name="write-outputs", task_run_name="write-outputs", cache_policy=NO_CACHE)
async def write_stage(
    documents: StageRef,
    text_units: StageRef,
    graph: StageRef,
    communities: StageRef,
    reports: StageRef,
    embedding_model: str,
    graph_model: str,
    flow_run_id: str,
) -> dict:
    with timed("write"):
        return await asyncio.to_thread(
            _write, documents, text_units, graph, communities, reports, embedding_model, graph_model, flow_run_id
        )
