"""The run-wide pieces under the client: the request limiter's priorities and the answer
cache's batches. Both are what keeps 64 requests in flight from stalling at a stage's start
and end (benchmarks/llm_throughput.py); these tests pin down what they promise."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from graphrag_flow.llm.answer_cache import AnswerCache
from graphrag_flow.llm.cache_batches import BatchedAnswerCache
from graphrag_flow.llm.limiter import RequestLimiter


# --------------------------------------------------------------------------- limiter priorities


def test_a_freed_slot_goes_to_the_highest_priority_then_the_longest_waiting():
    async def main() -> list[str]:
        limiter = RequestLimiter(1)
        order: list[str] = []
        release = asyncio.Event()

        async def hold() -> None:
            async with limiter.slot(0):
                await release.wait()

        async def request(name: str, priority: int) -> None:
            async with limiter.slot(priority):
                order.append(name)
                await asyncio.sleep(0)

        holder = asyncio.create_task(hold())
        await asyncio.sleep(0)
        waiters = []
        for name, priority in [("embed-1", 3), ("report-1", 2), ("summary-1", 1), ("embed-2", 3), ("summary-2", 1)]:
            waiters.append(asyncio.create_task(request(name, priority)))
            await asyncio.sleep(0)  # each is waiting before the next arrives
        release.set()
        await asyncio.gather(holder, *waiters)
        assert limiter.in_flight == 0
        return order

    assert asyncio.run(main()) == ["summary-1", "summary-2", "report-1", "embed-1", "embed-2"]


def test_a_newcomer_does_not_overtake_the_waiters_and_cancelled_waiters_leak_no_slot():
    async def main() -> None:
        limiter = RequestLimiter(2)
        gate = asyncio.Event()
        order: list[str] = []

        async def request(name: str, priority: int, hold: bool = False) -> None:
            async with limiter.slot(priority):
                order.append(name)
                if hold:
                    await gate.wait()

        holders = [asyncio.create_task(request(f"hold-{i}", 0, hold=True)) for i in range(2)]
        await asyncio.sleep(0)
        waiting = asyncio.create_task(request("waiting", 5))
        cancelled = [asyncio.create_task(request(f"cancelled-{i}", 0)) for i in range(3)]
        await asyncio.sleep(0)
        for task in cancelled:
            task.cancel()
        await asyncio.gather(*cancelled, return_exceptions=True)
        gate.set()
        await asyncio.gather(*holders, waiting)
        assert order == ["hold-0", "hold-1", "waiting"]
        assert limiter.in_flight == 0
        # every slot came back: two at once do not wait
        async with asyncio.timeout(1):
            async with limiter.slot(9), limiter.slot(9):
                assert limiter.in_flight == 2

    asyncio.run(main())


def test_the_limit_holds_under_many_priorities():
    async def main() -> int:
        limiter = RequestLimiter(5)

        async def request(i: int) -> None:
            async with limiter.slot(i % 4):
                await asyncio.sleep(0.001 * (i % 3))

        await asyncio.gather(*(request(i) for i in range(200)))
        assert limiter.in_flight == 0
        return limiter.max_in_flight

    assert asyncio.run(main()) == 5


# --------------------------------------------------------------------------- batched answer cache


class CountingCache(AnswerCache):
    """A real SQLite answer cache that counts its transactions and lookups."""

    def __init__(self, path: Path, fail_puts: bool = False):
        super().__init__(path)
        self.transactions = 0
        self.lookups = 0
        self.fail_puts = fail_puts

    def put_many(self, items):
        self.transactions += 1
        if self.fail_puts:
            raise sqlite3.OperationalError("database or disk is full")
        super().put_many(items)

    def get_many(self, keys):
        self.lookups += 1
        return super().get_many(keys)


def test_stores_are_committed_before_they_return_and_share_transactions(tmp_path):
    path = tmp_path / "answers.sqlite"
    cache = CountingCache(path)

    async def main() -> None:
        async with BatchedAnswerCache(cache) as batched:

            async def store_then_check(i: int) -> None:
                await batched.put(f"k{i}", f"v{i}")
                # committed: another connection (as after a kill -9) sees it now
                other = sqlite3.connect(path)
                try:
                    assert other.execute("SELECT value FROM answers WHERE key=?", (f"k{i}",)).fetchone() == (f"v{i}",)
                finally:
                    other.close()

            await asyncio.gather(*(store_then_check(i) for i in range(64)))

    asyncio.run(main())
    assert len(cache) == 64
    assert cache.transactions <= 4, cache.transactions  # 64 stores made together: a few commits, not 64
    cache.close()


def test_lookups_made_together_are_one_query_and_find_what_is_stored(tmp_path):
    cache = CountingCache(tmp_path / "answers.sqlite")
    cache.put_many([(f"k{i}", f"v{i}") for i in range(0, 600, 2)])

    async def main() -> list[str | None]:
        async with BatchedAnswerCache(cache) as batched:
            return await asyncio.gather(*(batched.get(f"k{i}") for i in range(600)))

    found = asyncio.run(main())
    assert found == [f"v{i}" if i % 2 == 0 else None for i in range(600)]
    assert cache.lookups <= 2, cache.lookups
    cache.close()


def test_a_store_that_fails_raises_to_its_callers_and_lookups_go_on(tmp_path):
    cache = CountingCache(tmp_path / "answers.sqlite", fail_puts=True)
    cache.fail_puts = False
    cache.put_many([("old", "answer")])
    cache.fail_puts = True

    async def main() -> tuple[list, str | None]:
        async with BatchedAnswerCache(cache) as batched:
            stores = await asyncio.gather(*(batched.put(f"k{i}", "v") for i in range(5)), return_exceptions=True)
            return stores, await batched.get("old")

    stores, old = asyncio.run(main())
    assert all(isinstance(e, sqlite3.OperationalError) and "disk is full" in str(e) for e in stores), stores
    assert old == "answer"
    cache.close()


def test_a_cancelled_caller_still_gets_its_answer_stored(tmp_path):
    cache = CountingCache(tmp_path / "answers.sqlite")

    async def main() -> None:
        async with BatchedAnswerCache(cache) as batched:
            task = asyncio.create_task(batched.put("k", "v"))
            await asyncio.sleep(0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        assert cache.get("k") == "v"  # leaving the block waited for the batch that held it

    asyncio.run(main())
    cache.close()


def test_using_it_before_opening_is_an_error(tmp_path):
    cache = AnswerCache(tmp_path / "answers.sqlite")

    async def main() -> None:
        await BatchedAnswerCache(cache).get("k")

    with pytest.raises(RuntimeError, match="async with"):
        asyncio.run(main())
    cache.close()
