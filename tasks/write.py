"""The write task: GraphRAG's parquet tables and the manifest into the run's staging folder,
verified as written (graphrag_flow/stages/write.py). The flow switches the folder in afterwards;
nothing served is written here."""

from __future__ import annotations

import asyncio

from prefect import task

from graphrag_flow.errors import OutputWriteError
from graphrag_flow.stages.write import LOCAL_EXECUTION, write_generation
from graphrag_flow.storage.stages import StageRef
from tasks.context import RunContext
from graphrag_flow.tables import VECTOR_FIELDS
from graphrag_flow.usage import run_usage
from tasks.keys import CODE_VERSION
from tasks.llm_stage import STAGE_PROMPTS
from tasks.retries import uncached_stage

#: The frames the write stage reads: (stage, frame) for each name it takes them by.
FRAMES = {
    "documents": ("load", "documents"), "text_units": ("chunk", "text_units"),
    "entities": ("summarize", "entities"), "relationships": ("summarize", "relationships"),
    "communities": ("communities", "communities"), "degrees": ("communities", "degrees"),
    "community_reports": ("reports", "community_reports"),
}

#: The stages that send LLM requests: the manifest's usage lists each, zeros included.
LLM_STAGES = (*STAGE_PROMPTS, *(f"embed-{field}" for field in VECTOR_FIELDS))


def _write(run: RunContext, refs: dict[str, StageRef], embedding_model: str, graph_model: str,
           flow_run_id: str) -> dict:
    frames = {name: run.store.load(refs[stage], frame) for name, (stage, frame) in FRAMES.items()}
    return write_generation(
        run.out_dir, frames, graph_model=graph_model, embedding_model=embedding_model,
        run={"run_id": flow_run_id, "settings_sha256": run.settings.fingerprint(), "code_version": CODE_VERSION,
             "usage": run_usage(run.stats.usage_by_stage(), run.settings.llm.price_per_million_tokens,
                                LLM_STAGES),
             "execution": run.cluster.manifest_block() if run.cluster is not None else LOCAL_EXECUTION},
    )


@task(**uncached_stage("write"))
async def write_stage(run: RunContext, refs: dict[str, StageRef], embedding_model: str, graph_model: str,
                      flow_run_id: str) -> dict:
    """`refs`: the StageRef of each stage whose frames are written, by stage name."""
    with run.timed("write"):
        try:
            return await asyncio.to_thread(_write, run, refs, embedding_model, graph_model, flow_run_id)
        except OSError as exc:
            where = exc.filename or run.out_dir
            raise OutputWriteError(
                f"writing the outputs failed at {where}: {exc.strerror or exc}; output/ is the last completed "
                "run's, unchanged, and the next run resumes from what was written"
            ) from None
