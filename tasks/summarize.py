"""Summarize task: merge extraction answers into entities and relationships with one description each."""

from __future__ import annotations

import asyncio

from prefect import task

from graphrag_flow.errors import StageFailedError
from graphrag_flow.extraction import answers_from_frame, merge_extractions
from graphrag_flow.progress import StageProgress
from graphrag_flow.storage.stages import StageRef
from graphrag_flow.summarize import offline_summarizer, summarize_descriptions
from tasks._common import current_run, load_frames, stage_key, stage_options, timed
from tasks._llm import llm_client, prompt


@task(name="summarize-descriptions", task_run_name="summarize-descriptions", **stage_options("summarize"))
async def summarize_stage(extractions: StageRef, llm: dict) -> StageRef:
    run = current_run()
    with timed("summarize"):
        (extracted,) = await load_frames((extractions, "extractions"))
        entities, relationships = await asyncio.to_thread(lambda: merge_extractions(answers_from_frame(extracted)))
        progress = StageProgress("summarize", len(entities) + len(relationships))
        async with llm_client("summarize") as client:
            if client is None:
                summarizer, concurrency = offline_summarizer(), 1
            else:
                from graphrag_flow.llm.steps import items_in_progress, llm_summarizer

                summarizer = llm_summarizer(client, prompt("entity_summary"))
                concurrency = items_in_progress(run.settings.llm.max_concurrency)
            frames, failures = await summarize_descriptions(
                {"entities": entities, "relationships": relationships}, summarizer, concurrency, progress
            )
        progress.finish()
        if failures:
            raise StageFailedError("summarize", failures)
        key = stage_key("summarize", {"extractions": extractions, "llm": llm})
        return await asyncio.to_thread(
            run.store.save,
            "summarize",
            key,
            frames,
            {"items": len(frames["entities"]) + len(frames["relationships"])},
        )
