"""The write stage: GraphRAG's tables assembled from the stages' frames, written into the run's
staging folder, verified as written, then the manifest (last).

A folder's manifest says its outputs verified, so it is removed first (a killed attempt's is no
longer true) and written only after every table and vector table checks out. The flow switches
the folder in afterwards (storage/generations.py); nothing served is written here.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pandas as pd

from graphrag_flow.errors import VerifyError
from graphrag_flow.hashing import sha256_json
from graphrag_flow.stages.communities import community_periods
from graphrag_flow.storage.faults import kill_point
from graphrag_flow.storage.outputs import (
    LANCEDB_DIR, MANIFEST, add_empty_vector_tables, read_table, verify_outputs, write_manifest, write_tables,
)
from graphrag_flow.tables import conform, with_readable_ids


def _raw_data(documents: pd.DataFrame) -> list:
    """A record's input.metadata_columns as (key, value) pairs (raw_data, a map); None for a file."""
    if "metadata" not in documents:  # documents saved before readers carried metadata
        return [None] * len(documents)
    return [sorted(json.loads(m).items()) if isinstance(m, str) else None for m in documents["metadata"]]


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
    docs["raw_data"] = _raw_data(docs)
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

#: The manifest's `execution` for a run whose batch work ran in the flow's process.
LOCAL_EXECUTION = {"task_runner": "local", "workers": 1, "batches_per_worker": {}}


def write_generation(out_dir: Path, frames: dict[str, pd.DataFrame], *, graph_model: str, embedding_model: str,
                     run: dict) -> dict:
    """Write the tables assembled from the stages' `frames` into `out_dir` (whose vector tables
    the embed stages filled), verify them as written, and write the manifest last; returns it.

    `frames`: documents, text_units, entities, relationships, communities, degrees,
    community_reports. `run`: what the manifest says of the run (run_id, settings_sha256,
    code_version, its `usage`, execution). Raises VerifyError when the outputs do not verify, OSError when a file cannot
    be written (the caller names it).
    """
    lancedb_dir = Path(out_dir) / LANCEDB_DIR
    # a folder's manifest says its outputs verified: not true of a killed attempt's any more
    (Path(out_dir) / MANIFEST).unlink(missing_ok=True)
    degrees = frames["degrees"]
    tables = assemble_tables(
        documents=frames["documents"],
        text_units=frames["text_units"],
        entities=frames["entities"],
        relationships=frames["relationships"],
        communities=frames["communities"],
        reports=frames["community_reports"],
        degree=dict(zip(degrees["title"], degrees["degree"])),
        graph_model=graph_model,
    )
    add_empty_vector_tables(tables, lancedb_dir)
    counts = write_tables(tables, out_dir, after_each=lambda name: kill_point(f"write:{name}"))
    del tables
    # verified as written, read back from the files the switch will serve
    tables = {name: read_table(out_dir, name) for name in counts}
    checks = verify_outputs(tables, lancedb_dir, embedding_model, unit_length=True)
    if {name: len(frame) for name, frame in tables.items()} != counts:
        raise VerifyError(f"outputs do not verify: tables in {out_dir} hold other row counts than written")
    docs = tables["documents"]
    manifest = {
        "run_id": run["run_id"],
        "settings_sha256": run["settings_sha256"],
        "code_version": run["code_version"],
        "tables": counts,
        "vector_tables": {c.field: {"rows": c.rows, "dimension": c.dimension} for c in checks},
        "embedding_model": embedding_model,
        # what this run's LLM requests were billed (graphrag_flow/usage.py), when the run says
        **({"usage": run["usage"]} if "usage" in run else {}),
        # where the batch work ran: {"task_runner", "workers", "batches_per_worker": {worker: n}}
        "execution": run.get("execution", LOCAL_EXECUTION),
        "documents": [
            {"id": i, "title": t, "content_sha256": s}
            for i, t, s in zip(docs["id"], docs["title"], docs["content_sha256"])
        ],
    }
    write_manifest(out_dir, manifest)
    kill_point("write:manifest")
    return manifest
