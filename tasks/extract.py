"""Extract task: entities and relationships from every text unit (LLM or offline rules).

Besides saving the answers, it hands the merged entity and relationship candidates to the
summarize and communities stages, which start with the run and wait for them in memory
(graphrag_flow/handoff.py), rather than each loading and merging the saved answers.
"""

from __future__ import annotations

import asyncio

from prefect import task

from graphrag_flow.errors import StageFailedError
from graphrag_flow.stages.extract import answers_frame, answers_from_frame, merge_extractions, run_extraction
from graphrag_flow.stages.extract.offline import offline_extractor
from graphrag_flow.progress import StageProgress
from graphrag_flow.storage.stages import StageRef
from tasks._common import current_run, load_frames, stage_key, stage_options, timed
from tasks._llm import items_in_progress, llm_client, prompt

#: Offline extraction is pure Python: two threads keep the GIL holder busy while the other
#: waits on the answer cache; more would only contend.
OFFLINE_CONCURRENCY = 2
#: The hand-off name of (entities, relationships) candidates, as merge_extractions returns them.
CANDIDATES = "candidates"


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
                from graphrag_flow.stages.extract.llm import llm_extractor

                extractor = llm_extractor(client, prompt("graph_extraction"), run.settings.chunks.size)
                concurrency = items_in_progress(run.settings.llm.max_concurrency)
            answers, failures = await run_extraction(units, extractor, concurrency, progress)
            if not failures:
                # Merged before the client closes and the answers are saved: summaries are
                # waiting for it, and the save is only the checkpoint.
                run.handoff.put(CANDIDATES, await asyncio.to_thread(merge_extractions, answers))
        if failures:
            raise StageFailedError("extract", failures)
        progress.finish()
        key = stage_key("extract", {"text_units": text_units, "llm": llm})
        return await asyncio.to_thread(
            lambda: run.store.save("extract", key, {"extractions": answers_frame(answers)}, {"items": len(answers)})
        )


def offer_saved_candidates(extractions: StageRef) -> None:
    """Candidates from saved answers, for when Prefect served the extract stage from its cache."""
    store = current_run().store
    current_run().handoff.put_loader(
        CANDIDATES, lambda: merge_extractions(answers_from_frame(store.load(extractions, "extractions")))
    )
