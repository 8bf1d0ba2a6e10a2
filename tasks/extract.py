"""The extract task: entities and relationships from every text unit (graphrag_flow/stages/extract),
by the offline rules or a chat model.

It saves, and publishes on the run's channels, the merged entity and relationship candidates:
the summarize and communities stages start with the run and wait for them in memory, rather
than each loading and merging the answers.
"""

from __future__ import annotations

import asyncio

from prefect import task

from graphrag_flow.stages.extract import merge_extractions, run_extraction
from graphrag_flow.stages.extract.llm import llm_extractor
from graphrag_flow.stages.extract.offline import offline_extractor
from graphrag_flow.storage.stages import StageRef
from tasks.batches import extract_on_cluster
from tasks.context import RunContext
from tasks.llm_stage import item_stage
from tasks.retries import cached_stage

#: Offline extraction is pure Python: two threads keep the GIL holder busy while the other
#: waits on the answer cache; more would only contend.
OFFLINE_CONCURRENCY = 2


@task(**cached_stage("extract"))
async def extract_stage(run: RunContext, key: str, text_units: StageRef) -> StageRef:
    with run.timed("extract"):
        (units,) = await run.load_frames((text_units, "text_units"))
        async with item_stage(run, "extract", len(units), offline_concurrency=OFFLINE_CONCURRENCY) as work:
            if work.client is None and run.cluster is not None:
                answers = await extract_on_cluster(run.cluster, units, run.cache, run.full, work.progress,
                                                   lambda: run.stats.cache_hit("extract"))
            else:
                if work.client is None:
                    extractor = offline_extractor(None if run.full else run.cache, lambda: run.stats.cache_hit("extract"))
                else:
                    extractor = llm_extractor(work.client, run.prompt("graph_extraction"), run.settings.chunks.size)
                answers, work.failures = await run_extraction(units, extractor, work.concurrency, work.progress)
            if not work.failures:
                # Merged and published before the client closes and the stage saves: summaries
                # and communities are waiting for it; the save is only the checkpoint.
                entities, relationships = await asyncio.to_thread(merge_extractions, answers, work.client is None)
                candidates = {"entities": entities, "relationships": relationships}
                run.channels.publish("extract", candidates)
        return await run.save("extract", key, candidates, {"items": len(answers)})
