"""What a person sees in the Prefect UI while and after a run: progress, summary and failure artifacts.

- A progress artifact per long stage (extract, summarize, reports, embed-*), fed by
  graphrag_flow.progress events. Events arrive from any thread, many per second; the
  listener only records counts, and one coroutine on the flow's event loop publishes the
  changes every `interval_s` (so a 30k-item stage costs a few dozen API calls, not 30k).
- When a run ends, its summary (graphrag_flow/summary.py) as a table artifact
  (`graphrag-flow-stages`), its usage per stage as another (`graphrag-flow-usage`, its total in
  the description) and a markdown one (`graphrag-flow-summary`, opening with the run's cost),
  under stable keys, so the artifact page shows the history across runs.
- When a run fails, a markdown artifact under the same key as a finished run's summary
  (`graphrag-flow-summary`), naming the stage, the failed items and their reasons, so the
  artifact page's history shows the failed night next to the good ones.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import AsyncIterator
from uuid import UUID

from graphrag_flow import progress as progress_events
from graphrag_flow.errors import GraphragFlowError, Neo4jSinkError, StageFailedError
from graphrag_flow.summary import summary_markdown
from graphrag_flow.usage import cost_text, tokens_of

log = logging.getLogger(__name__)

SUMMARY_KEY = "graphrag-flow-summary"
#: Per stage, the tokens and cost of the run's answers: one key, so the UI lists every night's side by side.
USAGE_KEY = "graphrag-flow-usage"
#: Failed items listed in the failure artifact (the rest are counted).
MAX_FAILED_ITEMS = 50


@dataclass
class _Stage:
    total: int
    done: int = 0
    finished: bool = False
    artifact_id: UUID | None = None
    published: float | None = None  # the percentage last sent


class ProgressArtifacts:
    """A graphrag_flow.progress listener that keeps one Prefect progress artifact per stage."""

    def __init__(self, interval_s: float = 2.0):
        self.interval_s = interval_s
        self._stages: dict[str, _Stage] = {}
        self._lock = threading.Lock()
        self.api_calls = 0

    # -- listener side: any thread, never blocks on the network
    def start(self, stage: str, total: int) -> None:
        with self._lock:
            known = self._stages.get(stage)
            if known is None:
                self._stages[stage] = _Stage(total=total)
            else:  # a retried stage starts again: same artifact, counts from zero
                known.total, known.done, known.finished = total, 0, False

    def advance(self, stage: str, done: int) -> None:
        with self._lock:
            if stage in self._stages:
                self._stages[stage].done = done

    def finish(self, stage: str) -> None:
        with self._lock:
            if stage in self._stages:
                self._stages[stage].finished = True

    # -- publisher side: the flow's event loop
    async def flush(self) -> None:
        """Create the artifact of each new stage, update those whose percentage moved."""
        from prefect.artifacts import acreate_progress_artifact, aupdate_progress_artifact

        with self._lock:
            snapshot = [(name, s, s.total, s.done, s.finished) for name, s in self._stages.items()]
        for name, stage, total, done, finished in snapshot:
            pct = 100.0 if finished or total == 0 else round(min(100.0, 100.0 * done / total), 1)
            if stage.published == pct:
                continue
            description = f"graphrag-flow {name}: {min(done, total) if not finished else total} of {total} items"
            try:
                if stage.artifact_id is None:
                    stage.artifact_id = await acreate_progress_artifact(progress=pct, description=description)
                else:
                    await aupdate_progress_artifact(stage.artifact_id, progress=pct, description=description)
                stage.published = pct
                self.api_calls += 1
            except Exception as exc:  # the UI is a view: a failed update must never fail the run
                log.debug("progress artifact for %s not updated: %s", name, exc)

    async def publish_every_interval(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            await self.flush()


@asynccontextmanager
async def progress_artifacts(interval_s: float = 2.0) -> AsyncIterator[ProgressArtifacts]:
    """Listen for the duration of a flow run; the last flush shows where each stage ended."""
    listener = ProgressArtifacts(interval_s)
    progress_events.add_listener(listener)
    publisher = asyncio.create_task(listener.publish_every_interval())
    try:
        yield listener
    finally:
        progress_events.remove_listener(listener)
        publisher.cancel()
        try:
            await publisher
        except asyncio.CancelledError:
            pass
        await listener.flush()


def failure_markdown(root: str, exc: BaseException) -> str:
    """The summary of a failed run: which stage, which items and why, and what a re-run does."""
    lines = [f"# graphrag-flow index of `{root}` FAILED", ""]
    if isinstance(exc, StageFailedError):
        lines += [f"Stage **{exc.stage}**: {len(exc.failures)} item(s) failed.", "",
                  "| item | reason |", "|---|---|"]
        for failure in exc.failures[:MAX_FAILED_ITEMS]:
            lines.append(f"| {_cell(failure.item)} | {_cell(failure.reason)} |")
        if len(exc.failures) > MAX_FAILED_ITEMS:
            lines.append(f"| … | and {len(exc.failures) - MAX_FAILED_ITEMS} more |")
    else:
        kind = "" if isinstance(exc, GraphragFlowError) else f"{type(exc).__name__}: "
        lines += [f"Error: {kind}{_cell(str(exc))}"]
    lines += ["", "Finished stages and every LLM answer received are saved under `cache/`; the next run "
              "(the next scheduled one, or `prefect deployment run`) resumes from them and retries only "
              "the failed items. The outputs of the last completed run are left as they were."]
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


async def publish_failure(root: str, exc: BaseException) -> None:
    """Best effort: a failure to publish must not hide the run's own error."""
    from prefect.artifacts import acreate_markdown_artifact

    try:
        await acreate_markdown_artifact(
            key=SUMMARY_KEY, markdown=failure_markdown(root, exc), description="graphrag-flow run summary (failed)"
        )
    except Exception as publish_exc:
        log.warning("could not publish the failure summary artifact: %s", publish_exc)


@asynccontextmanager
async def observed_run(root: str) -> AsyncIterator[None]:
    """Around a run's stages: progress artifacts, and a summary artifact even on failure.

    A Neo4j sink error is left out: that run already published its summary (the outputs
    are written and verified), with the sink's error in it.
    """
    async with progress_artifacts():
        try:
            yield
        except Exception as exc:
            if not isinstance(exc, Neo4jSinkError):
                await publish_failure(root, exc)
            raise


def usage_description(usage: dict) -> str:
    """The usage artifact's description: the run's total, what the artifact list shows per run."""
    cost = cost_text(usage["cost_usd"]) if usage["cost_usd"] is not None else "unknown (no prices set)"
    return f"graphrag-flow run usage: {tokens_of(usage):,} tokens, {usage['requests']} answers, cost {cost}"


async def publish_summary(summary: dict) -> None:
    """Artifacts with stable keys, so the UI's artifact page shows the history across runs."""
    from prefect.artifacts import acreate_markdown_artifact, acreate_table_artifact

    await acreate_table_artifact(
        key="graphrag-flow-stages",
        table=summary["stages"],
        description="Per stage: items, reused vs recomputed, requests, retries, cache hits, failures, seconds",
    )
    usage = summary.get("usage")
    if usage:
        await acreate_table_artifact(
            key=USAGE_KEY,
            table=[{"stage": stage} | record for stage, record in usage["stages"].items()]
            + [{"stage": "total"} | {k: v for k, v in usage.items() if k != "stages"}],
            description=usage_description(usage),
        )
    await acreate_markdown_artifact(
        key="graphrag-flow-summary", markdown=summary_markdown(summary), description="graphrag-flow run summary"
    )
