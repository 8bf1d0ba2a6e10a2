"""Hedging: a slow request is sent a second time beside the first, and the first answer wins.

At a stage's end the whole run waits for its last few requests; one that hangs holds it for
the adaptive deadline (about a second at 200 ms latency, up to `llm.request_timeout_s`) and
then a retry. So a request still unanswered 2 x p95 of its kind (at least 0.25 s) after it
went on the wire is sent again, but only into a request slot no other request waits for
(`RequestLimiter.has_idle_slot`): a hedge never delays real work. It costs a duplicate
request (tokens) for the slowest few, which is why `llm.hedge_slow_requests` can turn it off.
A hedge counts as a request and as a retry with the reason `hedge`.

The transport calls `hedged` only when a hedge can apply (hedging on, a p95 known): a request
that cannot be hedged runs as one plain attempt, without the tasks this needs.
"""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable, TypeVar

from graphrag_flow.llm.limiter import RequestLimiter
from graphrag_flow.llm.outcomes import Retryable
from graphrag_flow.llm.stats import LLMStats

T = TypeVar("T")

#: A request still unanswered this many times the p95 latency of its kind is hedged ...
HEDGE_P95_FACTOR = 2.0
#: ... but never sooner than this after it went on the wire.
HEDGE_FLOOR_S = 0.25


def hedge_delay(p95_s: float | None) -> float | None:
    """Seconds on the wire after which a request is hedged; None before a p95 is known."""
    return None if p95_s is None else max(HEDGE_P95_FACTOR * p95_s, HEDGE_FLOOR_S)


async def hedged(attempt: Callable[..., Awaitable[T]], args: tuple[Any, ...], after: float,
                 limiter: RequestLimiter, stats: LLMStats, stage: str) -> T:
    """`attempt(*args, on_wire=event)`, joined by a second `attempt(*args)` when the first is
    still running `after` seconds on the wire and the limiter has an idle slot.

    Raises what the attempts raise: a fatal error or a bad request at once, a retryable
    failure only when both failed. The loser is cancelled (its slot freed) before returning.
    """
    on_wire = asyncio.Event()
    first = asyncio.ensure_future(attempt(*args, on_wire=on_wire))
    attempts = [first]
    try:
        if not await _on_wire_then_wait(first, on_wire, after) or not limiter.has_idle_slot():
            return await first
        stats.request(stage)
        stats.retry(stage, "hedge")
        attempts.append(asyncio.ensure_future(attempt(*args)))
        return await _first_success(attempts)
    finally:
        for task in attempts:
            task.cancel()
        await asyncio.gather(*attempts, return_exceptions=True)


async def _on_wire_then_wait(attempt: asyncio.Future, on_wire: asyncio.Event, seconds: float) -> bool:
    """Wait until `attempt` is on the wire, then up to `seconds` more; True if it is still running."""
    waiter = asyncio.ensure_future(on_wire.wait())
    try:
        await asyncio.wait({attempt, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
    if attempt.done():
        return False
    await asyncio.wait({attempt}, timeout=seconds)
    return not attempt.done()


async def _first_success(attempts: list[asyncio.Future[T]]) -> T:
    """The first attempt to succeed; a fatal error or a bad request at once; else the last failure."""
    pending = set(attempts)
    failure: Retryable | None = None
    while pending:
        done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            exc = task.exception()
            if exc is None:
                return task.result()
            if not isinstance(exc, Retryable):
                raise exc
            failure = exc
    assert failure is not None
    raise failure
