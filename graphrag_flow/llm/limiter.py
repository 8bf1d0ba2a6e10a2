"""One concurrency limit for every request of a run (chat and embeddings together).

A freed slot goes to the waiting request of the highest priority (lowest number), then to
the longest waiting. The flow gives the requests on its critical path priority over the
others: an entity embedding that takes a slot beside the summaries and reports delays the
reports, which every later request waits for, while an embedding that waits for a free slot
delays nothing (benchmarks/llm_throughput.py measures the difference).

`extra` plugs in a second, cross-run limit (the Prefect layer passes a global concurrency
limit there), so two runs share one provider quota; this module stays free of Prefect.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from contextlib import AsyncExitStack, asynccontextmanager
from typing import AsyncContextManager, AsyncIterator, Callable

#: The priority of a request that names none.
DEFAULT_PRIORITY = 0


class RequestLimiter:
    """Belongs to the event loop that first uses it (its waiters are that loop's futures)."""

    def __init__(self, max_concurrency: int, extra: Callable[[], AsyncContextManager] | None = None):
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        self.max_concurrency = max_concurrency
        self._free = max_concurrency
        #: (priority, arrival, future): a heap; a cancelled waiter's future stays until popped.
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._arrivals = itertools.count()
        self._extra = extra
        self.in_flight = 0
        self.max_in_flight = 0

    @asynccontextmanager
    async def slot(self, priority: int = DEFAULT_PRIORITY) -> AsyncIterator[None]:
        """Held only while a request is on the wire; released on error and cancellation."""
        await self._acquire(priority)
        try:
            async with AsyncExitStack() as stack:
                if self._extra is not None:
                    await stack.enter_async_context(self._extra())
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
                try:
                    yield
                finally:
                    self.in_flight -= 1
        finally:
            self._release()

    def has_idle_slot(self) -> bool:
        """A slot is free and nobody waits for one: taking it delays no other request."""
        return self._free > 0 and not self._has_waiters()

    async def _acquire(self, priority: int) -> None:
        if self.has_idle_slot():
            self._free -= 1
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (priority, next(self._arrivals), future))
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self._release()  # granted a slot in the same instant it was cancelled: pass it on
            raise

    def _has_waiters(self) -> bool:
        while self._waiters and self._waiters[0][2].done():
            heapq.heappop(self._waiters)  # cancelled while waiting
        return bool(self._waiters)

    def _release(self) -> None:
        """Hand the slot straight to the first waiter (so no newcomer can take it in between)."""
        while self._waiters:
            _, _, future = heapq.heappop(self._waiters)
            if not future.done():
                future.set_result(None)
                return
        self._free += 1
