"""Write task: GraphRAG's parquet tables into the run's staging folder, verified as written, then
the manifest (last). The flow switches the folder in afterwards; nothing served is written here."""

from __future__ import annotations

import asyncio

from prefect import task
from prefect.cache_policies import NO_CACHE

from graphrag_flow.errors import OutputWriteError, VerifyError
from graphrag_flow.storage.faults import kill_point
from graphrag_flow.hashing import CODE_VERSION
from graphrag_flow.stages.write import assemble_tables
from graphrag_flow.storage.outputs import (
    MANIFEST, add_empty_vector_tables, read_table, verify_outputs, write_manifest, write_tables,
)
from graphrag_flow.storage.stages import StageRef
from tasks._common import current_run, timed


def _write(documents, text_units, graph, communities, reports, embedding_model, graph_model, flow_run_id) -> dict:
    run = current_run()
    store = run.store
    # a folder's manifest says its outputs verified: not true of a killed attempt's any more
    (run.out_dir / MANIFEST).unlink(missing_ok=True)
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
    counts = write_tables(tables, run.out_dir, after_each=lambda name: kill_point(f"write:{name}"))
    del tables
    # verified as written, read back from the files the switch will serve
    tables = {name: read_table(run.out_dir, name) for name in counts}
    checks = verify_outputs(tables, run.lancedb_dir, embedding_model, unit_length=True)
    if {name: len(frame) for name, frame in tables.items()} != counts:
        raise VerifyError(f"outputs do not verify: tables in {run.out_dir} hold other row counts than written")
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
    kill_point("write:manifest")
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
        try:
            return await asyncio.to_thread(
                _write, documents, text_units, graph, communities, reports, embedding_model, graph_model, flow_run_id
            )
        except OSError as exc:
            where = exc.filename or current_run().out_dir
            raise OutputWriteError(
                f"writing the outputs failed at {where}: {exc.strerror or exc}; output/ is the last completed "
                "run's, unchanged, and the next run resumes from what was written"
            ) from None
