"""The embed task, one run per vector field (graphrag_flow/stages/embed): the LanceDB table is the
checkpoint.

Not cached by Prefect on purpose: the table itself says what is done, and checking it costs one
read, so a deleted or partial table is always repaired rather than trusted.

Each starts with the run and waits for its source frame on the run's channels (text units,
summarized entities, community reports), put there by the stage that makes it before that stage
saves and returns. With an LLM, the source's rows are embedded as they are posted, while the
rest are still being made (entity descriptions while relationships are summarized and reports
written; each report as it arrives); the full pass over the finished frame then finds them in
the table.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from typing import AsyncIterator

import pandas as pd
from prefect import task

from graphrag_flow.aio import gather_fatal_first
from graphrag_flow.channels import Channel
from graphrag_flow.errors import StageFailedError
from graphrag_flow.stages.embed.backends import OfflineBackend, OpenAIBackend
from graphrag_flow.stages.embed.field import BatchMerger, embed_field, embed_streamed
from graphrag_flow.storage.vectors import VectorTable
from graphrag_flow.tables import embedding_inputs, embedding_text
from tasks.batches import ClusterEmbedBackend
from tasks.context import RunContext
from tasks.llm_stage import llm_client
from tasks.retries import STAGE_RETRIES, uncached_stage

#: Where each vector field's rows come from: the stage and the frame it makes.
SOURCES = {
    "text_unit_text": ("chunk", "text_units"),
    "entity_description": ("summarize", "entities"),
    "community_full_content": ("reports", "community_reports"),
}


def _inputs(field: str, source: pd.DataFrame | dict[str, list]) -> pd.DataFrame:
    return embedding_inputs(field, source if isinstance(source, pd.DataFrame) else pd.DataFrame(source))


@task(**uncached_stage("embed", task_run_name="embed-{field}", retries=STAGE_RETRIES))
async def embed_stage(run: RunContext, field: str) -> dict:
    """Embed `field` of its source frame; its time counts from when the frame arrives."""
    stage = f"embed-{field}"
    source_rows = run.channels.of(*SOURCES[field])
    table = VectorTable(run.lancedb_dir, field)
    async with llm_client(run, stage) as client:
        if client is None:
            source = await source_rows.get()
            # The static model is a lookup (milliseconds a batch): a task run on the cluster
            # would cost more than the work, so only the transformer's batches go there.
            if run.cluster is None or run.settings.embed.offline_model == "minilm-static":
                backend, slots = await asyncio.to_thread(OfflineBackend, run.settings), None
            else:
                backend, slots = await asyncio.to_thread(ClusterEmbedBackend, run.settings, run.cluster, field), None
            merger = BatchMerger(table, backend.model)
        else:
            backend = OpenAIBackend(run.settings, client, stage)
            slots = run.embed_slots()
            merger = BatchMerger(table, backend.model)
            source = await _source_embedding_its_rows_meanwhile(run, field, source_rows, backend, slots, merger)
        with run.timed(stage):
            inputs = await asyncio.to_thread(_inputs, field, source)
            result = await embed_field(field, table, inputs, backend, slots, merger=merger)
    if result.failures:
        raise StageFailedError(stage, result.failures)
    summary = asdict(result)
    summary["failures"] = []
    return summary


async def _source_embedding_its_rows_meanwhile(run: RunContext, field: str, source_rows: Channel,
                                               backend: OpenAIBackend, slots: asyncio.Semaphore,
                                               merger: BatchMerger):
    """Wait for the source's whole value, embedding its rows as they are posted meanwhile, a full
    batch at a time.

    Batches run side by side, merged together with the full pass's (`merger`); the run's slots
    bound the batches in flight. A row that fails here is left to the full pass, which retries
    it and names it if it fails again; a FatalLLMError stops the stage at once.
    """

    async def texts() -> AsyncIterator[list[tuple[str, str]]]:
        async for batch in source_rows.row_batches(run.settings.llm.embedding_batch_size):
            yield [(row_id, embedding_text(field, record)) for row_id, record in batch]

    async def early() -> None:
        await embed_streamed(field, texts(), backend, slots, merger)

    _, value = await gather_fatal_first([early(), source_rows.get()])
    return value
