"""Embed task, one run per vector field: the LanceDB table is the checkpoint.

Not cached by Prefect on purpose: the table itself says what is done, and checking it
costs one read, so a deleted or partial table is always repaired rather than trusted.

Each starts with the run and waits for its source frame on the run's hand-off (text units,
summarized entities, community reports), put there by the stage that makes it before that
stage saves and returns: entity descriptions are embedded while relationships are still
being summarized and reports written, and report embeddings need not wait for the
reports stage's save and task change-over. Report texts come even earlier, one by one as
each report arrives (the run's row stream), and are embedded while the others are written.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict

import pandas as pd

from prefect import task
from prefect.cache_policies import NO_CACHE

from graphrag_flow.aio import gather_fatal_first
from graphrag_flow.stages.embed.field import BatchMerger, embed_field, embed_streamed
from graphrag_flow.stages.embed.backends import OfflineBackend, OpenAIBackend
from graphrag_flow.errors import StageFailedError
from graphrag_flow.storage.vectors import VectorTable
from graphrag_flow.tables import embedding_inputs
from tasks._common import STAGE_RETRIES, STAGE_RETRY_DELAY_S, current_run, retry_unless_fatal, timed
from tasks._llm import llm_client


def _run_slots(run, concurrency: int) -> asyncio.Semaphore:
    """One semaphore for every field of a run: the embed stages run concurrently on the flow's
    event loop, and at most `max_concurrency` batches may be taken but not yet merged in all
    (what a kill can lose), not that many per field."""
    slots = getattr(run, "_embed_slots", None)
    if slots is None:
        slots = asyncio.Semaphore(max(1, concurrency))
        run._embed_slots = slots
    return slots


def _inputs(field: str, source: pd.DataFrame | dict[str, list]) -> pd.DataFrame:
    return embedding_inputs(field, source if isinstance(source, pd.DataFrame) else pd.DataFrame(source))


@task(
    name="embed",
    task_run_name="embed-{field}",
    cache_policy=NO_CACHE,
    retries=STAGE_RETRIES,
    retry_delay_seconds=STAGE_RETRY_DELAY_S,
    retry_condition_fn=retry_unless_fatal,
)
async def embed_stage(field: str, frame: str) -> dict:
    """Embed `field` of the hand-off's `frame`; its time counts from when the frame arrives.

    With an LLM, rows the producer streams (the reports' texts) are embedded while the
    frame is still being made; the full pass then finds them in the table.
    """
    run = current_run()
    stage = f"embed-{field}"
    table = VectorTable(run.lancedb_dir, field)
    async with llm_client(stage) as client:
        if client is None:
            source = await run.handoff.get(frame)
            backend, slots = await asyncio.to_thread(OfflineBackend, run.settings), None
            merger = BatchMerger(table, backend.model)
        else:
            backend = OpenAIBackend(run.settings, client, stage)
            slots = _run_slots(run, backend.concurrency)
            merger = BatchMerger(table, backend.model)
            source = await _frame_embedding_streamed_rows(run, field, frame, backend, slots, merger)
        with timed(stage):
            inputs = await asyncio.to_thread(_inputs, field, source)
            result = await embed_field(field, table, inputs, backend, slots, merger=merger)
    if result.failures:
        raise StageFailedError(stage, result.failures)
    summary = asdict(result)
    summary["failures"] = []
    return summary


async def _frame_embedding_streamed_rows(run, field: str, frame: str, backend: OpenAIBackend,
                                         slots: asyncio.Semaphore, merger: BatchMerger):
    """Wait for `frame`, embedding the field's streamed rows meanwhile, a full batch at a time.

    Chunks run side by side, their batches merged together with the full pass's (`merger`);
    the run's slots bound the batches in flight. A row that fails here is left to the full
    pass, which retries it and names it if it fails again; a FatalLLMError stops the stage
    at once.
    """
    stream = run.stream(field)

    async def early() -> None:
        await embed_streamed(field, stream.chunks(run.settings.llm.embedding_batch_size), backend, slots, merger)

    async def source():
        try:
            return await run.handoff.get(frame)
        finally:
            stream.close()  # a producer that ran closed it already; one served from cache never posts

    _, value = await gather_fatal_first([early(), source()])
    return value
