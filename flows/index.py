"""The `index` flow: a folder of documents -> GraphRAG tables and vector tables, resumably.

Stages form a graph, not a chain (docs/architecture.md draws it): text units are embedded
while the graph is extracted; communities are found and reports written while descriptions are
summarized; entity descriptions are embedded while reports are written. Every stage starts with
the run and picks up what it reads from the run's channels the moment it is made, so one
concurrency limit is kept busy. Every stage is a Prefect task with a content cache key (computed
here, once per stage: tasks/keys.py); LLM answers are cached as they arrive and vector tables
are merged batch by batch, so a run that dies is run again and redoes only what was in flight.

The served `output/` is never written while it is served: a run builds its whole generation in
`output.next` (seeded from `output/`; its vector tables are the run's checkpoint), verifies it
there and switches it in at once (graphrag_flow/storage/generations.py).

Run it by hand: `graphrag-flow index --root DIR`, or `python -m flows.index DIR`.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict, replace
from pathlib import Path
from typing import Annotated, Any, Callable

from prefect import Task, flow, get_run_logger
from prefect.runtime import deployment, flow_run
from prefect.utilities.annotations import quote
from pydantic import Field

from flows.artifacts import progress_artifacts, publish_summary, summary_on_failure
from flows.budget_pause import wait_for_new_budget
from flows.dead_runs import crash_dead_holder
from flows.execution import batch_runner
from flows.quota import require_concurrency_limit
from flows.secret_lookup import resolve_secrets
from graphrag_flow.aio import frozen_heap, gather_fatal_first
from graphrag_flow.config import Settings, load_settings
from graphrag_flow.budget import budget_spent_error, budget_warnings, require_estimate_within_budget
from graphrag_flow.channels import Channels
from graphrag_flow.errors import BudgetExceededError, GraphragFlowError, OutputWriteError
from graphrag_flow.incremental import LastRun, document_delta, read_last_run, run_changes
from graphrag_flow.llm import AnswerCache, ConnectionPool, LLMStats, RequestLimiter
from graphrag_flow.llm.spend import SpendGate
from graphrag_flow.llm.entra import run_token
from graphrag_flow.llm.pacing import RateBudget
from graphrag_flow.stages.embed.backends import embedding_model_id
from graphrag_flow.storage.faults import kill_point
from graphrag_flow.storage.generations import OutputFolders, SeedStats
from graphrag_flow.storage.paths import ProjectPaths
from graphrag_flow.storage.lease import LeaseLock
from graphrag_flow.storage.project_lock import project_lock
from graphrag_flow.storage.published import hydrate, publish
from graphrag_flow.storage.reach import check_stores, scrub_secrets
from graphrag_flow.storage.stages import StageRef, StageStore
from graphrag_flow.storage.store import Store, output_store
from graphrag_flow.storage.writable import require_writable
from graphrag_flow.summary import graph_notes, stage_rows
from graphrag_flow.tables import VECTOR_FIELDS
from tasks.batches import BatchCluster
from tasks.chunk import chunk_stage
from tasks.communities import communities_stage
from tasks.context import RunContext
from tasks.embed import embed_stage
from tasks.extract import extract_stage
from tasks.keys import CODE_VERSION, stage_keys
from tasks.llm_stage import llm_identities
from tasks.load import load_stage
from tasks.neo4j import neo4j_stage
from tasks.reports import reports_stage
from tasks.summarize import summarize_stage
from tasks.write import write_stage


def _prefect_limit(settings: Settings):
    """Every LLM request also holds a slot of a Prefect global concurrency limit, when named."""
    name = settings.llm.prefect_concurrency_limit
    if not name:
        return None
    from prefect.concurrency.asyncio import concurrency

    return lambda: concurrency(name, occupy=1)


async def _on_disk(step: str, work: Callable[..., Any], *args: Any) -> Any:
    """Run a step on the output folders in a thread; a full disk or a permission becomes an
    error naming the step and the file (each step leaves output/ a whole generation)."""
    try:
        return await asyncio.to_thread(work, *args)
    except OSError as exc:
        raise OutputWriteError(f"{step} failed at {exc.filename or '?'}: {exc.strerror or exc}") from None


async def _on_store(step: str, work: Callable[..., Any], *args: Any) -> Any:
    """Run a step on the output URL's store in a thread; any failure of the store (unreachable,
    credentials refused, a full bucket) becomes an error naming the step and output.dir."""
    try:
        return await asyncio.to_thread(work, *args)
    except GraphragFlowError:
        raise
    except Exception as exc:  # botocore, aiohttp and OS errors alike
        raise OutputWriteError(
            f"{step} failed (setting output.dir): {type(exc).__name__}: {scrub_secrets(str(exc))}; the store still "
            "serves its last good generation, and the next run publishes again") from None


async def run_cached_stage(run: RunContext, stage_task: Task, key: str, **inputs: Any) -> StageRef:
    """Run a cached stage task under its `key`, with the project's result storage, recomputing it
    when its checkpoint is gone (or always, under --full); then offer its saved frames on the
    run's channels, for the stages waiting on them in case Prefect served it from its cache (a
    no-op for the frames it made here)."""
    refresh = run.full or not run.store.is_complete(stage_task.name, key)
    configured = stage_task.with_options(result_storage=run.paths.prefect_results, refresh_cache=refresh)
    ref = await configured(quote(run), key=key, **inputs)
    run.channels.offer_saved(ref, run.store.load)
    return ref


@flow(
    name="index",
    flow_run_name="index-{root}",
    description="Index a graphrag-flow project folder into GraphRAG tables and vector tables; resumes partway.",
    log_prints=True,
)
async def index(
    root: Annotated[str, Field(description="Project folder: holds settings.yaml and input/; outputs go to output/")],
    full: Annotated[
        bool, Field(description="Ignore caches and checkpoints and rebuild everything (old outputs stay until done)")
    ] = False,
    max_cost_usd: Annotated[
        float | None, Field(description="This run's budget in US dollars (overrides llm.max_run_cost_usd)")
    ] = None,
) -> dict:
    """Index one project folder; a second run resumes from the first's checkpoints.

    Prefect reads the parameter descriptions the UI and `prefect deploy` show from this
    docstring (the Annotated descriptions are lost to `from __future__ import annotations`).

    Args:
        root: Project folder: holds settings.yaml and input/; outputs go to output/.
        full: Ignore caches and checkpoints and rebuild everything (old outputs stay until the new ones verify).
        max_cost_usd: This run's budget in US dollars (overrides llm.max_run_cost_usd).
    """
    logger = get_run_logger()
    started = time.time()
    paths = ProjectPaths(Path(root).resolve())
    # a summary artifact for every run: failed (a settings error too) or stopped
    async with summary_on_failure(str(paths.root), logger):
        return await _index_run(paths, full, max_cost_usd, logger, started)


async def _index_run(paths: ProjectPaths, full: bool, max_cost_usd: float | None,
                     logger: logging.Logger | logging.LoggerAdapter, started: float) -> dict:
    """One run of the project at `paths`, from its settings to its summary."""
    settings = await resolve_secrets(load_settings(paths.root))  # a missing Secret block stops the run here
    if max_cost_usd is not None:
        settings.llm.max_run_cost_usd = max_cost_usd
    await require_concurrency_limit(settings)  # a misspelt quota name must not mean no quota
    entra = run_token(settings.llm)  # azure-identity missing stops the run here; the token comes on first use
    await asyncio.to_thread(require_writable, paths.written_by_a_run())  # not after hours of extraction
    # a budget the estimate's low already crosses: not started, no request sent (graphrag_flow/budget.py)
    await asyncio.to_thread(require_estimate_within_budget, paths.root, settings)
    for warning in budget_warnings(settings):
        logger.warning("%s", warning)
    await asyncio.to_thread(check_stores, settings)  # input.dir / output.dir URLs: reachable, credentials accepted
    identities = llm_identities(settings, paths.root)  # a missing prompt file stops the run here
    # One run per project at a time (a nightly run still going when the next one starts): the
    # second stops here, before it touches anything, naming the run that holds the lock.
    run_id = str(flow_run.get_id() or "")
    store = output_store(settings)  # None: the outputs are the project's output/ folder
    with project_lock(paths, run_id) as previous_holder, \
            LeaseLock(store, paths.root, run_id, settings.storage.lock_lease_s) if store else nullcontext() as lease:
        await crash_dead_holder(previous_holder, run_id, paths.root, logger)  # a killed run still shown Running
        # The served output/ is never written: the run builds its generation in output.next
        # and switches it in once it verifies (graphrag_flow/storage/generations.py).
        folders = OutputFolders(paths.root)
        await asyncio.to_thread(folders.recover)
        if store is not None:  # the local output/ is the coordinator's copy of what the store serves
            logger.info("%s", await _on_store(f"reading the generation {store.shown} serves", hydrate, store,
                                              folders.live))
        # what the new run is compared with (documents, rows carried over): the served generation
        last_run = await asyncio.to_thread(read_last_run, folders.live)
        seeded = await _on_disk(f"preparing {folders.staging.name}/", folders.prepare_staging, full)
        logger.info("%s", seeded.line())
        offline = settings.llm.provider == "offline"
        # The run's connections outlive each stage's client; opened and closed on this loop, around every stage.
        # The batch work of an offline run goes to the Dask cluster, when one is set
        # (flows/execution.py); LLM stages keep to this process (README, "Execution").
        async with (nullcontext() if offline else ConnectionPool(settings.llm.max_concurrency) as pool,
                    batch_runner(settings) as (runner, workers)):
            run = RunContext(
                paths=paths,
                settings=settings,
                out_dir=folders.staging,
                full=full,
                store=StageStore(paths.stages),
                cache=AnswerCache(paths.answer_cache),
                limiter=RequestLimiter(settings.llm.max_concurrency, extra=_prefect_limit(settings)),
                stats=LLMStats(),
                pool=pool,
                gate=SpendGate(settings.llm.max_run_tokens, settings.llm.max_run_cost_usd,
                               settings.llm.price_per_million_tokens),
                pacer=RateBudget.from_settings(settings.llm),
                entra=entra,
                cluster=None if runner is None else BatchCluster(runner, workers, paths.prefect_results, full),
            )
            try:
                while True:
                    try:
                        with frozen_heap():  # no garbage-collector pauses on the loop serving requests
                            return await _index_stages(run, folders, seeded, last_run, identities, logger, started,
                                                       store, lease)
                    except BudgetExceededError as exc:
                        if not deployment.get_id():
                            raise
                        # A scheduled run waits for a person to approve a new budget in the UI,
                        # then goes on from the answers it has (flows/budget_pause.py).
                        await wait_for_new_budget(run.gate, exc, logger, str(run.paths.root))
                        run = replace(run, channels=Channels(), stage_seconds={})
            finally:
                run.close()


async def _index_stages(run: RunContext, folders: OutputFolders, seeded: SeedStats, last_run: LastRun,
                        identities: dict[str, dict], logger: logging.Logger | logging.LoggerAdapter,
                        started: float, store: Store | None = None, lease: LeaseLock | None = None) -> dict:
    """The stages of one run, on the run state `index` opened for it."""
    settings, full = run.settings, run.full
    async with progress_artifacts(str(run.paths.root)):
        documents = await load_stage(quote(run))
        docs = await asyncio.to_thread(run.store.load, documents, "documents")
        delta = document_delta(
            last_run.manifest, zip(docs["title"], docs["content_sha256"]), settings.fingerprint(), CODE_VERSION
        )
        del docs
        logger.info("%s", delta.headline())
        keys = stage_keys(documents.key, settings, identities)
        text_units = await run_cached_stage(run, chunk_stage, keys["chunk"], documents=documents)
        # Every stage starts now and waits, in memory, for what it reads (the run's channels):
        # summaries and communities for the extract stage's candidates, reports for the
        # communities and then each for its own members' summaries, each embedding field for
        # its source's rows and frame. No stage waits for another's save, return and reload, so
        # one concurrency limit is kept busy from the first request to the last.
        # A TaskGroup, not gather: when one branch fails the others are cancelled and awaited
        # before the run's resources (answer cache, limiter) are closed under it.
        try:
            extractions, graph, communities, reports, *vectors = await gather_fatal_first([
                run_cached_stage(run, extract_stage, keys["extract"], text_units=text_units),
                run_cached_stage(run, summarize_stage, keys["summarize"]),
                run_cached_stage(run, communities_stage, keys["communities"]),
                run_cached_stage(run, reports_stage, keys["reports"], documents=documents, text_units=text_units),
                *(embed_stage(quote(run), field=field) for field in VECTOR_FIELDS),
            ])
        except GraphragFlowError:
            if run.gate is not None and run.gate.exhausted:  # items refused at the budget: say that
                raise budget_spent_error(run.gate) from None
            raise
        kill_point("after-embedding")
        refs = {
            "load": documents, "chunk": text_units, "extract": extractions, "summarize": graph,
            "communities": communities, "reports": reports,
        }
        manifest = await write_stage(
            quote(run),
            refs=refs,
            embedding_model=embedding_model_id(settings),
            graph_model="offline/rules" if settings.llm.provider == "offline" else settings.llm.chat_model,
            flow_run_id=str(flow_run.get_id() or ""),
        )
        published = None
        if store is not None:  # the store serves it once its pointer names it; then the local copy follows
            published = await _on_store(f"publishing to {store.shown}", publish, store, folders.staging,
                                         str(flow_run.get_id() or ""), lease)
            logger.info("%s", published.line())
        switched = await _on_disk(f"switching {folders.staging.name}/ in as {folders.live.name}/", folders.switch_in)
        logger.info("outputs switched in (%s); the generation replaced is kept as %s until the next switch",
                    switched, folders.previous.name)
        changes, carried = await asyncio.to_thread(run_changes, last_run, delta, folders.live, full)
        # The outputs stand: earlier runs' stage checkpoints are no longer read (this run's are
        # kept for its resume and the next run's cache hits).
        removed, freed = await asyncio.to_thread(
            run.store.prune, {(ref.stage, ref.key) for ref in refs.values()}, started
        )
        if removed:
            logger.info("removed %d stage checkpoint(s) of earlier runs (%.1f MB)", removed, freed / 1e6)
        embeds = dict(zip(VECTOR_FIELDS, vectors))
        summary = {
            "root": str(run.paths.root),
            "output": published.url if published else str(folders.live),
            "staging": asdict(seeded) | {"switch": switched},
            **({"published": asdict(published)} if published else {}),
            "tables": manifest["tables"],
            "vector_tables": manifest["vector_tables"],
            "warnings": documents.stats.get("warnings", []),
            "not_matched": documents.stats.get("not_matched", []),
            "graph_notes": graph_notes(manifest["tables"], settings.llm.provider == "offline", settings.llm.chat_model),
            "stages": stage_rows(refs, embeds, run.stats.as_rows(), run.stage_seconds, carried, manifest.get("usage")),
            "usage": manifest.get("usage"),
            "changes": changes,
            "llm_warnings": [w for row in run.stats.as_rows() for w in row["warnings"]],
            "max_in_flight": run.limiter.max_in_flight,
            "execution": manifest["execution"] if run.cluster is None else run.cluster.summary(),
        }
        if run.pacer is not None:
            summary["rate_budget"] = run.pacer.summary()
        neo4j_error = None
        if settings.neo4j.uri:
            # last: the outputs and manifest above stand even when Neo4j is down or refuses us
            try:
                summary["neo4j"] = await neo4j_stage(quote(run), output=str(folders.live))
            except GraphragFlowError as exc:
                neo4j_error = exc
                summary["neo4j"] = {"error": str(exc)}
        await publish_summary(summary)
        if neo4j_error is not None:
            raise neo4j_error
        logger.info("index finished: %s", manifest["tables"])
        return summary


if __name__ == "__main__":
    asyncio.run(index(root=sys.argv[1], full="--full" in sys.argv[2:]))
