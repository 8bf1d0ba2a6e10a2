"""Communities task: graph degrees and seeded hierarchical Leiden, in a worker thread.

Built from the extraction answers, not the summarized graph: Leiden needs only which
entities are linked and how strongly, which summaries do not change, so communities are
found while the summaries are still being written and reports can start on them early.
"""

from __future__ import annotations

import asyncio

import pandas as pd
from prefect import task

from graphrag_flow.communities import compute_communities
from graphrag_flow.extraction import answers_from_frame, merge_extractions
from graphrag_flow.storage.stages import StageRef
from tasks._common import current_run, load_frames, stage_key, stage_options, timed


def _communities(extracted: pd.DataFrame, max_cluster_size: int, seed: int):
    entities, relationships = merge_extractions(answers_from_frame(extracted))
    communities, degree = compute_communities(entities, relationships, max_cluster_size, seed)
    degrees = pd.DataFrame({"title": list(degree), "degree": pd.Series(list(degree.values()), dtype="int64")})
    return communities, degrees


@task(name="detect-communities", task_run_name="detect-communities", **stage_options("communities"))
async def communities_stage(extractions: StageRef, clustering: dict) -> StageRef:
    run = current_run()
    with timed("communities"):
        (extracted,) = await load_frames((extractions, "extractions"))
        communities, degrees = await asyncio.to_thread(
            _communities, extracted, clustering["max_cluster_size"], clustering["seed"]
        )
        key = stage_key("communities", {"extractions": extractions, "clustering": clustering})
        return await asyncio.to_thread(
            run.store.save,
            "communities",
            key,
            {"communities": communities, "degrees": degrees},
            {"items": len(communities)},
        )
