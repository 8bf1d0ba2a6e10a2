"""Reports task: one report per community (LLM or extractive offline).

Starts with the run and runs alongside the summarize stage: the communities come from the
run's hand-off the moment they are found, and members' descriptions from the run's
description board as they are summarized. So the stage's cache key names the communities
and summarize stages' keys rather than their outputs, which do not exist yet when this
starts. Each report's text goes to its embeddings as the report arrives (the run's row
stream), and the finished frame goes on the hand-off before it is saved, for the embed
stage's full pass.
"""

from __future__ import annotations

import asyncio

from prefect import task

from graphrag_flow.errors import StageFailedError
from graphrag_flow.stages.communities import community_periods
from graphrag_flow.progress import StageProgress
from graphrag_flow.stages.reports import build_reports, offline_reporter
from graphrag_flow.storage.stages import StageRef
from tasks._common import current_run, load_frames, stage_key, stage_options, timed
from tasks._llm import items_in_progress, is_offline, llm_client, prompt
from tasks.communities import COMMUNITIES

#: The hand-off name of the finished reports frame (as saved).
REPORTS = "community_reports"
#: The vector field of the reports, whose rows are streamed to its embed stage as they come.
REPORT_VECTORS = "community_full_content"


def _with_periods(communities, degrees, text_units, documents):
    """Communities with their period, and each entity's degree (pandas: run in a thread)."""
    comms = communities.copy()  # the hand-off's frame is shared with the communities stage's save
    comms["period"] = community_periods(comms, text_units, documents)
    return comms, dict(zip(degrees["title"].tolist(), degrees["degree"].tolist()))


@task(name="community-reports", task_run_name="community-reports", **stage_options("reports"))
async def reports_stage(
    documents: StageRef, text_units: StageRef, communities: str, summaries: str, llm: dict
) -> StageRef:
    """`communities` and `summaries` are those stages' cache keys: this stage starts with them."""
    run = current_run()
    units, docs = await load_frames((text_units, "text_units"), (documents, "documents"))
    if not is_offline(run.settings):
        from graphrag_flow.stages.chunk import get_encoding

        await asyncio.to_thread(get_encoding)  # loads its BPE file once: not on the loop
    found, degrees = await run.handoff.get(COMMUNITIES)
    with timed("reports"):
        comms, degree = await asyncio.to_thread(_with_periods, found, degrees, units, docs)
        del units, docs
        progress = StageProgress("reports", len(comms))
        async with llm_client("reports") as client:
            if client is None:
                reporter, concurrency = offline_reporter(), 1
            else:
                from graphrag_flow.stages.reports import llm_reporter

                reporter = llm_reporter(client, prompt("community_report"), run.settings.llm.report_max_input_tokens)
                concurrency = items_in_progress(run.settings.llm.max_concurrency)
            # Each report's text goes to its embeddings as it arrives.
            with run.posting_rows(REPORT_VECTORS) as post_row:
                reports, failures = await build_reports(
                    comms, degree, run.descriptions, reporter, concurrency, progress,
                    on_report=None if post_row is None else (lambda row: post_row(row["id"], row)),
                )
        if failures:
            raise StageFailedError("reports", failures)
        progress.finish()
        run.handoff.put(REPORTS, reports)  # the rest of their embeddings start now, not after the save
        key = stage_key(
            "reports",
            {"documents": documents, "text_units": text_units, "communities": communities, "summaries": summaries,
             "llm": llm},
        )
        return await asyncio.to_thread(
            run.store.save, "reports", key, {"community_reports": reports}, {"items": len(reports)}
        )


def offer_saved_reports(reports: StageRef) -> None:
    """The reports frame from its saved stage, for when Prefect served this stage from cache."""
    store = current_run().store
    current_run().handoff.put_loader(REPORTS, lambda: store.load(reports, "community_reports"))
