"""What a person sees in the Prefect UI while and after a run: progress, summary and failure artifacts.

- A progress artifact per long stage (extract, summarize, reports, embed-*), fed by
  graphrag_flow.progress events. Events arrive from any thread, many per second; the
  listener only records counts, and one coroutine on the flow's event loop publishes the
  changes every `interval_s` (so a 30k-item stage costs a few dozen API calls, not 30k).
- When a run ends, its summary (graphrag_flow/summary.py) as a table artifact
  (`graphrag-flow-<project>-stages`), its usage per stage as another (`graphrag-flow-<project>-usage`,
  its total in the description) and a markdown one (`graphrag-flow-<project>-summary`, opening with
  the run's cost), under stable keys, so the artifact page shows the project's history across runs.
- When a run fails, a markdown artifact under the same key as a finished run's summary, naming
  the stage, the failed items and their reasons, so the artifact page's history shows the
  failed night next to the good ones; and an event `graphrag-flow.index.failed` naming the
  reason, which `prefect deployment run --watch` prints before the Failed state even on a server
  that does not stream logs (Prefect's default).

Every key is `artifact_key(root, kind)`: `<project>` is a slug of the project folder's name and
a short hash of its full path, so two projects (or two folders named `docs`) never share a
history, and the same folder keeps its own across runs.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import threading
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator
from uuid import UUID

from graphrag_flow import progress as progress_events
from graphrag_flow.errors import GraphragFlowError, Neo4jSinkError, StageFailedError
from graphrag_flow.summary import summary_markdown
from graphrag_flow.usage import cost_text, tokens_of

log = logging.getLogger(__name__)

#: Characters of the project folder's name kept in its artifact keys.
SLUG_CHARS = 32


def artifact_key(root: str | Path, kind: str) -> str:
    """The project's artifact key for `kind` ("summary", "stages", "progress-extract", ...): a
    valid Prefect key (lowercase letters, digits, dashes), `graphrag-flow-<name>-<hash>-<kind>`."""
    path = Path(root).resolve()
    slug = _slug(path.name)[:SLUG_CHARS].strip("-") or "project"
    digest = hashlib.sha256(str(path).encode("utf-8", "surrogateescape")).hexdigest()[:8]
    return f"graphrag-flow-{slug}-{digest}-{_slug(kind)}"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")

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

    def __init__(self, root: str, interval_s: float = 2.0):
        self.root = root
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
                    stage.artifact_id = await acreate_progress_artifact(
                        progress=pct, description=description, key=artifact_key(self.root, f"progress-{name}")
                    )
                else:
                    await aupdate_progress_artifact(stage.artifact_id, progress=pct, description=description)
                stage.published = pct
                self.api_calls += 1
            except Exception as exc:  # the UI is a view: a failed update must never fail the run
                log.debug("progress artifact for %s not updated: %s", name, exc)

    async def publish_every_interval(self, stop: asyncio.Event) -> None:
        """Flush every interval until `stop` is set. Stopped by the event, never cancelled: a
        create cancelled after the server made the artifact but before its id came back would
        leave the stage without an id, and the last flush would make it a second artifact."""
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), self.interval_s)
            except TimeoutError:
                await self.flush()


@asynccontextmanager
async def progress_artifacts(root: str, interval_s: float = 2.0) -> AsyncIterator[ProgressArtifacts]:
    """Listen for the duration of a flow run; the last flush shows where each stage ended."""
    listener = ProgressArtifacts(root, interval_s)
    progress_events.add_listener(listener)
    stop = asyncio.Event()
    publisher = asyncio.create_task(listener.publish_every_interval(stop))
    try:
        yield listener
    finally:
        progress_events.remove_listener(listener)
        stop.set()
        await publisher  # a flush in progress ends first
        await listener.flush()


#: How long a stopped run may take to publish its summary (the stop must stay quick).
STOPPED_PUBLISH_S = 5.0


def failure_markdown(root: str, exc: BaseException) -> str:
    """The summary of a failed or stopped run: which stage, which items and why, and what a re-run does."""
    stopped = not isinstance(exc, Exception)
    lines = [f"# graphrag-flow index of `{root}` {'STOPPED' if stopped else 'FAILED'}", ""]
    if stopped:  # cancelled in Prefect, or the process got SIGTERM or Ctrl-C
        lines += [f"The run was stopped before it finished ({type(exc).__name__}: cancelled in Prefect, "
                  "or the process was sent SIGTERM or Ctrl-C)."]
    elif isinstance(exc, StageFailedError):
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
    """Best effort: a failure to publish must not hide the run's own error, nor hold up a stop."""
    from prefect.artifacts import acreate_markdown_artifact

    stopped = not isinstance(exc, Exception)
    try:
        await asyncio.wait_for(acreate_markdown_artifact(
            key=artifact_key(root, "summary"), markdown=failure_markdown(root, exc),
            description=f"graphrag-flow run summary ({'stopped' if stopped else 'failed'})",
        ), STOPPED_PUBLISH_S if stopped else None)
    except Exception as publish_exc:
        log.warning("could not publish the failure summary artifact: %s", publish_exc)


