"""Summarize task: give every entity and relationship candidate one description.

It starts with the run and waits for the extract stage's candidates in memory (the run's
hand-off). Each finished item is posted to the run's description board, where community
reports pick it up before this stage ends (graphrag_flow/description_board.py); once every
entity is done, (id, title, description) of all entities goes on the hand-off as "entities",
for their embeddings, while relationships may still be in flight.
"""

from __future__ import annotations

import asyncio

from prefect import task

from graphrag_flow.description_board import base_records, summarized_records
from graphrag_flow.errors import StageFailedError
from graphrag_flow.progress import StageProgress
from graphrag_flow.storage.stages import StageRef
from graphrag_flow.stages.summarize import summarize_descriptions, offline_summarizer
from tasks._common import current_run, stage_key, stage_options, timed
from tasks._llm import items_in_progress, llm_client, prompt
from tasks.extract import CANDIDATES

#: The hand-off name of the summarized entities: columns id, title, description.
ENTITIES = "entities"
#: The vector field of the entities, whose rows are streamed to its embed stage as they come.
ENTITY_VECTORS = "entity_description"


@task(name="summarize-descriptions", task_run_name="summarize-descriptions", **stage_options("summarize"))
async def summarize_stage(extractions: str, llm: dict) -> StageRef:
    """`extractions` is the extract stage's cache key: this stage starts before that one ends."""
    run = current_run()
    entities, relationships = await run.handoff.get(CANDIDATES)
    with timed("summarize"):
        frames = {"entities": entities, "relationships": relationships}
        bases = await asyncio.to_thread(lambda: {kind: base_records(kind, f) for kind, f in frames.items()})
        entity_descriptions: dict[str, str] = {}
        progress = StageProgress("summarize", len(entities) + len(relationships))
        # Each entity's text goes to its embeddings the moment it is final: they take the
        # request slots the summaries and reports leave free (their priority is lower),
        # rather than one or two rounds after the last report.
        with run.posting_rows(ENTITY_VECTORS) as post_row:

            def post(kind: str, row: int, description: str) -> None:
                item_id, record = bases[kind][row]
                run.descriptions.post(item_id, record | {"description": description})
                if kind == "entities":
                    entity_descriptions[item_id] = description
                    if post_row is not None:
                        post_row(item_id, record | {"description": description})
                    if len(entity_descriptions) == len(entities):
                        run.handoff.put(ENTITIES, _entity_columns(bases["entities"], entity_descriptions))

            async with llm_client("summarize") as client:
                if client is None:
                    summarizer, concurrency = offline_summarizer(), 1
                else:
                    from graphrag_flow.stages.summarize import llm_summarizer

                    summarizer = llm_summarizer(client, prompt("entity_summary"))
                    concurrency = items_in_progress(run.settings.llm.max_concurrency)
                summarized, failures = await summarize_descriptions(frames, summarizer, concurrency, progress, post)
        if failures:
            raise StageFailedError("summarize", failures)
        progress.finish()
        if not len(entities):
            run.handoff.put(ENTITIES, _entity_columns([], {}))
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


def _entity_columns(bases: list[tuple[str, dict]], descriptions: dict[str, str]) -> dict[str, list]:
    """Plain lists (a frame is made in the embed stage's worker thread, not on this loop)."""
    return {
        "id": [i for i, _ in bases],
        "title": [r["title"] for _, r in bases],
        "description": [descriptions[i] for i, _ in bases],
    }


async def post_saved_descriptions(graph: StageRef) -> None:
    """Fill the board and the hand-off from a summarize stage that did not run here (Prefect
    served it from its cache)."""
    run = current_run()
    if not run.handoff.has(ENTITIES):
        run.handoff.put_loader(ENTITIES, lambda: run.store.load(graph, "entities"))
    if run.descriptions.complete:
        return
    records = await asyncio.to_thread(
        lambda: [r for kind in ("entities", "relationships") for r in summarized_records(kind, run.store.load(graph, kind))]
    )
    run.descriptions.post_many(records)
    run.descriptions.complete = True
