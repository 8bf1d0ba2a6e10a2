"""Where a run's batch work runs: in the flow's process, or on a Dask cluster (prefect-dask).

With `execution.task_runner: dask` the run opens one `DaskTaskRunner` for itself: connected to
the scheduler at `execution.dask_address`, or starting a `LocalCluster` of
`execution.dask_workers` worker processes (one thread each) that lives as long as the run. The
batch tasks (tasks/batches.py) are submitted to it; everything else stays on the coordinator.
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

from graphrag_flow.config import Settings
from graphrag_flow.errors import SettingsError
from graphrag_flow.stages.embed.offline_model import model_cores
from tasks.batches import EMBED_THREADS_ENV

#: How long connecting to `execution.dask_address` may take before the run stops, naming it.
CONNECT_TIMEOUT_S = 10


def _runner(settings: Settings) -> Any:
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError:
        raise SettingsError(
            "execution.task_runner is 'dask' but prefect-dask is not installed: "
            "pip install 'graphrag-flow[dask]'"
        ) from None
    execution = settings.execution
    client_kwargs = {"timeout": f"{CONNECT_TIMEOUT_S}s", "set_as_default": False}
    if execution.dask_address:
        return DaskTaskRunner(address=execution.dask_address, client_kwargs=client_kwargs)
    workers = execution.dask_workers
    # One thread per worker process; the offline model's threads split the cores between the
    # processes (each would otherwise take them all, and the processes would fight over them).
    threads = max(1, model_cores() // workers)
    return DaskTaskRunner(
        cluster_kwargs={
            "n_workers": workers, "threads_per_worker": 1, "processes": True, "dashboard_address": None,
            "env": {EMBED_THREADS_ENV: str(threads)},
        },
        client_kwargs=client_kwargs,
    )


def _start(runner: Any, settings: Settings) -> int:
    """Starts the cluster (or connects) and returns how many workers it has."""
    runner.__enter__()
    try:
        client = runner.client
    except (OSError, TimeoutError) as exc:
        runner.__exit__(None, None, None)
        where = settings.execution.dask_address or f"a LocalCluster of {settings.execution.dask_workers} workers"
        raise SettingsError(f"execution.dask_address: cannot reach the Dask scheduler at {where}: {exc}") from None
    return max(1, len(client.scheduler_info()["workers"]))


@asynccontextmanager
async def batch_runner(settings: Settings) -> AsyncIterator[tuple[Any, int]]:
    """(the run's DaskTaskRunner, its worker count), or (None, 0) for `task_runner: local` and
    for an LLM run, whose stages keep to one process: their bound is the provider's rate limit,
    not the CPU, and their client, limiter and answer cache belong to the flow's event loop.

    Started and stopped in a worker thread: distributed's synchronous client runs its own
    event loop in a thread and must not be driven from the flow's loop.
    """
    if settings.execution.task_runner == "local" or settings.llm.provider != "offline":
        yield None, 0
        return
    runner = _runner(settings)
    workers = await asyncio.to_thread(_start, runner, settings)
    try:
        yield runner, workers
    finally:
        await asyncio.to_thread(runner.__exit__, None, None, None)
