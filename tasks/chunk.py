"""The chunk task: token windows over the documents (graphrag_flow/stages/chunk.py)."""

from __future__ import annotations

import asyncio

from prefect import task

from graphrag_flow.stages.chunk import chunk_documents
from graphrag_flow.storage.stages import StageRef
from tasks.context import RunContext
from tasks.retries import cached_stage


@task(**cached_stage("chunk"))
async def chunk_stage(run: RunContext, key: str, documents: StageRef) -> StageRef:
    with run.timed("chunk"):
        (docs,) = await run.load_frames((documents, "documents"))
        units = await asyncio.to_thread(chunk_documents, docs, run.settings.chunks)
        return await run.save("chunk", key, {"text_units": units}, {"items": len(units)})
