"""The CPU-heavy batch work of an offline run as Prefect tasks on a Dask cluster (prefect-dask).

With `execution.task_runner: dask` three pieces of work leave the coordinator, one task run per
batch: the offline extraction of a batch of text units (`extract-batch-N`), the offline
embedding of a batch of texts (`embed-batch-<field>-N`) and the extractive reports of a batch
of communities (`report-batch-N`). Everything else stays on the coordinator: the answer cache,
the merge of the extractions, Leiden, the LanceDB merges, the write and the manifest.

A batch task is self-contained: its parameters and its result are plain data (texts, records,
arrays), never the run's live objects, so any worker can run it and a dead worker's batch can be
run again anywhere. Its Prefect cache key is a content hash of its inputs and the code (the rules
and the model are part of the code), its result is persisted: a re-run reuses finished batches.
The coordinator puts the results together by batch, never by completion order, and the result
of a batch is the same on any worker (the rules and the model are deterministic), so the outputs
are those of a local run.

A worker that dies takes its running batch with it: Dask's scheduler runs that batch again on
another worker (the coordinator releases every batch it has read, so finished batches are not
recomputed); a batch that fails is retried by Prefect, like a stage.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import os
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
from prefect import Task, task
from prefect.context import TaskRunContext

from graphrag_flow.config import Settings
from graphrag_flow.hashing import sha256_json, sha256_text
from graphrag_flow.llm import CommunityReportAnswer, GraphExtraction
from graphrag_flow.progress import StageProgress
from graphrag_flow.stages.embed.backends import OfflineBackend
from graphrag_flow.stages.extract.offline import offline_answer_key, offline_version
from graphrag_flow.stages.reports import Member, Rel, ReportOne, SubReports, offline_report_and_material
from tasks.keys import CODE_VERSION
from tasks.retries import STAGE_RETRIES, STAGE_RETRY_DELAY_S, _key_parameter, retry_unless_fatal

#: onnxruntime threads of a worker's offline model (unset: every core of its machine). A
#: LocalCluster sets it to the cores per worker process (flows/execution.py).
EMBED_THREADS_ENV = "GRAPHRAG_FLOW_EMBED_THREADS"
#: Text units per extraction batch at least: ~0.01-0.3 s of rules each, so a batch is seconds
#: of work, worth a task run.
EXTRACT_BATCH_UNITS = 32
#: Communities per report batch at least (an extractive report takes a few ms).
REPORT_BATCH_COMMUNITIES = 64
#: Batches per worker a stage aims at: enough that the workers finish together and a dead one
#: loses a quarter of its share, few enough that a task run's cost (its Prefect states and
#: persisted result, ~0.3 s of the machine's time) stays small beside the work it carries.
BATCHES_PER_WORKER = 4


def batch_size(items: int, workers: int, smallest: int) -> int:
    """Items per batch: `BATCHES_PER_WORKER` batches per worker, and never fewer than `smallest`."""
    return max(smallest, math.ceil(items / (BATCHES_PER_WORKER * max(1, workers))))
#: A report batch smaller than that is sent once no community joined it for this long.
REPORT_FLUSH_S = 0.05


class BatchData:
    """A batch's inputs (its texts or records) as one parameter that neither Prefect nor Dask walks.

    Submitting walks every parameter twice in Prefect (looking for futures to wait for) and
    hashes it in Dask (to name the task), element by element: for batches of long texts and of
    community records that was most of the coordinator's time on a cluster run (py-spy,
    docs/performance.md). A plain object is not descended into, and Dask names it by the
    batch's content key, already computed."""

    __slots__ = ("key", "value")

    def __init__(self, key: str, value: Any):
        self.key, self.value = key, value

    def __dask_tokenize__(self) -> str:
        return self.key


def _worker_name() -> str:
    """The Dask worker running this batch (its address), or `local` outside one."""
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):
        return "local"


def _batch_task(name: str, run_name: str) -> dict[str, Any]:
    return dict(
        name=name, task_run_name=run_name, cache_key_fn=_key_parameter, persist_result=True,
        retries=STAGE_RETRIES, retry_delay_seconds=STAGE_RETRY_DELAY_S, retry_condition_fn=retry_unless_fatal,
    )


@task(**_batch_task("extract-batch", "extract-batch-{number}"))
def extract_batch(key: str, number: int, texts: BatchData) -> dict:
    """The offline rules' answer (GraphExtraction JSON) for each text, in order."""
    from graphrag_flow.stages.extract.rules import extract_offline

    started = time.perf_counter()
    answers = [extract_offline(text).model_dump_json() for text in texts.value]
    return {"worker": _worker_name(), "seconds": time.perf_counter() - started, "answers": answers}


