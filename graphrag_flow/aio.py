"""Small asyncio helpers shared by the stages."""

from __future__ import annotations

import asyncio
from typing import Awaitable, Iterable, TypeVar

from graphrag_flow.errors import FatalLLMError

T = TypeVar("T")


async def gather_fatal_first(coros: Iterable[Awaitable[T]]) -> list[T]:
    """Run coroutines in a TaskGroup; a FatalLLMError (bad key, unknown model) wins and
    cancels the rest, so "stop the whole run at once" holds; any other error is re-raised
    as itself, not wrapped in an ExceptionGroup.

    Yields to the loop after starting each task: started all at once, every task's first
    step ran in one loop iteration, and items that finish without awaiting (a description
    that needs no LLM call) held the loop for 1.4 s on peps-mini's 1,205 summaries, stalling
    every request in flight (the heartbeat test in tests/test_provider_faults.py)."""
    tasks: list[asyncio.Task[T]] = []
    try:
        async with asyncio.TaskGroup() as group:
            for coro in coros:
                tasks.append(group.create_task(coro))  # type: ignore[arg-type]
                await asyncio.sleep(0)
    except BaseExceptionGroup as eg:
        fatal = eg.subgroup(FatalLLMError)
        raise (fatal.exceptions[0] if fatal else eg.exceptions[0]) from None
    return [t.result() for t in tasks]
