"""Summarize task: merge extraction answers into entities and relationships with one description each.

Each finished item is posted to the run's description board, where community reports pick
it up before this stage ends (graphrag_flow/description_board.py).
"""

from __future__ import annotations

import asyncio

from prefect import task

from graphrag_flow.description_board import base_records, summarized_records
from graphrag_flow.errors import StageFailedError
from graphrag_flow.extraction import answers_from_frame, merge_extractions
from graphrag_flow.progress import StageProgress
from graphrag_flow.storage.stages import StageRef
from graphrag_flow.summarize import summarize_descriptions, offline_summarizer
from tasks._common import current_run, load_frames, stage_key, stage_options, timed
from tasks._llm import llm_client, prompt


@task(name="summarize-descriptions", task_run_name="summarize-descriptions", **stage_options("summarize"))
async def summarize_stage(extractions: StageRef, llm: dict) -> StageRef:
    run = current_run()
    with timed("summarize"):
        (extracted,) = await load_frames((extractions, "extractions"))
        entities, relationships = await asyncio.to_thread(lambda: merge_extractions(answers_from_frame(extracted)))
        frames = {"entities": entities, "relationships": relationships}
        bases = await asyncio.to_thread(lambda: {kind: base_records(kind, f) for kind, f in frames.items()})

        def post(kind: str, row: int, description: str) -> None:
            item_id, record = bases[kind][row]
            run.descriptions.post(item_id, record | {"description": description})

        progress = StageProgress("summarize", len(entities) + len(relationships))
        async with llm_client("summarize") as client:
            if client is None:
                summarizer, concurrency = offline_summarizer(), 1
            else:
                from graphrag_flow.llm.steps import items_in_progress, llm_summarizer

                summarizer = llm_summarizer(client, prompt("entity_summary"))
                concurrency = items_in_progress(run.settings.llm.max_concurrency)
            summarized, failures = await summarize_descriptions(frames, summarizer, concurrency, progress, post)
        progress.finish()
        if failures:
            raise StageFailedError("summarize", failures)
        key = stage_key("summarize", {"extractions": extractions, "llm": llm})
        ref = await asyncio.to_thread(
            run.store.save,
            "summarize",
            key,
            summarized,
            {"items": len(summarized["entities"]) + len(summarized["relationships"])},
        )
        run.descriptions.complete = True
        return ref


async def post_saved_descriptions(graph: StageRef) -> None:
    """Fill the board from a summarize stage that did not run here (Prefect served it from cache)."""
    run = current_run()
    if run.descriptions.complete:
        return
    records = await asyncio.to_thread(
        lambda: [r for kind in ("entities", "relationships") for r in summarized_records(kind, run.store.load(graph, kind))]
    )
    run.descriptions.post_many(records)
    run.descriptions.complete = True