@task(**_batch_task("embed-batch", "embed-batch-{label}"))
def embed_batch(key: str, label: str, texts: BatchData, long_text: str) -> dict:
    """Offline vectors of `texts`, in order. The model is loaded once per worker process
    (`get_offline_embedder` keeps it), not per batch."""
    from graphrag_flow.stages.embed.offline_model import get_offline_embedder

    threads = int(os.environ.get(EMBED_THREADS_ENV, "0")) or None
    embedder = get_offline_embedder(long_text, threads)
    started = time.perf_counter()
    vectors = embedder.embed(texts.value)
    return {"worker": _worker_name(), "seconds": time.perf_counter() - started, "vectors": vectors}


@task(**_batch_task("report-batch", "report-batch-{number}"))
def report_batch(key: str, number: int, communities: BatchData) -> dict:
    """An extractive report (CommunityReportAnswer JSON) and its material's sha256 per community
    (`communities.value`: (members, relationships) per community)."""
    started = time.perf_counter()
    reports = []
    for members, rels in communities.value:
        answer, material = offline_report_and_material(members, rels)
        reports.append((answer.model_dump_json(), material))
    return {"worker": _worker_name(), "seconds": time.perf_counter() - started, "reports": reports}


def batch_key(kind: str, identity: Any, inputs: list[str]) -> str:
    """A batch task's cache key: what it does, the code, and a hash of each of its inputs."""
    return sha256_json({"batch": kind, "code": CODE_VERSION, "identity": identity,
                        "inputs": [sha256_text(text) for text in inputs]})


def _submit_from_flow(runner: Any, batch: Task, parameters: dict[str, Any]) -> Any:
    """Submit `batch` as a task run of the flow, not of the stage task submitting it.

    The task runner ships the caller's Prefect context to the worker, and a stage task's context
    holds its parameters: the RunContext, with the run's resolved secrets, locks and loop. Run in
    a worker thread (a copy of the caller's context), so clearing it here clears it nowhere else.
    """
    TaskRunContext.__var__.set(None)
    return runner.submit(batch, parameters)


async def _settled(future: Any) -> Any:
    """The result of a PrefectDaskFuture, awaited without holding a thread while it runs."""
    loop = asyncio.get_running_loop()
    done = asyncio.Event()

    def wake(_: Any) -> None:
        try:
            loop.call_soon_threadsafe(done.set)
        except RuntimeError:  # the flow's loop closed: nobody waits any more
            pass

    future.wrapped_future.add_done_callback(wake)
    try:
        await done.wait()
    except BaseException:
        future.wrapped_future.cancel()
        raise
    return await asyncio.to_thread(future.result)


@dataclass
class BatchCluster:
    """The run's Dask task runner, as the batch stages use it; counts which worker ran what."""

    runner: Any  # prefect_dask.DaskTaskRunner, entered
    workers: int
    result_storage: Path
    #: `--full`: batches are recomputed, not served from Prefect's cache.
    refresh: bool
    batches_per_worker: Counter = field(default_factory=Counter)
    #: Seconds of work of each batch that came back, by batch task: what a bigger cluster divides.
    batch_seconds: defaultdict = field(default_factory=lambda: defaultdict(list))
    _configured: dict[str, Task] = field(default_factory=dict)

    async def run(self, batch: Task, key: str, **parameters: Any) -> dict:
        """Run one batch task on the cluster and return its result, once it is here. Its list
        parameters (the batch's data) travel as `BatchData`."""
        parameters = {"key": key, **{name: BatchData(key, value) if isinstance(value, list) else value
                                     for name, value in parameters.items()}}
        configured = self._configured.get(batch.name)
        if configured is None:
            configured = batch.with_options(result_storage=self.result_storage, refresh_cache=self.refresh)
            self._configured[batch.name] = configured
        future = await asyncio.to_thread(_submit_from_flow, self.runner, configured, parameters)
        try:
            result = await _settled(future)
        finally:
            future.wrapped_future.release()  # read: the scheduler must not recompute it if its worker dies
        self.batches_per_worker[result["worker"]] += 1
        self.batch_seconds[batch.name].append(result["seconds"])
        return result

    def manifest_block(self) -> dict:
        return {"task_runner": "dask", "workers": self.workers,
                "batches_per_worker": dict(sorted(self.batches_per_worker.items()))}

    def summary(self) -> dict:
        """The manifest's block and, per batch task, its batches and their seconds (run summary)."""
        seconds = {name: {"batches": len(times), "total": round(sum(times), 2), "max": round(max(times), 2)}
                   for name, times in sorted(self.batch_seconds.items())}
        return self.manifest_block() | {"batch_seconds": seconds}


