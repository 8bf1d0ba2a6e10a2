"""The summarize task: one description per entity and relationship (graphrag_flow/stages/summarize.py).

It starts with the run and waits for the extract stage's candidates on the run's channels. Each
finished item is posted as a row of ("summarize", "entities" or "relationships"), where
community reports pick it up before this stage ends and entity texts go to their embeddings;
once every entity is done, (id, title, description) of all entities is put as the entities'
whole value, for the rest of their embeddings, while relationships may still be in flight.
"""

from __future__ import annotations

import asyncio

from prefect import task

from graphrag_flow.stages.summarize import (
    base_records, entity_columns, llm_summarizer, offline_summarizer, summarize_descriptions,
)
from graphrag_flow.storage.stages import StageRef
from tasks.context import RunContext
from tasks.llm_stage import item_stage
from tasks.retries import cached_stage


@task(**cached_stage("summarize"))
async def summarize_stage(run: RunContext, key: str) -> StageRef:
    entities, relationships = await run.channels.values("extract", "entities", "relationships")
    with run.timed("summarize"):
        frames = {"entities": entities, "relationships": relationships}
        bases = await asyncio.to_thread(lambda: {kind: base_records(kind, f) for kind, f in frames.items()})
        published = {kind: run.channels.of("summarize", kind) for kind in frames}
        entity_descriptions: dict[str, str] = {}

        def post(kind: str, row: int, description: str) -> None:
            item_id, record = bases[kind][row]
            published[kind].post(item_id, record | {"description": description})
            if kind == "entities":
                entity_descriptions[item_id] = description
                if len(entity_descriptions) == len(entities):
                    published["entities"].put(entity_columns(bases["entities"], entity_descriptions))

        async with item_stage(run, "summarize", len(entities) + len(relationships),
                              streams=published.values()) as work:
            summarizer = (offline_summarizer() if work.client is None
                          else llm_summarizer(work.client, run.prompt("entity_summary")))
            summarized, work.failures = await summarize_descriptions(
                frames, summarizer, work.concurrency, work.progress, post)
        if not len(entities):
            published["entities"].put(entity_columns([], {}))
        published["relationships"].put(summarized["relationships"])
        return await run.save("summarize", key, summarized,
                              {"items": len(summarized["entities"]) + len(summarized["relationships"])})
