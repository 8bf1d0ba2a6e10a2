"""The event-loop CPU of the retry loop itself: graphrag_flow's rules against tenacity's; prints JSON.

The question (issue #20): can tenacity's `AsyncRetrying` replace the transport's own retry
loop (graphrag_flow/llm/transport.py `Transport.send` with graphrag_flow/llm/retry.py)? Both
loops here do the same work per request: count each attempt, run it, on a `Retryable`
failure count the retry, bump the deadline hits the next attempt reads, wait the rules'
delay (per-kind backoff, quick first retry, Retry-After), and give up after the budget,
naming the attempts made. The attempt is a coroutine that does no I/O, so what is measured is
the loop's own cost per request, which every request of a run pays on the event loop.

Scenarios: `clean` (every attempt succeeds: the path nearly every request takes) and
`retried` (the first attempt of each request fails with a disconnect, the second succeeds;
the rules' wait is replaced by 0 s so only CPU is measured). Requests run 64 at a time, like
a stage; each figure is the loop thread's CPU (`time.thread_time`) per request, the median of
`--rounds` rounds.

tenacity is not a dependency of graphrag-flow (this script is why): install it to run this,
e.g. `uv pip install --python .venv/bin/python tenacity`.

    .venv/bin/python benchmarks/retry_loop_overhead.py [--requests 20000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from graphrag_flow.errors import ItemFailedError  # noqa: E402  (the repo root must be on sys.path first)
from graphrag_flow.llm.outcomes import Retryable  # noqa: E402
from graphrag_flow.llm.retry import Backoff, Budget, RequestRetries  # noqa: E402
from graphrag_flow.llm.stats import LLMStats  # noqa: E402

BUDGET = Budget(retries=6, timeout_s=60.0, timeout_source="llm.request_timeout_s = 60 s")


class NoWait(Backoff):
    """The rules' decisions, with every wait 0 s: the benchmark measures CPU, not sleeps."""

    def delay(self, failure: Retryable, n_of_kind: int) -> float:
        super().delay(failure, n_of_kind)
        return 0.0


def make_attempt(fail_first: bool, fail_always: bool = False):
    async def attempt(n: int, deadline_hits: int) -> int:
        if fail_always:
            raise Retryable("deadline", f"no answer (deadline hits so far: {deadline_hits})")
        if fail_first and n == 0:
            raise Retryable("disconnect", "connection failed (ServerDisconnectedError: Server disconnected)")
        return n

    return attempt


async def same_decisions() -> None:
    """Both loops give up alike: the same attempts, retries, deadline hits and message."""
    outcomes = []
    for loop_fn in (ours, with_tenacity):
        stats = LLMStats()
        try:
            await loop_fn(make_attempt(False, fail_always=True), stats, NoWait())
        except ItemFailedError as exc:
            row = stats.get("bench")
            outcomes.append((exc.reason, row.requests, row.retries, dict(row.retry_reasons)))
    assert len(outcomes) == 2 and outcomes[0] == outcomes[1], outcomes


async def ours(attempt, stats: LLMStats, backoff: Backoff) -> int:
    """The shape of Transport.send."""
    retries = RequestRetries(BUDGET, backoff)
    n = 0
    while True:
        stats.request("bench")
        try:
            return await attempt(n, retries.deadline_hits)
        except Retryable as exc:
            failure = exc
        n += 1
        delay = retries.after(failure)
        if delay is None:
            raise ItemFailedError("item", f"{failure.reason} (gave up after {retries.retries + 1} attempt(s))")
        stats.retry("bench", failure.kind)
        await asyncio.sleep(delay)


async def with_tenacity(attempt, stats: LLMStats, backoff: Backoff) -> int:
    """The same rules as tenacity callbacks. An AsyncRetrying per request: its state
    (statistics, iter_state) is per thread, not per coroutine, so one object cannot serve the
    requests in flight at once; the per-kind counts and deadline hits live in this closure."""
    from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt

    by_kind: dict[str, int] = {}
    deadline_hits = 0

    def after(rs: RetryCallState) -> None:  # a failed attempt the retry condition accepted
        nonlocal deadline_hits
        if rs.outcome.exception().kind == "deadline":
            deadline_hits += 1

    def wait(rs: RetryCallState) -> float:
        failure = rs.outcome.exception()
        n = by_kind[failure.kind] = by_kind.get(failure.kind, 0) + 1
        return backoff.delay(failure, n)

    def before(rs: RetryCallState) -> None:
        stats.request("bench")

    def before_sleep(rs: RetryCallState) -> None:
        stats.retry("bench", rs.outcome.exception().kind)

    retrying = AsyncRetrying(stop=stop_after_attempt(BUDGET.retries + 1), wait=wait,
                             retry=retry_if_exception_type(Retryable), before=before, after=after,
                             before_sleep=before_sleep, reraise=True)
    try:
        async for try_ in retrying:
            with try_:
                return await attempt(try_.retry_state.attempt_number - 1, deadline_hits)
    except Retryable as failure:
        made = retrying.statistics["attempt_number"]
        raise ItemFailedError("item", f"{failure.reason} (gave up after {made} attempt(s))") from None
    raise AssertionError("unreachable: tenacity returns or raises")


async def one_round(loop_fn, fail_first: bool, requests: int) -> float:
    stats = LLMStats()
    attempt = make_attempt(fail_first)
    backoff = NoWait()
    gate = asyncio.Semaphore(64)

    async def request() -> int:
        async with gate:
            return await loop_fn(attempt, stats, backoff)

    cpu = time.thread_time()
    await asyncio.gather(*(request() for _ in range(requests)))
    cpu = time.thread_time() - cpu
    row = stats.get("bench")
    assert row.requests == requests * (2 if fail_first else 1) and row.retries == (requests if fail_first else 0)
    return 1e6 * cpu / requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    from importlib.metadata import version

    asyncio.run(same_decisions())
    results = []
    for scenario, fail_first in (("clean", False), ("retried", True)):
        per: dict[str, list[float]] = {"ours": [], "tenacity": []}
        asyncio.run(one_round(ours, fail_first, 1000))  # warm-up
        asyncio.run(one_round(with_tenacity, fail_first, 1000))
        for _ in range(args.rounds):  # alternating, so load changes hit both alike
            per["ours"].append(asyncio.run(one_round(ours, fail_first, args.requests)))
            per["tenacity"].append(asyncio.run(one_round(with_tenacity, fail_first, args.requests)))
        results.append({"scenario": scenario,
                        **{f"{k}_cpu_us_per_request": round(statistics.median(v), 2) for k, v in per.items()},
                        "rounds": {k: [round(x, 2) for x in v] for k, v in per.items()}})
    print(json.dumps({"requests": args.requests, "concurrency": 64, "tenacity": version("tenacity"),
                      "python": sys.version.split()[0], "results": results}, indent=1))


if __name__ == "__main__":
    main()
