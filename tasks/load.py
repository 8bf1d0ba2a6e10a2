"""Load task: read the input folder (always runs: only reading the files tells what changed)."""

from __future__ import annotations

import asyncio

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from graphrag_flow.stages.load import load_documents
from graphrag_flow.hashing import sha256_json
from graphrag_flow.storage.stages import StageRef
from tasks._common import current_run, timed


@task(name="load-documents", task_run_name="load-documents", cache_policy=NO_CACHE)
async def load_stage() -> StageRef:
    run = current_run()
    logger = get_run_logger()
    with timed("load"):
        loaded = await asyncio.to_thread(load_documents, run.root, run.settings.input)
        for warning in loaded.warnings:
            logger.warning("input file %s", warning)
        for line in loaded.not_matched:
            logger.warning("input folder: %s", line)
        documents = loaded.documents
        key = sha256_json(documents[["id", "title", "creation_date"]].values.tolist())
        return await asyncio.to_thread(
            run.store.save,
            "load",
            key,
            {"documents": documents},
            {"items": len(documents), "warnings": [str(w) for w in loaded.warnings], "not_matched": loaded.not_matched},
        )