#: Characters of a failure's reason put in its event (Prefect bounds an event's size).
MAX_REASON_CHARS = 500
#: Seconds a failing run waits for its failure event to reach the server.
EVENT_FLUSH_S = 5.0


async def announce_failure(root: str, reason: str) -> None:
    """Best effort: the event `graphrag-flow.index.failed`, its resource named by the reason and
    related to the flow run, so `prefect deployment run --watch` (which streams the run's events,
    and its logs only where the server publishes them) shows why the run failed.

    Sent before the run's Failed state: the watch stops reading events at that state, so the
    event is flushed to the server first (at most `EVENT_FLUSH_S`).
    """
    try:
        from prefect.events import emit_event
        from prefect.events.worker import EventsWorker
        from prefect.runtime import flow_run

        related = [{"prefect.resource.id": f"prefect.flow-run.{flow_run.id}", "prefect.resource.role": "flow-run"}]
        text = " ".join(reason.split())
        emit_event("graphrag-flow.index.failed", related=related, resource={
            "prefect.resource.id": f"graphrag-flow.project.{artifact_key(root, 'run')}",
            "prefect.resource.name": text[:MAX_REASON_CHARS] + ("…" if len(text) > MAX_REASON_CHARS else ""),
        })
        await asyncio.to_thread(EventsWorker.drain_all, EVENT_FLUSH_S, False)
    except Exception as exc:
        log.warning("could not send the failure event: %s", exc)


@asynccontextmanager
async def summary_on_failure(root: str, logger: logging.Logger | logging.LoggerAdapter) -> AsyncIterator[None]:
    """Around a whole run, from its settings on: a summary artifact when it fails (a settings
    error included) or is stopped (cancelled in Prefect, SIGTERM, Ctrl-C). A failure's reason is
    also the run's last log line and an event (`announce_failure`), which `prefect deployment run
    --watch` shows before the state.

    A Neo4j sink error is left out: that run already published its summary (the outputs
    are written and verified), with the sink's error in it.
    """
    try:
        yield
    except Neo4jSinkError:
        raise
    except Exception as exc:
        reason = str(exc) if isinstance(exc, GraphragFlowError) else f"{type(exc).__name__}: {exc}"
        logger.error("index of %s failed: %s", root, reason)
        await publish_failure(root, exc)
        await announce_failure(root, reason)
        raise
    except BaseException as exc:  # CancelledError, Prefect's TerminationSignal
        if not isinstance(exc, (KeyboardInterrupt, SystemExit)):
            await publish_failure(root, exc)
        raise


def usage_description(usage: dict) -> str:
    """The usage artifact's description: the run's total, what the artifact list shows per run."""
    cost = cost_text(usage["cost_usd"]) if usage["cost_usd"] is not None else "unknown (no prices set)"
    return f"graphrag-flow run usage: {tokens_of(usage):,} tokens, {usage['requests']} answers, cost {cost}"


async def publish_summary(summary: dict) -> None:
    """Artifacts with stable keys, so the UI's artifact page shows the history across runs."""
    from prefect.artifacts import acreate_markdown_artifact, acreate_table_artifact

    # seconds second: the UI gives each column a minimum width and cuts the last ones of a wide
    # table at 1,400 px, and a stage's time is what a person looks for first
    await acreate_table_artifact(
        key=artifact_key(summary["root"], "stages"),
        table=[{"stage": row["stage"], "seconds": row["seconds"], **row} for row in summary["stages"]],
        description="Per stage: items, reused vs recomputed, requests, retries, cache hits, failures, seconds",
    )
    usage = summary.get("usage")
    if usage:
        await acreate_table_artifact(
            key=artifact_key(summary["root"], "usage"),  # one key per project: every night's side by side
            table=[{"stage": stage} | record for stage, record in usage["stages"].items()]
            + [{"stage": "total"} | {k: v for k, v in usage.items() if k != "stages"}],
            description=usage_description(usage),
        )
    await acreate_markdown_artifact(
        key=artifact_key(summary["root"], "summary"), markdown=summary_markdown(summary),
        description="graphrag-flow run summary",
    )
