"""The answer cache as one event loop uses it: lookups and stores served in batches.

Every chat call looks its answer up before asking and stores it before returning it. One
trip to a worker thread per call costs far more than the SQLite work itself, because the
thread has to win the GIL back from the busy event loop after every fsync, and stores served
one at a time queue behind each other while the answers they hold are awaited
(docs/llm-client.md has the figures). Here the calls waiting at a moment go to the thread
together: one SELECT for their lookups, one transaction (one fsync) for their stores. A
store still commits before its caller gets the answer, so a kill loses none.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from concurrent.futures import ThreadPoolExecutor

from graphrag_flow.llm.answer_cache import AnswerCache, Row

log = logging.getLogger(__name__)


class BatchedAnswerCache:
    """`await get(key)` and `await put(key, value)` on one event loop, one thread behind them.

    Use as `async with BatchedAnswerCache(cache):` in the coroutine that makes the calls; it
    closes after the last batch is done. At most one batch runs at a time: calls made while
    it runs form the next one, so the batches grow with the load.
    """

    def __init__(self, cache: AnswerCache, thread_name: str = "answer-cache"):
        self._cache = cache
        self._thread_name = thread_name
        self._executor: ThreadPoolExecutor | None = None
        self._gets: list[tuple[str, asyncio.Future[str | None]]] = []
        self._puts: list[tuple[Row, asyncio.Future[None]]] = []
        self._drain: asyncio.Task[None] | None = None

    async def __aenter__(self) -> "BatchedAnswerCache":
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self._thread_name)
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            if self._drain is not None:
                await asyncio.shield(self._drain)  # stores of cancelled callers still land
        finally:
            executor, self._executor = self._executor, None
            if executor is not None:
                executor.shutdown(wait=False)

    async def get(self, key: str) -> str | None:
        """The stored answer, or None (also when the lookup itself failed: the answer is asked again)."""
        future: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self._gets.append((key, future))
        self._start()
        return await future

    async def put(self, key: str, value: str, usage: tuple[int, int] | None = None) -> None:
        """Returns once committed; raises sqlite3.Error when it could not be (e.g. a full disk).
        `usage`: the answer's billed (prompt, completion) tokens, stored beside it."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        prompt, completion = usage if usage is not None else (None, None)
        self._puts.append(((key, value, prompt, completion), future))
        self._start()
        await future

    def _start(self) -> None:
        if self._executor is None:
            raise RuntimeError("open the answer cache with `async with` before using it")
        if self._drain is None:
            self._drain = asyncio.get_running_loop().create_task(self._serve())

    async def _serve(self) -> None:
        """Batches until nothing waits. Started as a task, so the calls made in the same loop
        iteration as the first one join its batch."""
        loop = asyncio.get_running_loop()
        try:
            while self._gets or self._puts:
                gets, self._gets = self._gets, []
                puts, self._puts = self._puts, []
                assert self._executor is not None
                try:
                    found, error = await loop.run_in_executor(
                        self._executor, self._apply, [k for k, _ in gets], [row for row, _ in puts]
                    )
                except BaseException as exc:  # never leave a caller waiting forever
                    for future in [f for _, f in gets] + [f for _, f in puts]:
                        if not future.done():
                            future.set_exception(exc if isinstance(exc, Exception) else RuntimeError(str(exc)))
                    raise
                for key, future in gets:
                    if not future.done():
                        future.set_result(found.get(key))
                for _row, future in puts:
                    if not future.done():
                        future.set_exception(error) if error is not None else future.set_result(None)
        finally:
            self._drain = None

    def _apply(self, keys: list[str], rows: list[Row]) -> tuple[dict[str, str], sqlite3.Error | None]:
        """In the thread: stores first (so a lookup in the same batch sees them), then lookups."""
        error: sqlite3.Error | None = None
        try:
            self._cache.put_many(rows)
        except sqlite3.Error as exc:
            error = exc
        found: dict[str, str] = {}
        if keys:
            try:
                found = self._cache.get_many(keys)
            except sqlite3.Error as exc:
                log.warning("answer cache lookup failed (%s): asking the server instead", exc)
        return found, error
