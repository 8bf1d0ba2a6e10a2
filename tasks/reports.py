"""The reports task: one report per community (graphrag_flow/stages/reports.py), LLM or
extractive offline.

Starts with the run and runs alongside the summarize stage: the communities come from the run's
channels the moment they are found, and members' descriptions as they are summarized. So the
stage's key names the communities and summarize stages' keys rather than their outputs, which do
not exist yet when this starts. Each report is posted as it arrives (its text goes to its
embeddings at once), and the finished frame is put before it is saved, for the embed stage's
full pass.
"""

from __future__ import annotations

import asyncio

from prefect import task

from graphrag_flow.llm import get_encoding
from graphrag_flow.stages.reports import build_reports, communities_with_periods, llm_reporter, offline_reporter
from graphrag_flow.storage.stages import StageRef
from tasks.batches import cluster_reporter
from tasks.context import RunContext
from tasks.llm_stage import item_stage
from tasks.retries import cached_stage


@task(**cached_stage("reports"))
async def reports_stage(run: RunContext, key: str, documents: StageRef, text_units: StageRef) -> StageRef:
    units, docs = await run.load_frames((text_units, "text_units"), (documents, "documents"))
    if not run.offline:
        await asyncio.to_thread(get_encoding)  # loads its BPE file once: not on the loop
    found, degrees = await run.channels.values("communities", "communities", "degrees")
    with run.timed("reports"):
        comms, degree = await asyncio.to_thread(communities_with_periods, found, degrees, units, docs)
        del units, docs
        published = run.channels.of("reports", "community_reports")
        # On a cluster every community is in progress at once, so its reports fill batches.
        offline_concurrency = max(1, len(comms)) if run.cluster is not None else 1
        async with item_stage(run, "reports", len(comms), streams=[published],
                              offline_concurrency=offline_concurrency) as work:
            if work.client is not None:
                reporter = llm_reporter(work.client, run.prompt("community_report"),
                                        run.settings.llm.report_max_input_tokens)
            else:
                reporter = offline_reporter() if run.cluster is None else cluster_reporter(run.cluster, len(comms))
            reports, work.failures = await build_reports(
                comms, degree, run.channels.of("summarize", "entities").rows,
                run.channels.of("summarize", "relationships").rows, reporter, work.concurrency, work.progress,
                on_report=lambda row: published.post(row["id"], row),
            )
        published.put(reports)  # the rest of their embeddings start now, not after the save
        return await run.save("reports", key, {"community_reports": reports}, {"items": len(reports)})
