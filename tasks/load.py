"""The load task: read the input folder (graphrag_flow/stages/load). It always runs: only reading
the files tells what changed; its key is the documents' content."""

from __future__ import annotations

import asyncio

from prefect import get_run_logger, task

from graphrag_flow.hashing import sha256_json
from graphrag_flow.stages.load import load_documents
from graphrag_flow.storage.stages import StageRef
from tasks.context import RunContext
from tasks.keys import stage_key
from tasks.retries import uncached_stage


@task(**uncached_stage("load"))
async def load_stage(run: RunContext) -> StageRef:
    logger = get_run_logger()
    with run.timed("load"):
        loaded = await asyncio.to_thread(load_documents, run.paths.root, run.settings.input, run.settings.storage)
        for warning in loaded.warnings:
            logger.warning("input file %s", warning)
        for line in loaded.not_matched:
            logger.warning("input folder: %s", line)
        if loaded.extracted or loaded.reused:
            logger.info("input readers: %d file(s) parsed, %d served from the extracted-text cache",
                        loaded.extracted, loaded.reused)
        documents = loaded.documents
        key = stage_key("load", {"documents": sha256_json(documents[["id", "title", "creation_date"]].values.tolist())})
        return await run.save(
            "load", key, {"documents": documents},
            {"items": len(documents), "warnings": [str(w) for w in loaded.warnings], "not_matched": loaded.not_matched,
             "files_parsed": loaded.extracted, "files_from_extracted_cache": loaded.reused},
        )
