"""The embed stage for one field: embed what is missing, merge each finished batch, delete the stale.

The LanceDB table is the checkpoint. At most `concurrency` batches are fetched but not yet
saved at any time (a batch's slot is released only after its rows are merged), so a run
killed mid-embedding redoes at most that many batches.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import AsyncIterator, Protocol, TypeVar

import numpy as np
import pandas as pd

from graphrag_flow.aio import task_group_fatal_first
from graphrag_flow.errors import ItemFailedError
from graphrag_flow.hashing import sha256_text
from graphrag_flow.progress import StageProgress
from graphrag_flow.storage.vectors import VectorTable

T = TypeVar("T")
logger = logging.getLogger(__name__)

#: Passes over the rows a re-read table still lacks after the main pass, before the stage fails.
REPAIR_PASSES = 2


class EmbeddingBackend(Protocol):
    model: str  # recorded in every row's `model`
    concurrency: int  # batches fetched but not yet saved, at most
    dimension: int | None  # known up front (offline) or learnt from the first answer

    def plan(self, texts: list[str]) -> list[list[int]]: ...

    async def embed_batch(self, texts: list[str], item: str) -> np.ndarray: ...


@dataclass
class EmbedResult:
    field: str
    total: int
    embedded: int = 0
    reused: int = 0
    deleted: int = 0
    batches: int = 0
    #: Rows found without a vector after the pass (the table was reset under it) and embedded again.
    repaired: int = 0
    failures: list[ItemFailedError] = field(default_factory=list)


class BatchMerger:
    """Merges answered batches into one vector table, every batch waiting at that moment in
    one merge: a merge costs about the same for a few rows as for a hundred (docs/performance.md),
    a batch waiting for its merge is work a kill would lose, and its slot is held until then.
    """

    def __init__(self, table: VectorTable, model: str):
        self.table, self.model = table, model
        self.prepared = False
        #: Ids this run merged, so a later pass counts them as embedded now, not reused.
        self.merged_ids: set[str] = set()
        self._pending: list[tuple[list[str], np.ndarray, list[str]]] = []
        self._lock = asyncio.Lock()

    async def add(self, ids: list[str], vectors: np.ndarray, shas: list[str]) -> None:
        """Returns once these rows are in the table (merged by this call or a concurrent one)."""
        self._pending.append((ids, vectors, shas))
        async with self._lock:
            while self._pending:
                taken, self._pending = self._pending, []
                all_ids = [i for batch in taken for i in batch[0]]
                stacked = np.concatenate([batch[1] for batch in taken])
                all_shas = [sha for batch in taken for sha in batch[2]]
                if not self.prepared:
                    if await asyncio.to_thread(self.table.prepare, stacked.shape[1]):
                        logger.warning("vector table %s held vectors of another dimension than %d: rebuilt, "
                                       "every row is embedded again", self.table.name, stacked.shape[1])
                    self.prepared = True
                await asyncio.to_thread(self.table.merge, all_ids, stacked, all_shas, self.model)
                self.merged_ids.update(all_ids)


def _columns(inputs: pd.DataFrame) -> tuple[list[str], list[str], list[str]]:
    ids, texts = inputs["id"].tolist(), inputs["text"].tolist()
    return ids, texts, [sha256_text(t) for t in texts]


async def embed_field(
    field_name: str,
    table: VectorTable,
    inputs: pd.DataFrame,
    backend: EmbeddingBackend,
    slots: asyncio.Semaphore | None = None,
    merger: "BatchMerger | None" = None,
) -> EmbedResult:
    """Bring `table` to exactly one current vector per row of `inputs` (id, text).

    `slots` bounds the batches taken but not yet merged; pass one semaphore to every field of
    a run so that bound holds for the run ("at most max_concurrency in all"), not per field.
    Rows streamed earlier in the run (`embed_streamed`, sharing `merger`) are found in the
    table and counted as embedded, not reused.
    """
    # Plain lists, hashed in a thread: per-row pandas access and hashing of every text would hold
    # the loop serving requests (the heartbeat test in tests/test_provider_faults.py).
    all_ids, all_texts, shas = await asyncio.to_thread(_columns, inputs)
    state = await asyncio.to_thread(table.state)
    wanted = set(zip(all_ids, shas))
    have = {(i, s) for i, s, m in state.keys if m == backend.model}
    todo = [k for k, (i, s) in enumerate(zip(all_ids, shas)) if (i, s) not in have]
    merger = merger if merger is not None else BatchMerger(table, backend.model)
    # Current rows this run merged already (streamed before the frame): embedded, not reused.
    this_run = sum(1 for i, s in zip(all_ids, shas) if (i, s) in have and i in merger.merged_ids)
    result = EmbedResult(field=field_name, total=len(inputs), reused=len(inputs) - len(todo) - this_run,
                         embedded=this_run)
    progress = StageProgress(f"embed-{field_name}", len(inputs))
    progress.advance(result.reused + this_run)
    await _embed_rows(f"{field_name} batch", [all_ids[k] for k in todo], [all_texts[k] for k in todo],
                      [shas[k] for k in todo], backend, slots, merger, result, progress)
    if not merger.prepared and backend.dimension and not await asyncio.to_thread(table.exists):
        await asyncio.to_thread(table.prepare, backend.dimension)  # an empty source still gets its table
    stale = sorted({i for i, _s, _m in state.keys} - {i for i, _s in wanted})
    result.deleted = await asyncio.to_thread(table.delete_ids, stale)
    if not result.failures:
        await _verify_and_repair(field_name, table, all_ids, all_texts, shas, backend, slots, result)
    await asyncio.to_thread(table.optimize)
    if not result.failures:
        progress.finish()  # a failed field's bar stops at what was embedded
    return result


def _table_gaps(table: VectorTable, ids: list[str], shas: list[str], model: str) -> tuple[list[int], int]:
    """The table read anew: positions of the rows without a current vector, and duplicate ids.
    Vectors of rows no longer in the source are deleted on the way."""
    state = table.state()
    current = {(i, s) for i, s, m in state.keys if m == model}
    table.delete_ids(sorted({i for i, _s, _m in state.keys} - set(ids)))
    return [k for k, key in enumerate(zip(ids, shas)) if key not in current], state.duplicate_ids


async def _verify_and_repair(
    field_name: str,
    table: VectorTable,
    ids: list[str],
    texts: list[str],
    shas: list[str],
    backend: EmbeddingBackend,
    slots: asyncio.Semaphore | None,
    result: EmbedResult,
) -> None:
    """Count and verify after the pass: every source row has exactly one current vector.

    The pass embeds what the table lacked when it was read at the start; a table reset under
    it (a dimension change drops and recreates it, another writer, a restored copy) would leave
    the rows counted as reused without a vector while the stage completed. Missing rows are
    embedded again, up to REPAIR_PASSES times; rows still missing then fail the stage, named.
    """
    for attempt in range(REPAIR_PASSES + 1):
        missing, duplicates = await asyncio.to_thread(_table_gaps, table, ids, shas, backend.model)
        if duplicates:
            result.failures.append(ItemFailedError(f"{field_name} vector table", f"{duplicates} duplicate id(s)"))
            return
        if not missing:
            return
        if attempt == REPAIR_PASSES:
            break
        failed_before = len(result.failures)
        await _embed_rows(f"{field_name} repair batch", [ids[k] for k in missing], [texts[k] for k in missing],
                          [shas[k] for k in missing], backend, slots, BatchMerger(table, backend.model), result, None)
        result.repaired += len(missing)
        result.reused = max(0, result.total - result.embedded)
        if len(result.failures) > failed_before:
            return  # the repair's failed batches are named already
    sample = [ids[k] for k in missing[:3]]
    result.failures.append(ItemFailedError(
        f"{field_name} vector table",
        f"{len(missing)} row(s) without a current vector after {REPAIR_PASSES} repair pass(es) (e.g. {sample})",
    ))


async def embed_streamed(
    field_name: str,
    chunks: AsyncIterator[list[tuple[str, str]]],
    backend: EmbeddingBackend,
    slots: asyncio.Semaphore,
    merger: "BatchMerger",
) -> None:
    """Embed (id, text) rows as they are streamed, before their frame is complete.

    The table's state is read once, not per chunk: a LanceDB read holds a worker thread for tens
    of ms, contending for the GIL with the loop serving requests, and a field streams dozens of
    chunks. A row already current in the table (a resumed run)
    is skipped. Failures are left to the full pass (`embed_field`), which retries them and
    names them if they fail again; it also deletes what is stale and compacts the table.
    """
    state = await asyncio.to_thread(merger.table.state)
    have = {(i, s) for i, s, m in state.keys if m == backend.model}
    result = EmbedResult(field=field_name, total=0)
    async with task_group_fatal_first() as group:
        async for number, chunk in _numbered(chunks):
            shas = [sha256_text(text) for _, text in chunk]  # a batch of texts: microseconds
            rows = [(i, t, s) for (i, t), s in zip(chunk, shas) if (i, s) not in have]
            if rows:
                ids, texts, row_shas = (list(column) for column in zip(*rows))
                group.create_task(_embed_rows(f"{field_name} streamed chunk {number} batch", ids, texts, row_shas,
                                              backend, slots, merger, result, None))


async def _numbered(chunks: AsyncIterator[T]) -> AsyncIterator[tuple[int, T]]:
    number = 0
    async for chunk in chunks:
        yield number, chunk
        number += 1


async def _embed_rows(
    label: str,
    ids: list[str],
    texts: list[str],
    shas: list[str],
    backend: EmbeddingBackend,
    slots: asyncio.Semaphore | None,
    merger: BatchMerger,
    result: EmbedResult,
    progress: StageProgress | None,
) -> None:
    """Embed these rows in the backend's batches, each merged into the table as it comes;
    a failed batch is named `{label} {number} (ids …)`."""
    # Planning tokenizes every text: tens to hundreds of ms, off the loop serving requests.
    batches = await asyncio.to_thread(backend.plan, texts) if texts else []
    slots = slots if slots is not None else asyncio.Semaphore(max(1, backend.concurrency))

    async def run_batch(number: int, positions: list[int]) -> None:
        try:
            batch_ids = [ids[p] for p in positions]
            item = f"{label} {number} (ids {batch_ids[0][:12]}…, {len(batch_ids)} rows)"
            try:
                vectors = await backend.embed_batch([texts[p] for p in positions], item)
            except ItemFailedError as exc:
                result.failures.append(exc)
                return
            vectors = np.asarray(vectors, dtype=np.float32)
            if vectors.shape[0] != len(batch_ids) or not np.isfinite(vectors).all():
                result.failures.append(
                    ItemFailedError(item, f"got {vectors.shape[0]} vectors for {len(batch_ids)} texts")
                )
                return
            result.batches += 1
            await merger.add(batch_ids, vectors, [shas[p] for p in positions])
            result.embedded += len(batch_ids)
            if progress is not None:
                progress.advance(len(batch_ids))
        finally:
            slots.release()

    async with task_group_fatal_first() as group:
        for number, positions in enumerate(batches):
            await slots.acquire()
            group.create_task(run_batch(number, positions))
