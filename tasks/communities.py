"""The communities task: graph degrees and seeded hierarchical Leiden, in a worker thread
(graphrag_flow/stages/communities.py).

Built from the extraction candidates (on the run's channels), not the summarized graph: Leiden
needs only which entities are linked and how strongly, which summaries do not change, so
communities are found while the summaries are still being written and reports start on them
early.
"""

from __future__ import annotations

import asyncio

from prefect import task

from graphrag_flow.stages.communities import Clustering, communities_and_degrees
from graphrag_flow.storage.stages import StageRef
from tasks.context import RunContext
from tasks.retries import cached_stage


@task(**cached_stage("communities"))
async def communities_stage(run: RunContext, key: str) -> StageRef:
    entities, relationships = await run.channels.values("extract", "entities", "relationships")
    with run.timed("communities"):
        graph = run.settings.graph
        clustering = Clustering(sparse=run.settings.llm.provider == "offline")
        communities, degrees = await asyncio.to_thread(
            communities_and_degrees, entities, relationships, graph.max_cluster_size, graph.seed, clustering
        )
        frames = {"communities": communities, "degrees": degrees}
        run.channels.publish("communities", frames)  # the reports stage is waiting for them
        return await run.save("communities", key, frames, {"items": len(communities)})
