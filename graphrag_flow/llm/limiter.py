"""One concurrency limit for every request of a run (chat and embeddings together).

`extra` plugs in a second, cross-run limit (the Prefect layer passes a global concurrency
limit there), so two runs share one provider quota; this module stays free of Prefect.
"""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack, asynccontextmanager
from typing import AsyncContextManager, AsyncIterator, Callable


class RequestLimiter:
    """Belongs to the event loop that first uses it (an asyncio.Semaphore)."""

    def __init__(self, max_concurrency: int, extra: Callable[[], AsyncContextManager] | None = None):
        self.max_concurrency = max_concurrency
        self._semaphore = asyncio.Semaphore(max_concurrency)
        self._extra = extra
        self.in_flight = 0
        self.max_in_flight = 0

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Held only while a request is on the wire; released on error and cancellation."""
        async with AsyncExitStack() as stack:
            await stack.enter_async_context(self._semaphore)
            if self._extra is not None:
                await stack.enter_async_context(self._extra())
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                yield
            finally:
                self.in_flight -= 1
