"""Rows of a vector field posted the moment they are final, so their embeddings start early.

The reports stage posts each community report's (id, text) as its answer arrives; the
report embeddings take them in chunks while the other reports are still being written,
instead of starting when the last report is in (that left one or two rounds of requests,
0.3-0.4 s at 64 in flight, after the last report: benchmarks/llm_throughput.py). The embed
stage still runs its full pass over the finished frame afterwards: it finds these rows in
the vector table, embeds whatever is missing and deletes what is stale, so what a stream
delivers only ever saves time, never decides the table.
"""

from __future__ import annotations

import asyncio
from typing import AsyncIterator


class RowStream:
    """(id, text) rows in the order posted; `close()` once no more will come.

    Lives on one event loop (the flow's). A producer that never runs (Prefect served its
    stage from cache) never posts: the consumer closes the stream itself when the frame
    arrives by the other way.
    """

    def __init__(self) -> None:
        self._rows: list[tuple[str, str]] = []
        self._seen: set[str] = set()
        self._changed = asyncio.Event()
        self.closed = False

    def post(self, row_id: str, text: str) -> None:
        if self.closed or row_id in self._seen:
            return  # late rows are the frame's to embed; an id twice would be one batch's duplicate
        self._seen.add(row_id)
        self._rows.append((row_id, text))
        self._changed.set()

    def close(self) -> None:
        self.closed = True
        self._changed.set()

    async def chunks(self, batch_size: int) -> AsyncIterator[list[tuple[str, str]]]:
        """Every row once: whole batches' worth as soon as they are waiting (so streamed rows
        cost no more requests than the frame would), and the rest at close."""
        taken = 0
        while True:
            while not self.closed and len(self._rows) - taken < batch_size:
                self._changed.clear()
                await self._changed.wait()
            if self.closed:
                end = len(self._rows)
            else:
                end = taken + (len(self._rows) - taken) // batch_size * batch_size
            if end == taken:
                return
            chunk, taken = self._rows[taken:end], end
            yield chunk
