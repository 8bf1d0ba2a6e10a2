"""Communities task: graph degrees and seeded hierarchical Leiden, in a worker thread.

Built from the extraction candidates (handed over in memory by the extract stage), not the
summarized graph: Leiden needs only which entities are linked and how strongly, which
summaries do not change, so communities are found while the summaries are still being
written and reports can start on them early.
"""

from __future__ import annotations

import asyncio

from prefect import task

from graphrag_flow.stages.communities import communities_and_degrees
from graphrag_flow.storage.stages import StageRef
from tasks._common import current_run, stage_key, stage_options, timed
from tasks.extract import CANDIDATES

#: The hand-off name of (communities, degrees), the frames this stage saves.
COMMUNITIES = "communities"


@task(name="detect-communities", task_run_name="detect-communities", **stage_options("communities"))
async def communities_stage(extractions: str, clustering: dict) -> StageRef:
    """`extractions` is the extract stage's cache key: this stage starts before that one ends."""
    run = current_run()
    entities, relationships = await run.handoff.get(CANDIDATES)
    with timed("communities"):
        communities, degrees = await asyncio.to_thread(
            communities_and_degrees, entities, relationships, clustering["max_cluster_size"], clustering["seed"]
        )
        run.handoff.put(COMMUNITIES, (communities, degrees))  # the reports stage is waiting for it
        key = stage_key("communities", {"extractions": extractions, "clustering": clustering})
        return await asyncio.to_thread(
            run.store.save,
            "communities",
            key,
            {"communities": communities, "degrees": degrees},
            {"items": len(communities)},
        )


def offer_saved_communities(communities: StageRef) -> None:
    """The saved frames, for when Prefect served this stage from its cache."""
    store = current_run().store
    current_run().handoff.put_loader(
        COMMUNITIES, lambda: (store.load(communities, "communities"), store.load(communities, "degrees"))
    )