async def extract_on_cluster(cluster: BatchCluster, units: pd.DataFrame, cache: Any, full: bool,
                             progress: StageProgress, on_cache_hit: Callable[[], None]) -> list[tuple[str, GraphExtraction]]:
    """Every text unit's offline extraction: from the answer cache, or from batch tasks run on
    the cluster (each answer stored in the cache as its batch arrives, as a local run does)."""
    version = offline_version()
    ids, texts = units["id"].tolist(), units["text"].tolist()
    keys = [offline_answer_key(text, version) for text in texts]
    stored = {} if full else await asyncio.to_thread(cache.get_many, keys)
    answers: dict[int, GraphExtraction] = {}
    for position, key in enumerate(keys):
        if key in stored:
            answers[position] = GraphExtraction.model_validate_json(stored[key])
            on_cache_hit()
    progress.advance(len(answers))
    todo = [position for position in range(len(ids)) if position not in answers]

    async def one(number: int, positions: list[int]) -> None:
        batch_texts = [texts[p] for p in positions]
        result = await cluster.run(extract_batch, key=batch_key("extract", version, batch_texts), number=number,
                                   texts=batch_texts)
        await asyncio.to_thread(cache.put_many, [(keys[p], answer) for p, answer in zip(positions, result["answers"])])
        for position, answer in zip(positions, result["answers"]):
            answers[position] = GraphExtraction.model_validate_json(answer)
        progress.advance(len(positions))

    size = batch_size(len(todo), cluster.workers, EXTRACT_BATCH_UNITS)
    batches = [todo[i : i + size] for i in range(0, len(todo), size)]
    async with asyncio.TaskGroup() as group:
        for number, positions in enumerate(batches):
            group.create_task(one(number, positions))
    return sorted(((ids[p], answer) for p, answer in answers.items()), key=lambda pair: pair[0])


class ClusterEmbedBackend(OfflineBackend):
    """The offline model run by batch tasks on the cluster: planned here (the same batches as a
    local run's), embedded there, merged here. Two batches per worker in flight per field, so a
    worker never waits for the coordinator's merge."""

    def __init__(self, settings: Settings, cluster: BatchCluster, field_name: str):
        super().__init__(settings)
        self._cluster, self._field, self._long_text = cluster, field_name, settings.embed.long_text
        self._numbers = itertools.count()
        self.concurrency = 2 * cluster.workers

    async def embed_batch(self, texts: list[str], item: str) -> np.ndarray:
        label = f"{self._field}-{next(self._numbers)}"
        result = await self._cluster.run(embed_batch, key=batch_key("embed", self.model, texts), label=label,
                                         texts=texts, long_text=self._long_text)
        return result["vectors"]


def cluster_reporter(cluster: BatchCluster, communities: int) -> ReportOne:
    """Extractive reports written on the cluster, `batch_size` of the `communities` to a batch task.

    `build_reports` asks for one report at a time per community; each request waits here until
    its batch is full, or no other joined it for `REPORT_FLUSH_S`, and is answered when its
    batch returns. The stage runs every community at once, so batches fill."""
    loop = asyncio.get_running_loop()
    pending: list[tuple[list[Member], list[Rel], asyncio.Future]] = []
    numbers = itertools.count()
    sending: set[asyncio.Task] = set()
    timer: asyncio.TimerHandle | None = None
    size = batch_size(communities, cluster.workers, REPORT_BATCH_COMMUNITIES)

    async def send(taken: list[tuple[list[Member], list[Rel], asyncio.Future]]) -> None:
        communities = [(members, rels) for members, rels, _ in taken]
        key = batch_key("reports", "offline", [sha256_json(c) for c in communities])
        try:
            result = await cluster.run(report_batch, key=key, number=next(numbers), communities=communities)
        except BaseException as exc:
            for *_, waiter in taken:
                if not waiter.done():
                    waiter.set_exception(exc)
            return
        for (*_, waiter), (answer, material) in zip(taken, result["reports"]):
            if not waiter.done():
                waiter.set_result((CommunityReportAnswer.model_validate_json(answer), material))

    def flush() -> None:
        nonlocal pending, timer
        if timer is not None:
            timer.cancel()
            timer = None
        taken, pending = pending, []
        if taken:
            job = loop.create_task(send(taken))
            sending.add(job)
            job.add_done_callback(sending.discard)

    async def report_one(members: list[Member], rels: list[Rel], sub_reports: SubReports):
        nonlocal timer
        waiter = loop.create_future()
        pending.append((members, rels, waiter))
        if len(pending) >= size:
            flush()
        else:
            if timer is not None:
                timer.cancel()
            timer = loop.call_later(REPORT_FLUSH_S, flush)
        return await waiter

    return report_one
