"""Small asyncio helpers shared by the stages."""

from __future__ import annotations

import asyncio
import gc
from contextlib import asynccontextmanager, contextmanager
from typing import AsyncIterator, Awaitable, Callable, Iterable, Iterator, TypeVar

from graphrag_flow.errors import FatalLLMError

T = TypeVar("T")
#: Tasks started per loop iteration: a task's first step (a cache key, a prompt) is short, so 16
#: hold the loop for a few ms at most (docs/performance.md, "The event loop").
YIELD_EVERY = 16


async def gather_fatal_first(coros: Iterable[Awaitable[T]]) -> list[T]:
    """Run coroutines in a TaskGroup; a FatalLLMError (bad key, unknown model) wins and
    cancels the rest, so "stop the whole run at once" holds; any other error is re-raised
    as itself, not wrapped in an ExceptionGroup.

    Yields to the loop after starting every `YIELD_EVERY` tasks: started all at once, every
    task's first step would run in one loop iteration, and items that finish without awaiting
    (a description that needs no LLM call) would hold the loop, stalling every request in
    flight (the heartbeat test in tests/test_provider_faults.py). Yielding after each task
    instead costs a loop iteration per item, which spreads the start of a stage's requests."""
    tasks: list[asyncio.Task[T]] = []
    async with task_group_fatal_first() as group:
        for n, coro in enumerate(coros, 1):
            tasks.append(group.create_task(coro))  # type: ignore[arg-type]
            if n % YIELD_EVERY == 0:
                await asyncio.sleep(0)
    return [t.result() for t in tasks]


@asynccontextmanager
async def task_group_fatal_first() -> AsyncIterator[asyncio.TaskGroup]:
    """An asyncio.TaskGroup whose failure is raised as one exception, not an ExceptionGroup:
    a FatalLLMError if any task raised one, else the first error."""
    try:
        async with asyncio.TaskGroup() as group:
            yield group
    except BaseExceptionGroup as eg:
        fatal = eg.subgroup(FatalLLMError)
        raise (fatal.exceptions[0] if fatal else eg.exceptions[0]) from None


async def for_each_bounded(items: Iterable[T], fn: Callable[[T], Awaitable[None]], workers: int) -> None:
    """`await fn(item)` for every item, at most `workers` at once, in the items' order.

    `workers` coroutines share one iterator, rather than one task per item behind a semaphore:
    the summarize stage has dozens of items per request, and creating, scheduling and parking a
    task for each costs more loop time than the requests themselves while the first answers
    come back. Each worker yields after every item, so
    items that finish without awaiting never hold the loop for long. Errors as in
    `gather_fatal_first`.
    """
    iterator = iter(items)

    async def worker() -> None:
        for item in iterator:
            await fn(item)
            await asyncio.sleep(0)

    await gather_fatal_first(worker() for _ in range(max(1, workers)))


@contextmanager
def frozen_heap() -> Iterator[None]:
    """Keep the objects that exist now (imported modules, Prefect, pandas) out of the cyclic
    garbage collector while the block runs.

    A full collection walks every tracked object: with Prefect and pandas loaded that is a pause
    of a few tenths of a second (docs/performance.md), run on the event loop in the middle of
    whatever allocated, while every request in flight waits. Frozen objects are skipped; what the run allocates is still
    collected. Unfrozen at the end, so a process that runs many flows (a worker, the tests)
    still reclaims cycles among them later.
    """
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
