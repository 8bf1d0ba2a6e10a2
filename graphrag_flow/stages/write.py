"""The write stage: GraphRAG's tables assembled from the stages' frames, written into the run's
staging folder, verified as written, then the manifest (last).

A folder's manifest says its outputs verified, so it is removed first (a killed attempt's is no
longer true) and written only after every table and vector table checks out. The flow switches
the folder in afterwards (storage/generations.py); nothing served is written here.
"""

from __future__ import annotations

from collections import defaultdict

import pandas as pd

from graphrag_flow.hashing import sha256_json
from graphrag_flow.stages.communities import community_periods
from graphrag_flow.tables import conform, with_readable_ids


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
