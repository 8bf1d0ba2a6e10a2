"""Extract task: entities and relationships from every text unit (LLM or offline rules)."""

from __future__ import annotations

import asyncio

from prefect import task

from graphrag_flow.errors import StageFailedError
from graphrag_flow.extraction import answers_frame, offline_extractor, run_extraction
from graphrag_flow.progress import StageProgress
from graphrag_flow.storage.stages import StageRef
from tasks._common import current_run, load_frames, stage_key, stage_options, timed
from tasks._llm import llm_client, prompt

#: Offline extraction is pure Python: two threads keep the GIL holder busy while the other
#: waits on the answer cache; more would only contend.
OFFLINE_CONCURRENCY = 2


@task(name="extract-graph", task_run_name="extract-graph", **stage_options("extract"))
async def extract_stage(text_units: StageRef, llm: dict) -> StageRef:
    run = current_run()
    with timed("extract"):
        (units,) = await load_frames((text_units, "text_units"))
        progress = StageProgress("extract", len(units))
        async with llm_client("extract") as client:
            if client is None:
                extractor, concurrency = (
                    offline_extractor(None if run.full else run.cache, lambda: run.stats.cache_hit("extract")),
                    OFFLINE_CONCURRENCY,
                )
            else:
                from graphrag_flow.llm.steps import items_in_progress, llm_extractor

                extractor = llm_extractor(client, prompt("graph_extraction"), run.settings.chunks.size)
                concurrency = items_in_progress(run.settings.llm.max_concurrency)
            answers, failures = await run_extraction(units, extractor, concurrency, progress)
        progress.finish()
        if failures:
            raise StageFailedError("extract", failures)
        key = stage_key("extract", {"text_units": text_units, "llm": llm})
        return await asyncio.to_thread(
            run.store.save, "extract", key, {"extractions": answers_frame(answers)}, {"items": len(answers)}
        )
