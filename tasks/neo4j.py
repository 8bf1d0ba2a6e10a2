"""The neo4j task: the knowledge graph into Neo4j, the flow's last stage.

It runs only when `neo4j.uri` is set, after the parquet tables and LanceDB vectors are written
and verified and the manifest is saved, so a Neo4j failure leaves every other output intact.
The graph is read back from the parquet files on disk (what the user got is what Neo4j gets).

What it keeps in `cache/neo4j/`:
- `batches`: the BatchCheckpoint of committed batches, so a sink that crashed resumes where it
  stopped (cleared after a verified write; ignored and reset under `--full`);
- `state.json`: the ids the last successful sink wrote, so the next run deletes the documents,
  chunks, entities, relationships and communities that left the index since then.

Secrets: the password comes from the run's settings, resolved when the run started (settings,
env, or a Prefect Secret block: flows/secrets.py), and is handed straight to the domain code in
the worker thread: never a task parameter, result, cache key or log line.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task

from graphrag_flow.config import Settings
from graphrag_flow.errors import Neo4jSinkError, SettingsError, VerifyError
from graphrag_flow.neo4j_sink import BatchCheckpoint, BatchProgress, SinkState, safe_uri, summary_rows, write_graph
from graphrag_flow.storage.outputs import read_table
from graphrag_flow.progress import StageProgress
from graphrag_flow.storage.paths import ProjectPaths
from graphrag_flow.tables import SCHEMAS
from tasks.context import RunContext
from tasks.retries import failed_state_exception, uncached_stage

STAGE = "neo4j"


def _retry_unless_settings(task, task_run, state) -> bool:
    """Retry a failed batch once; a wrong URI, password or database is not fixed by retrying.

    Reads the exception from `state.data`: in an async task `state.result()` returns a
    coroutine instead of raising (measured with Prefect 3.8.8), which would retry everything.
    """
    exc = failed_state_exception(state)
    if isinstance(exc, Neo4jSinkError):
        return exc.setting is None
    return not isinstance(exc, (SettingsError, VerifyError))


def _sink(
    output: Path, paths: ProjectPaths, settings: Settings, password: str | None, full: bool, cancel: threading.Event
) -> dict[str, Any]:
    """The whole stage in one worker thread: read the tables, write, verify, save the state."""
    tables = {name: read_table(output, name) for name in SCHEMAS}
    state = SinkState(paths.neo4j_state)
    checkpoint = BatchCheckpoint(paths.neo4j_batches)
    if full:
        checkpoint.clear()  # --full ignores checkpoints; MERGE makes redoing every batch harmless
    deletes = state.deletes(tables)
    bar: list[StageProgress] = []

    def on_batch(p: BatchProgress) -> None:
        if not bar:
            bar.append(StageProgress(STAGE, p.total))
        bar[0].advance()

    summary = write_graph(
        settings.neo4j, password, tables, deletes, checkpoint=checkpoint, on_batch=on_batch, cancel=cancel
    )
    state.save(tables)
    if bar:
        bar[0].finish()
    return {
        "uri": safe_uri(settings.neo4j.uri or ""),
        "database": settings.neo4j.database,
        "rows": summary_rows(tables, summary),
        "batches": summary.batches,
        "resumed_batches": summary.resumed_batches,
        "deleted": dict(summary.deleted),
        "verified": bool(summary.verification and summary.verification.ok),
    }


def _failed(output: str) -> str:
    return f"{STAGE} stage failed (the parquet and LanceDB outputs in {output} are written and verified)"


@task(**uncached_stage(STAGE), retries=1, retry_delay_seconds=[3], retry_condition_fn=_retry_unless_settings)
async def neo4j_stage(run: RunContext, output: str) -> dict:
    """Write the graph in `output` (the verified parquet tables) to Neo4j; counts per label/type."""
    logger = get_run_logger()
    neo = run.settings.neo4j  # its password resolved when the run started (flows/secrets.py)
    password = neo.password.get_secret_value() if neo.password is not None else None
    cancel = threading.Event()  # a cancelled flow run stops the thread after the batch in flight
    with run.timed(STAGE):
        try:
            # the sync driver, in a worker thread: the event loop never waits on Neo4j
            result = await asyncio.to_thread(_sink, Path(output), run.paths, run.settings, password, run.full, cancel)
        except asyncio.CancelledError:
            cancel.set()
            raise
        except Neo4jSinkError as exc:
            raise Neo4jSinkError(f"{_failed(output)}: {exc}", setting=exc.setting) from None
        except VerifyError as exc:  # the database holds more or less than the tables call for
            raise VerifyError(f"{_failed(output)}: {exc}") from None
    logger.info(
        "neo4j: %d batch(es) written, %d resumed, deleted %s, graph verified against the tables",
        result["batches"], result["resumed_batches"], result["deleted"] or "nothing",
    )
    return result
