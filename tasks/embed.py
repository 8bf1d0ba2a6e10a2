"""Embed task, one run per vector field: the LanceDB table is the checkpoint.

Not cached by Prefect on purpose: the table itself says what is done, and checking it
costs one read, so a deleted or partial table is always repaired rather than trusted.

Each starts with the run and waits for its source frame on the run's hand-off (text units,
summarized entities, community reports), put there by the stage that makes it before that
stage saves and returns: entity descriptions are embedded while relationships are still
being summarized and reports written, and report embeddings need not wait for the
reports stage's save and task change-over.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict

import pandas as pd

from prefect import task
from prefect.cache_policies import NO_CACHE

from graphrag_flow.embedding import embed_field
from graphrag_flow.embedding_backends import OfflineBackend, OpenAIBackend
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
    """Embed `field` of the hand-off's `frame`; its time counts from when the frame arrives."""
    run = current_run()
    stage = f"embed-{field}"
    source = await run.handoff.get(frame)
    with timed(stage):
        inputs = await asyncio.to_thread(_inputs, field, source)
        table = VectorTable(run.lancedb_dir, field)
        async with llm_client(stage) as client:
            backend = (
                await asyncio.to_thread(OfflineBackend, run.settings)
                if client is None
                else OpenAIBackend(run.settings, client, stage)
            )
            slots = None if client is None else _run_slots(run, backend.concurrency)
            result = await embed_field(field, table, inputs, backend, slots)
        if result.failures:
            raise StageFailedError(stage, result.failures)
        summary = asdict(result)
        summary["failures"] = []
        return summary
