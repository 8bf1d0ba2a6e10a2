"""Values a stage hands to the stages already running beside it, in memory, within one run.

Stages that depend on one another still run as separate Prefect tasks with their own cache
keys, but a stage need not wait for its upstream task to save, return, and be loaded back:
it starts with the run, waits here for the value, and goes on the moment it is put. At 64
requests in flight the save -> task change-over -> load -> merge chain between extraction
and summaries left the limit idle for 0.45 s (benchmarks/llm_throughput.py); the same chain
ran twice, once for summaries and once for communities.

When the upstream stage did not run in this process (Prefect served it from its cache), the
flow registers a loader instead, and the first stage that asks runs it in a worker thread.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable


class Handoff:
    """name -> value, put once per run; `get` waits until it is there.

    Lives on one event loop (the flow's). A waiter cancelled because its stage failed
    leaves the others waiting: each waits on the name's Event, not on a shared Future.
    """

    def __init__(self) -> None:
        self._values: dict[str, Any] = {}
        self._loaders: dict[str, Callable[[], Any]] = {}
        self._ready: dict[str, asyncio.Event] = {}
        self._loading: dict[str, asyncio.Lock] = {}

    def _event(self, name: str) -> asyncio.Event:
        return self._ready.setdefault(name, asyncio.Event())

    def put(self, name: str, value: Any) -> None:
        self._values[name] = value
        self._event(name).set()

    def put_loader(self, name: str, load: Callable[[], Any]) -> None:
        """Make `name` available from `load` (blocking: run in a thread on first use),
        unless the stage that computes it already put it."""
        if name in self._values:
            return
        self._loaders[name] = load
        self._event(name).set()

    def has(self, name: str) -> bool:
        return name in self._values or name in self._loaders

    async def get(self, name: str) -> Any:
        await self._event(name).wait()
        if name not in self._values:
            async with self._loading.setdefault(name, asyncio.Lock()):
                if name not in self._values:
                    self._values[name] = await asyncio.to_thread(self._loaders[name])
        return self._values[name]
