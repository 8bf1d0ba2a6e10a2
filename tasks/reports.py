"""Reports task: one report per community (LLM or extractive offline).

Runs alongside the summarize stage: members' descriptions come from the run's description
board as they are summarized, so the stage's cache key names the summarize stage's key
(`summaries`) rather than its output, which does not exist yet when this starts.
"""

from __future__ import annotations

import asyncio

from prefect import task

from graphrag_flow.errors import StageFailedError
from graphrag_flow.outputs import community_periods
from graphrag_flow.progress import StageProgress
from graphrag_flow.reports import build_reports, offline_reporter
from graphrag_flow.storage.stages import StageRef
from tasks._common import current_run, stage_key, stage_options, timed
from tasks._llm import llm_client, prompt


def _report_inputs(documents: StageRef, text_units: StageRef, communities: StageRef):
    """Communities with their period, and each entity's degree (pandas: run in a thread)."""
    store = current_run().store
    comms = store.load(communities, "communities")
    degrees = store.load(communities, "degrees")
    comms["period"] = community_periods(comms, store.load(text_units, "text_units"), store.load(documents, "documents"))
    return comms, dict(zip(degrees["title"].tolist(), degrees["degree"].tolist()))


@task(name="community-reports", task_run_name="community-reports", **stage_options("reports"))
async def reports_stage(
    documents: StageRef, text_units: StageRef, communities: StageRef, summaries: str, llm: dict
) -> StageRef:
    run = current_run()
    with timed("reports"):
        comms, degree = await asyncio.to_thread(_report_inputs, documents, text_units, communities)
        progress = StageProgress("reports", len(comms))
        async with llm_client("reports") as client:
            if client is None:
                reporter, concurrency = offline_reporter(), 1
            else:
                from graphrag_flow.chunking import get_encoding
                from graphrag_flow.llm.steps import items_in_progress, llm_reporter

                await asyncio.to_thread(get_encoding)  # loads its BPE file once: not on the loop

                reporter = llm_reporter(client, prompt("community_report"), run.settings.llm.report_max_input_tokens)
                concurrency = items_in_progress(run.settings.llm.max_concurrency)
            reports, failures = await build_reports(comms, degree, run.descriptions, reporter, concurrency, progress)
        progress.finish()
        if failures:
            raise StageFailedError("reports", failures)
        key = stage_key(
            "reports",
            {"documents": documents, "text_units": text_units, "communities": communities, "summaries": summaries,
             "llm": llm},
        )
        return await asyncio.to_thread(
            run.store.save, "reports", key, {"community_reports": reports}, {"items": len(reports)}
        )
