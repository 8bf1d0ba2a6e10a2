"""Chunk task: token windows over the documents, cached on the documents' content."""

from __future__ import annotations

import asyncio

from prefect import task

from graphrag_flow.stages.chunk import chunk_documents
from graphrag_flow.config import ChunkSettings
from graphrag_flow.storage.stages import StageRef
from tasks._common import current_run, load_frames, stage_key, stage_options, timed


@task(name="chunk", task_run_name="chunk-text-units", **stage_options("chunk"))
async def chunk_stage(documents: StageRef, chunking: dict) -> StageRef:
    run = current_run()
    with timed("chunk"):
        (docs,) = await load_frames((documents, "documents"))
        units = await asyncio.to_thread(chunk_documents, docs, ChunkSettings(**chunking))
        key = stage_key("chunk", {"documents": documents, "chunking": chunking})
        return await asyncio.to_thread(run.store.save, "chunk", key, {"text_units": units}, {"items": len(units)})
