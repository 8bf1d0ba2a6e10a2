"""The neo4j task: the knowledge graph into Neo4j (graphrag_flow/stages/neo4j), the flow's last stage.

It runs only when `neo4j.uri` is set, after the parquet tables and LanceDB vectors are written
and verified and the manifest is saved, so a Neo4j failure leaves every other output intact.
The graph is read back from the parquet files on disk (what the user got is what Neo4j gets).

Secrets: the password comes from the run's settings, resolved when the run started (settings,
env, or a Prefect Secret block: flows/secret_lookup.py), and is handed straight to the domain code in
the worker thread: never a task parameter, result, cache key or log line.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from prefect import get_run_logger, task

from graphrag_flow.config import secret_value
from graphrag_flow.errors import Neo4jSinkError, SettingsError, VerifyError
from graphrag_flow.stages.neo4j import STAGE, sink_outputs
from tasks.context import RunContext
from tasks.retries import failed_state_exception, uncached_stage


def _retry_unless_settings(task, task_run, state) -> bool:
    """Retry a failed batch once; a wrong URI, password or database is not fixed by retrying.

    Reads the exception from `state.data`: in an async task `state.result()` returns a
    coroutine instead of raising (Prefect 3.8.8), which would retry everything.
    """
    exc = failed_state_exception(state)
    if isinstance(exc, Neo4jSinkError):
        return exc.setting is None
    return not isinstance(exc, (SettingsError, VerifyError))


def _failed(output: str) -> str:
    return f"{STAGE} stage failed (the parquet and LanceDB outputs in {output} are written and verified)"


@task(**uncached_stage(STAGE), retries=1, retry_delay_seconds=[3], retry_condition_fn=_retry_unless_settings)
async def neo4j_stage(run: RunContext, output: str) -> dict:
    """Write the graph in `output` (the verified parquet tables) to Neo4j; counts per label/type."""
    logger = get_run_logger()
    neo = run.settings.neo4j  # its password resolved when the run started (flows/secret_lookup.py)
    password = secret_value(neo.password)
    cancel = threading.Event()  # a cancelled flow run stops the thread after the batch in flight
    with run.timed(STAGE):
        try:
            # the sync driver, in a worker thread: the event loop never waits on Neo4j
            result = await asyncio.to_thread(sink_outputs, Path(output), run.paths, run.settings, password, run.full, cancel)
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
