"""Communities task: graph degrees and seeded hierarchical Leiden, in a worker thread."""

from __future__ import annotations

import asyncio

import pandas as pd
from prefect import task

from graphrag_flow.communities import compute_communities
from graphrag_flow.storage.stages import StageRef
from tasks._common import current_run, load_frames, stage_key, stage_options, timed


@task(name="detect-communities", task_run_name="detect-communities", **stage_options("communities"))
async def communities_stage(graph: StageRef, clustering: dict) -> StageRef:
    run = current_run()
    with timed("communities"):
        entities, relationships = await load_frames((graph, "entities"), (graph, "relationships"))
        communities, degree = await asyncio.to_thread(
            compute_communities, entities, relationships, clustering["max_cluster_size"], clustering["seed"]
        )
        degrees = pd.DataFrame({"title": list(degree), "degree": pd.Series(list(degree.values()), dtype="int64")})
        key = stage_key("communities", {"graph": graph, "clustering": clustering})
        return await asyncio.to_thread(
            run.store.save,
            "communities",
            key,
            {"communities": communities, "degrees": degrees},
            {"items": len(communities)},
        )
