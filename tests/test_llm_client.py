"""The OpenAI-compatible client against the real HTTP fake server (tests/fake_openai.py).

No mocks of httpx: faults happen on the socket (disconnects, hangs) or in real responses
(429 with Retry-After, 500, malformed bodies, shuffled or missing vectors, context-length
400s). Sync tests drive the client with plain `asyncio.run`; short latencies and timeouts
keep the whole file within a few tens of seconds.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from contextlib import asynccontextmanager

import pytest

try:
    from tests.fake_openai import FakeConfig, FakeOpenAIServer, fake_chat_answer, fake_embedding
except ImportError:  # plain `pytest` puts tests/ itself on sys.path
    from fake_openai import FakeConfig, FakeOpenAIServer, fake_chat_answer, fake_embedding  # type: ignore[no-redef]

from graphrag_flow.config import LLMSettings
from graphrag_flow.errors import FatalLLMError, ItemFailedError, SettingsError
from graphrag_flow.llm import answer_key, AnswerCache, get_encoding, OpenAICompatibleClient, plan_batches
from graphrag_flow.llm import ConnectionPool, GraphExtraction, LLMStats, RequestLimiter

EMB = "text-embedding-3-small"
CHAT = "gpt-4.1-mini"
KEY = "sk-test-SECRET-0123456789"


def settings(url: str, **kw) -> LLMSettings:
    base = dict(provider="openai", api_base=url, request_timeout_s=2.0, max_retries=6, max_concurrency=4)
    return LLMSettings(**(base | kw))


def client_for(url: str, *, stats: LLMStats | None = None, cache: AnswerCache | None = None, key: str | None = KEY,
               limiter: RequestLimiter | None = None, json_object_mode: bool = False,
               pool: ConnectionPool | None = None, **kw) -> OpenAICompatibleClient:
    s = settings(url, **kw)
    return OpenAICompatibleClient(
        s, key, limiter or RequestLimiter(s.max_concurrency), stats or LLMStats(), cache,
        json_object_mode=json_object_mode, backoff_base_s=0.02, backoff_max_s=0.2, pool=pool,
    )


def texts(n: int, prefix: str = "text") -> list[str]:
    return [f"{prefix} {i}: Guido van Rossum wrote PEP {i} about Python number {i * 7}." for i in range(n)]


async def seconds_with_reconfigure(call, srv, after_s: float, **knobs) -> float:
    """Seconds `call` takes when the fake server is reconfigured (`knobs`) `after_s` into it."""
    task = asyncio.create_task(call)
    await asyncio.sleep(after_s)
    srv.configure(**knobs)
    start = time.monotonic()
    await task
    return time.monotonic() - start + after_s


def messages(text: str) -> list[dict]:
    return [{"role": "system", "content": "Extract entities and relationships."}, {"role": "user", "content": text}]


async def embed_all(client: OpenAICompatibleClient, items: list[str], batch_size: int = 8) -> list[list[float]]:
    batches = plan_batches(items, batch_size, 8191)
    results = await asyncio.gather(
        *(client.embed("embed", [items[i] for i in b], f"batch {n}") for n, b in enumerate(batches))
    )
    return [v for batch in results for v in batch]


def assert_vectors(items: list[str], vectors: list[list[float]], dim: int = 64) -> None:
    assert len(vectors) == len(items)
    for text, vec in zip(items, vectors):
        assert vec == pytest.approx(fake_embedding(EMB, text, dim), abs=1e-12), text


# --------------------------------------------------------------------------- faults that retries fix


def test_clients_on_the_runs_pools_share_connections_and_leave_them_open():
    """A stage client closed after its requests leaves the run's sockets open for the next
    stage; a client on another loop (a thread) does not touch them and opens its own."""
    items = texts(24)
    with FakeOpenAIServer(FakeConfig(latency_s=0.01)) as srv:

        def in_a_thread(pool: ConnectionPool) -> list[list[float]]:
            async def other_loop():
                async with client_for(srv.base_url, pool=pool) as c:
                    return await embed_all(c, items[:4])

            return asyncio.run(other_loop())

        async def main():
            async with ConnectionPool(4) as pool:
                for _ in range(3):  # three stages, one after another
                    async with client_for(srv.base_url, pool=pool) as c:
                        assert_vectors(items, await embed_all(c, items, batch_size=2))
                assert srv.stats(with_log=False)["connections"] <= 4
                assert_vectors(items[:4], await asyncio.to_thread(in_a_thread, pool))
                async with client_for(srv.base_url, pool=pool) as c:  # still open after the thread's client
                    assert_vectors(items[:2], await embed_all(c, items[:2]))

        asyncio.run(main())
        connections = srv.stats(with_log=False)["connections"]
    assert 5 <= connections <= 4 + 4, connections


def test_disconnects_are_retried_and_every_vector_is_the_servers():
    items = texts(160)
    stats = LLMStats()
    with FakeOpenAIServer(FakeConfig(latency_s=0.005, p_disconnect=0.1, seed=3)) as srv:

        async def main():
            async with client_for(srv.base_url, stats=stats) as c:
                return await embed_all(c, items)

        vectors = asyncio.run(main())
        faults = srv.stats(with_log=False)["faults"]
    assert_vectors(items, vectors)
    row = stats.get("embed")
    assert faults.get("disconnect", 0) > 0
    assert row.retry_reasons["disconnect"] == faults["disconnect"]
    assert row.failures == 0 and row.items == 20


def test_hangs_end_by_adaptive_deadline_not_full_timeouts():
    items = texts(240, "hang")
    stats = LLMStats()
    with FakeOpenAIServer(FakeConfig(latency_s=0.01, p_hang=0.02, seed=7)) as srv:

        async def main():
            async with client_for(srv.base_url, stats=stats, request_timeout_s=3.0, max_concurrency=8) as c:
                return await asyncio.gather(*(c.embed("embed", [t], f"text {i}") for i, t in enumerate(items)))

        start = time.monotonic()
        vectors = [v[0] for v in asyncio.run(main())]
        elapsed = time.monotonic() - start
        hangs = srv.stats(with_log=False)["faults"].get("hang", 0)
    assert_vectors(items, vectors)
    reasons = stats.get("embed").retry_reasons
    assert hangs >= 3
    assert reasons["deadline"] + reasons["timeout"] == hangs
    assert reasons["deadline"] >= 1, reasons  # after 20 samples, max(4 x p95, 0.5 s) ends a hang, not 3 s
    assert elapsed < 10, elapsed


async def warm_up(client: OpenAICompatibleClient, stage: str) -> None:
    """Enough answered requests (25 > 20) for the adaptive deadline and hedging to act."""
    for i in range(25):
        await client.embed(stage, [f"warm {i}"], f"warm {i}")


async def seconds_of_one_hung_request(client: OpenAICompatibleClient, stage: str, srv, answer_after_s: float) -> float:
    """One embedding request while the server hangs everything, until `answer_after_s` into it."""
    srv.configure(p_hang=1.0)
    return await seconds_with_reconfigure(client.embed(stage, ["slow one"], "batch 0"), srv, answer_after_s, p_hang=0.0)


def closed_log_entries(srv, endpoint: str, wait_s: float = 2.0) -> list[dict]:
    """The server's log of `endpoint` once every entry is closed: a request the client gave up
    on (a hedge's loser) is closed when the server's thread sees the connection go, which can be
    a moment after the client returned."""
    deadline = time.monotonic() + wait_s
    while True:
        log = [e for e in srv.stats()["log"] if e["endpoint"] == endpoint]
        if all(e["status"] is not None for e in log) or time.monotonic() > deadline:
            return log
        time.sleep(0.02)


def test_the_adaptive_deadline_carries_over_to_the_next_stage_client():
    # Every stage opens its own client; the latencies the first one saw must end a hang in the
    # next one at once, not after request_timeout_s (5 s here).
    stats = LLMStats()
    with FakeOpenAIServer(FakeConfig(latency_s=0.01)) as srv:

        async def main():
            async with client_for(srv.base_url, stats=stats, request_timeout_s=5.0) as first:
                await warm_up(first, "embed-a")
            async with client_for(srv.base_url, stats=stats, request_timeout_s=5.0, hedge_slow_requests=False) as second:
                return await seconds_of_one_hung_request(second, "embed-b", srv, 0.2)

        elapsed = asyncio.run(main())
    assert stats.get("embed-b").retry_reasons == {"deadline": 1}
    assert elapsed < 1.5, elapsed  # max(4 x p95, 0.5 s) plus a quick retry, not 5 s


def test_a_slow_request_is_hedged_into_an_idle_slot_and_the_first_answer_wins():
    """At a stage's tail a hung request is sent again beside the first after 2 x p95 (floor
    0.25 s) instead of waiting for the adaptive deadline (max(4 x p95, 0.5 s)) and a retry."""
    stats = LLMStats()
    with FakeOpenAIServer(FakeConfig(latency_s=0.01)) as srv:

        async def main():
            async with client_for(srv.base_url, stats=stats, request_timeout_s=5.0) as c:
                await warm_up(c, "embed")
                return await seconds_of_one_hung_request(c, "embed", srv, 0.1)

        elapsed = asyncio.run(main())
        log = closed_log_entries(srv, "embeddings")[-2:]
    assert stats.get("embed").retry_reasons == {"hedge": 1}
    assert 0.25 <= elapsed < 0.45, elapsed  # the hedge's start plus one latency, not the 0.5 s deadline
    assert [e["status"] for e in log] == ["hang", 200]
    assert log[1]["t_start"] - log[0]["t_start"] >= 0.25


def test_hedges_never_take_a_slot_another_request_waits_for():
    """A slow request is not hedged while every slot is taken (a hedge would wait with the
    others for one): it is cut by its adaptive deadline and retried, and the request that was
    already waiting gets the freed slot first."""
    stats = LLMStats()
    limiter = RequestLimiter(2)
    with FakeOpenAIServer(FakeConfig(latency_s=0.01)) as srv:

        async def main():
            async with client_for(srv.base_url, stats=stats, limiter=limiter, max_concurrency=2,
                                  request_timeout_s=5.0) as c:
                await warm_up(c, "warm")
                srv.configure(p_hang=1.0)
                release = asyncio.Event()
                order: list[str] = []

                async def hold_the_other_slot() -> None:
                    async with limiter.slot(0):
                        await release.wait()

                async def wait_for_a_slot() -> None:
                    async with limiter.slot(9):  # lower priority than the request's retry
                        order.append("waiter")

                holder = asyncio.create_task(hold_the_other_slot())
                await asyncio.sleep(0)
                slow = asyncio.create_task(c.embed("busy", ["slow one"], "batch 0"))
                await asyncio.sleep(0.05)
                waiter = asyncio.create_task(wait_for_a_slot())
                await asyncio.sleep(0.35)  # past the hedge point (0.25 s), before the deadline (0.5 s)
                srv.configure(p_hang=0.0)
                assert srv.stats(with_log=False)["requests"]["embeddings"] == 26  # no hedge went out
                release.set()
                await asyncio.gather(holder, slow, waiter)
                return order

        assert asyncio.run(main()) == ["waiter"]
    assert stats.get("busy").retry_reasons == {"deadline": 1}
    assert limiter.max_in_flight == 2 and limiter.in_flight == 0


def test_hedging_can_be_turned_off():
    stats = LLMStats()
    with FakeOpenAIServer(FakeConfig(latency_s=0.01)) as srv:

        async def main():
            async with client_for(srv.base_url, stats=stats, request_timeout_s=5.0, hedge_slow_requests=False) as c:
                await warm_up(c, "embed")
                return await seconds_of_one_hung_request(c, "embed", srv, 0.1)

        elapsed = asyncio.run(main())
    assert stats.get("embed").retry_reasons == {"deadline": 1}
    assert elapsed >= 0.5, elapsed  # the adaptive deadline's floor, then a quick retry


def test_429_waits_retry_after_and_is_counted():
    stats = LLMStats()
    with FakeOpenAIServer(FakeConfig(latency_s=0.0, p_429=1.0, retry_after_s=1)) as srv:

        async def main():
            async with client_for(srv.base_url, stats=stats) as c:
                return await seconds_with_reconfigure(c.embed("embed", ["x"], "batch 0"), srv, 0.3, p_429=0.0)

        elapsed = asyncio.run(main())
        requests = srv.stats(with_log=False)["requests"]["embeddings"]
    # backoff_base_s is 0.02 here: only honouring Retry-After makes the one retry wait ~1 s.
    assert 1.0 <= elapsed < 1.6, elapsed
    assert requests == 2
    row = stats.get("embed")
    assert row.retries == 1 and row.retry_reasons["rate_limit"] == 1


def test_500_malformed_and_429_without_header_are_retried():
    items = texts(48, "mixed")
    stats = LLMStats()
    with FakeOpenAIServer(FakeConfig(latency_s=0.002, p_500=0.15, p_malformed=0.15, p_429=0.1, seed=11)) as srv:

        async def main():
            async with client_for(srv.base_url, stats=stats) as c:
                answers = await asyncio.gather(
                    *(c.chat("extract", "graph_extraction", messages(t), f"unit {i}") for i, t in enumerate(items[:24]))
                )
                return answers, await embed_all(c, items[24:], batch_size=4)

        answers, vectors = asyncio.run(main())
    for text, answer in zip(items[:24], answers):
        assert answer == GraphExtraction.model_validate(fake_chat_answer("graph_extraction", text))
    assert_vectors(items[24:], vectors)
    reasons = stats.get("extract").retry_reasons + stats.get("embed").retry_reasons
    assert reasons["server_error"] > 0 and reasons["invalid_answer"] > 0 and reasons["rate_limit"] > 0
    assert stats.get("extract").failures == stats.get("embed").failures == 0


def test_shuffled_data_is_aligned_by_index():
    items = texts(32, "shuffle")
    with FakeOpenAIServer(FakeConfig(p_shuffle=1.0)) as srv:

        async def main():
            async with client_for(srv.base_url) as c:
                return await embed_all(c, items)

        vectors = asyncio.run(main())
        assert srv.stats(with_log=False)["faults"]["shuffle"] == 4
    assert_vectors(items, vectors)


def test_missing_vector_is_retried_then_the_item_fails():
    items = texts(8, "missing")
    stats = LLMStats()
    with FakeOpenAIServer(FakeConfig(p_missing_vector=0.4, seed=5)) as srv:

        async def main():
            async with client_for(srv.base_url, stats=stats) as c:
                ok = await embed_all(c, items, batch_size=2)
                srv.configure(p_missing_vector=1.0)
                with pytest.raises(ItemFailedError) as err:
                    await c.embed("embed", items[:2], "batch of doc-7")
                return ok, err.value

        vectors, err = asyncio.run(main())
    assert_vectors(items, vectors)
    assert err.item == "batch of doc-7" and "got 1 vectors for 2 inputs" in err.reason
    row = stats.get("embed")
    assert row.retry_reasons["invalid_answer"] >= 6 and row.failures == 1


def test_persistent_500_fails_only_that_item_after_max_retries():
    stats = LLMStats()
    with FakeOpenAIServer(FakeConfig(fail_inputs=["POISON"])) as srv:

        async def main():
            async with client_for(srv.base_url, stats=stats, max_retries=3) as c:
                good = await c.embed("embed", ["fine"], "batch 1")
                with pytest.raises(ItemFailedError) as err:
                    await c.embed("embed", ["a", "POISON b"], "batch 2")
                return good, err.value

        good, err = asyncio.run(main())
        requests = srv.stats(with_log=False)["requests"]["embeddings"]
    assert good[0] == pytest.approx(fake_embedding(EMB, "fine"))
    assert err.item == "batch 2" and "server error 500" in err.reason and "4 attempt" in err.reason
    assert requests == 1 + 4


def test_other_400_fails_the_item_without_retry():
    stats = LLMStats()
    with FakeOpenAIServer(FakeConfig()) as srv:

        async def main():
            async with client_for(srv.base_url, stats=stats) as c:
                await c.chat("extract", "graph_extraction", [], "unit 1")  # the fake answers 400 to no messages

        with pytest.raises(ItemFailedError) as err:
            asyncio.run(main())
        assert srv.stats(with_log=False)["requests"]["chat"] == 1
    assert err.value.item == "unit 1" and "non-empty" in err.value.reason
    assert stats.get("extract").retries == 0 and stats.get("extract").failures == 1


# --------------------------------------------------------------------------- faults that stop the run


def test_401_is_fatal_at_once_and_never_shows_the_key(caplog):
    caplog.set_level(logging.DEBUG)
    with FakeOpenAIServer(FakeConfig(api_key="sk-the-right-one")) as srv:
        client = client_for(srv.base_url)

        async def main():
            async with client as c:
                await c.embed("embed", ["x"], "batch 0")

        start = time.monotonic()
        with pytest.raises(FatalLLMError) as err:
            asyncio.run(main())
        elapsed = time.monotonic() - start
        assert srv.stats(with_log=False)["requests"]["embeddings"] == 1  # no retry
    message = str(err.value)
    assert elapsed < 1.0
    assert "API key rejected by" in message and "llm.api_key" in message and "OPENAI_API_KEY" in message
    assert KEY not in message and KEY not in repr(err.value) and KEY not in repr(client)
    assert KEY not in str(vars(client))
    assert all(KEY not in r.getMessage() for r in caplog.records)


def test_404_names_the_model_and_the_api_base_setting():
    with FakeOpenAIServer(FakeConfig()) as srv:

        async def chat():
            async with client_for(srv.base_url, chat_model="gpt-nope") as c:
                await c.chat("extract", "graph_extraction", messages("x"), "unit 1")

        with pytest.raises(FatalLLMError) as err:
            asyncio.run(chat())
        assert "'gpt-nope'" in str(err.value) and "llm.chat_model" in str(err.value)
        assert "llm.api_base" in str(err.value)

        async def wrong_base():
            async with client_for(srv.base_url.replace("/v1", "/v2")) as c:
                await c.embed("embed", ["x"], "batch 0")

        with pytest.raises(FatalLLMError) as err:
            asyncio.run(wrong_base())
        assert EMB in str(err.value) and "llm.api_base" in str(err.value)
        assert srv.stats(with_log=False)["requests"]["other"] == 1


# --------------------------------------------------------------------------- context length and truncation


def test_context_length_splits_the_batch_and_truncates_a_lone_input():
    enc = get_encoding()
    short = texts(7, "ctx")
    long_text = " ".join(f"word{i}" for i in range(200))  # > 100 tokens
    items = short[:3] + [long_text] + short[3:]
    stats = LLMStats()
    with FakeOpenAIServer(FakeConfig(context_limit_tokens=100)) as srv:

        async def main():
            async with client_for(srv.base_url, stats=stats) as c:
                return await c.embed("embed", items, "batch 0")

        vectors = asyncio.run(main())
    tokens = enc.encode_ordinary(long_text)
    n = len(tokens)
    while n > 100:
        n //= 2
    expected_long = enc.decode(tokens[:n])
    assert_vectors(short[:3] + [expected_long] + short[3:], vectors)
    row = stats.get("embed")
    assert row.retry_reasons["context_length_split"] >= 3 and row.failures == 0
    assert len(row.warnings) == 1 and "batch 0" in row.warnings[0]


def test_request_scoped_context_limit_splits_until_it_fits():
    items = texts(16, "scope")
    with FakeOpenAIServer(FakeConfig(context_limit_tokens=80, context_limit_scope="request")) as srv:

        async def main():
            async with client_for(srv.base_url) as c:
                return await c.embed("embed", items, "batch 0")

        vectors = asyncio.run(main())
    assert_vectors(items, vectors)


def test_inputs_over_the_batch_token_limit_are_truncated_before_sending():
    enc = get_encoding()
    long_text = " ".join(f"tok{i}" for i in range(400))
    stats = LLMStats()
    with FakeOpenAIServer(FakeConfig()) as srv:

        async def main():
            async with client_for(srv.base_url, stats=stats, embedding_batch_max_tokens=50) as c:
                return await c.embed("embed", ["short", long_text], "batch 0")

        vectors = asyncio.run(main())
        log = [e for e in srv.stats()["log"] if e["endpoint"] == "embeddings"]
    truncated = enc.decode(enc.encode_ordinary(long_text)[:50])
    assert_vectors(["short", truncated], vectors)
    assert len(log) == 1  # never sent whole
    assert stats.get("embed").truncated_inputs == 1


def test_plan_batches_respects_count_and_tokens():
    enc = get_encoding()
    items = [("word " * n).strip() for n in (5, 40, 3, 3, 90, 10, 10, 10, 10, 10, 300, 1, 2)]
    batches = plan_batches(items, batch_size=4, max_tokens=100)
    assert [i for b in batches for i in b] == list(range(len(items)))  # consecutive, all covered
    for b in batches:
        assert 1 <= len(b) <= 4
        assert sum(min(len(enc.encode_ordinary(items[i])), 100) for i in b) <= 100
    assert [10] in batches  # longer than the limit: travels alone (truncated when sent)
    assert plan_batches([], 4, 100) == []


# --------------------------------------------------------------------------- concurrency and lifetime


def test_in_flight_never_exceeds_max_concurrency_and_reaches_it():
    entered = 0
    active_extra = 0

    @asynccontextmanager
    async def extra():
        nonlocal entered, active_extra
        entered += 1
        active_extra += 1
        try:
            yield
        finally:
            active_extra -= 1

    limiter = RequestLimiter(6, extra=extra)
    items = texts(60, "load")
    with FakeOpenAIServer(FakeConfig(latency_s=0.05)) as srv:

        async def main():
            async with client_for(srv.base_url, limiter=limiter, max_concurrency=6) as c:
                await asyncio.gather(
                    embed_all(c, items[:30], batch_size=2),
                    *(c.chat("extract", "graph_extraction", messages(t), f"unit {i}") for i, t in enumerate(items[30:])),
                )

        asyncio.run(main())
        st = srv.stats(with_log=False)
    assert st["max_in_flight"] == 6
    assert limiter.max_in_flight == 6 and limiter.in_flight == 0
    assert entered == st["requests"]["chat"] + st["requests"]["embeddings"] and active_extra == 0


def test_limiter_releases_on_cancellation_and_error():
    async def main():
        limiter = RequestLimiter(1)

        async def hold():
            async with limiter.slot():
                await asyncio.sleep(10)

        task = asyncio.create_task(hold())
        await asyncio.sleep(0.01)
        assert limiter.in_flight == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        with pytest.raises(ValueError):
            async with limiter.slot():
                raise ValueError("boom")
        async with asyncio.timeout(1):  # both slots came back: this does not wait
            async with limiter.slot():
                assert limiter.in_flight == 1
        assert limiter.in_flight == 0

    asyncio.run(main())


def test_exit_waits_for_running_calls_and_refuses_new_ones():
    items = texts(12, "exit")
    with FakeOpenAIServer(FakeConfig(latency_s=0.2)) as srv:

        async def main():
            client = client_for(srv.base_url)
            async with client as c:
                tasks = [asyncio.create_task(c.embed("embed", [t], f"text {i}")) for i, t in enumerate(items)]
                await asyncio.sleep(0)
            assert all(t.done() for t in tasks)  # __aexit__ waited for them
            with pytest.raises(RuntimeError):
                await client.embed("embed", ["late"], "late")
            return [t.result()[0] for t in tasks]

        vectors = asyncio.run(main())
    assert_vectors(items, vectors)


def test_client_refuses_another_event_loop():
    with FakeOpenAIServer(FakeConfig()) as srv:
        client = client_for(srv.base_url)

        async def main():
            async with client:
                import threading

                errors = []
                t = threading.Thread(target=lambda: errors.append(_try_other_loop(client)))
                t.start()
                await asyncio.to_thread(t.join)
                return errors[0]

        assert "event loop" in asyncio.run(main())


def _try_other_loop(client: OpenAICompatibleClient) -> str:
    try:
        asyncio.run(client.embed("embed", ["x"], "x"))
    except RuntimeError as exc:
        return str(exc)
    return "no error"


# --------------------------------------------------------------------------- answer cache and json_object


def test_answer_cache_serves_the_second_call_without_a_request(tmp_path):
    cache_path = tmp_path / "answers.sqlite"
    stats = LLMStats()
    with FakeOpenAIServer(FakeConfig()) as srv:

        async def ask(cache: AnswerCache):
            async with client_for(srv.base_url, stats=stats, cache=cache) as c:
                return await c.chat("extract", "graph_extraction", messages("Ada Lovelace met Charles Babbage."), "u1")

        cache = AnswerCache(cache_path)
        first = asyncio.run(ask(cache))
        second = asyncio.run(ask(cache))
        cache.close()
        reopened = AnswerCache(cache_path)  # committed: a new process sees it
        third = asyncio.run(ask(reopened))
        assert len(reopened) == 1
        reopened.close()
        assert srv.stats(with_log=False)["requests"]["chat"] == 1
    assert first == second == third
    assert stats.get("extract").cache_hits == 2
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert KEY.encode() not in raw and b"127.0.0.1" not in raw


def test_a_full_rebuild_asks_again_but_stores_every_answer_for_a_later_resume(tmp_path):
    """--full (read_cache=False) ignores stored answers, yet stores the new ones as they arrive,
    so a killed rebuild followed by a normal run does not pay for them twice."""
    stats = LLMStats()
    cache = AnswerCache(tmp_path / "answers.sqlite")
    with FakeOpenAIServer(FakeConfig()) as srv:
        s = settings(srv.base_url)

        async def ask(read_cache: bool, text: str):
            client = OpenAICompatibleClient(s, KEY, RequestLimiter(s.max_concurrency), stats, cache,
                                            read_cache=read_cache, backoff_base_s=0.02, backoff_max_s=0.2)
            async with client as c:
                return await c.chat("extract", "graph_extraction", messages(text), "u1")

        asyncio.run(ask(True, "Ada Lovelace met Charles Babbage."))
        asyncio.run(ask(False, "Ada Lovelace met Charles Babbage."))  # cached, asked again all the same
        asyncio.run(ask(False, "Grace Hopper wrote a compiler."))  # new: stored although not read
        assert srv.stats(with_log=False)["requests"]["chat"] == 3
        asyncio.run(ask(True, "Grace Hopper wrote a compiler."))  # the normal run finds it
        assert srv.stats(with_log=False)["requests"]["chat"] == 3
    assert len(cache) == 2
    cache.close()
    assert stats.get("extract").cache_hits == 1


def test_answer_key_changes_with_what_changes_the_answer():
    base = dict(model=CHAT, messages=messages("x"), schema_name="entity_summary", schema={"a": 1}, temperature=0.0)
    key = answer_key(**base)
    assert key == answer_key(**base)
    for change in ({"model": "other"}, {"messages": messages("y")}, {"temperature": 0.5}, {"schema": {"a": 2}}):
        assert answer_key(**(base | change)) != key
    with pytest.raises(ValueError):
        answer_key(**base, api_key=KEY)


def test_answer_cache_put_is_committed_at_once(tmp_path):
    cache = AnswerCache(tmp_path / "a.sqlite")
    cache.put("k", json.dumps({"description": "d"}))
    # Another connection (as after a kill -9) sees the row with the writer still open.
    other = sqlite3.connect(tmp_path / "a.sqlite")
    assert other.execute("SELECT value FROM answers WHERE key='k'").fetchone()[0] == '{"description": "d"}'
    assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    other.close()
    cache.close()


def test_json_object_fallback_once_then_carried():
    stats = LLMStats()
    with FakeOpenAIServer(FakeConfig(json_schema_supported=False)) as srv:

        async def main():
            async with client_for(srv.base_url, stats=stats) as c:
                answers = [await c.chat("summarize", "entity_summary", messages(f"desc {i}"), f"e{i}") for i in range(3)]
                return answers, c.json_object_mode

        answers, mode = asyncio.run(main())
        assert srv.stats(with_log=False)["requests"]["chat"] == 4  # one 400, then three answers
        assert mode is True
        assert [a.description for a in answers] == ["desc 0", "desc 1", "desc 2"]
        assert len(stats.get("summarize").warnings) == 1 and "json_object" in stats.get("summarize").warnings[0]

        async def carried():
            async with client_for(srv.base_url, json_object_mode=True) as c:
                return await c.chat("summarize", "entity_summary", messages("desc 9"), "e9")

        assert asyncio.run(carried()).description == "desc 9"
        assert srv.stats(with_log=False)["requests"]["chat"] == 5  # no second 400


def test_check_and_list_models():
    with FakeOpenAIServer(FakeConfig(latency_s=0.01)) as srv:

        async def ok():
            async with client_for(srv.base_url) as c:
                models = await c.list_models()
                await c.check()
                return models

        assert sorted(asyncio.run(ok())) == [CHAT, EMB]

        async def missing_model():
            async with client_for(srv.base_url, embedding_model="emb-missing") as c:
                await c.check()

        with pytest.raises(FatalLLMError, match="emb-missing.*llm.embedding_model"):
            asyncio.run(missing_model())


# --------------------------------------------------------------------------- embedding answers, checked


def _embedding_reply(vectors: list, n: int | None = None):
    import base64 as b64

    from multidict import CIMultiDict, CIMultiDictProxy

    from graphrag_flow.llm.outcomes import Reply

    data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]
    body = json.dumps({"data": data}).encode()
    return Reply(200, CIMultiDictProxy(CIMultiDict()), body), b64


@pytest.mark.parametrize("vectors,problem", [
    ([[0.1, 0.2], [0.3, "0.4"]], "vector 1 is missing or not a list of numbers"),
    ([[0.1, 0.2], [None, 0.4]], "vector 1 is missing or not a list of numbers"),
    ([[0.1, 0.2], []], "vector 1 is missing or not a list of numbers"),
    ([[[0.1], [0.2]], [[0.3], [0.4]]], "vector 0 is missing or not a list of numbers"),
    ([[0.1, 0.2], [0.3]], "vectors of different dimensions [1, 2]"),
    ([[0.1, 0.2], "AADAfwAAgD8="], "vector 1 has a non-finite number"),  # base64 float32 [nan, 1.0]
    ([[0.1, 0.2], "not base64!"], "vector 1 is missing or not a list of numbers"),
])
def test_an_embedding_answer_with_an_odd_vector_fails_the_attempt(vectors, problem):
    from graphrag_flow.llm.outcomes import BadAnswer
    from graphrag_flow.llm.parsing import parse_embeddings

    reply, _ = _embedding_reply(vectors)
    with pytest.raises(BadAnswer) as err:
        parse_embeddings(reply, len(vectors), None)
    assert problem in str(err.value)


def test_embedding_answers_are_aligned_by_index_in_floats_or_base64():
    import numpy as np

    from graphrag_flow.llm.outcomes import BadAnswer
    from graphrag_flow.llm.parsing import parse_embeddings

    first, second = [0.5, -0.25, 1.0], [0.125, 2.0, -3.5]
    reply, b64 = _embedding_reply([second, first])
    shuffled = json.loads(reply.body)
    shuffled["data"][0]["index"], shuffled["data"][1]["index"] = 1, 0
    shuffled["data"][1]["embedding"] = b64.b64encode(np.asarray(first, dtype="<f4").tobytes()).decode()
    reply = type(reply)(200, reply.headers, json.dumps(shuffled).encode())
    vectors = parse_embeddings(reply, 2, 3)
    assert vectors.tolist() == [first, second]
    with pytest.raises(BadAnswer, match="dimension 3, expected 4"):
        parse_embeddings(reply, 2, 4)


# --------------------------------------------------------------------------- which limit ended a request


def test_a_hung_request_names_the_setting_that_ended_it_and_its_value():
    with FakeOpenAIServer(FakeConfig(latency_s=0.01, p_hang=1.0)) as srv:

        async def main():
            async with client_for(srv.base_url, request_timeout_s=0.3, max_retries=0) as c:
                await c.embed("embed", ["x"], "batch 0")

        with pytest.raises(ItemFailedError) as info:
            asyncio.run(main())
    assert "no answer within 0.30 s: llm.request_timeout_s = 0.3 s" in info.value.reason, info.value.reason


def test_a_hung_request_ended_by_the_adaptive_deadline_says_how_it_was_derived():
    stats = LLMStats()
    with FakeOpenAIServer(FakeConfig(latency_s=0.01)) as srv:

        async def main():
            async with client_for(srv.base_url, stats=stats, request_timeout_s=5.0, max_retries=0,
                                  hedge_slow_requests=False) as c:
                await warm_up(c, "embed")
                srv.configure(p_hang=1.0)
                await c.embed("embed", ["slow one"], "batch 0")

        with pytest.raises(ItemFailedError) as info:
            asyncio.run(main())
    reason = info.value.reason
    assert "no answer within 0.50 s: the adaptive deadline, max(4 x " in reason, reason
    assert "the p95 latency of embeddings requests in this run, 0.5 s)" in reason, reason
    assert "llm.request_timeout_s = 5 s is the most a request may take" in reason, reason


def test_check_names_its_own_limit_not_the_setting(monkeypatch, tmp_path):
    """`check` allows 4 s per request whatever llm.request_timeout_s says; a hang there must say
    so, not "4s (llm.request_timeout_s)" while the setting is 10."""
    from graphrag_flow.cli.check import run_check
    from graphrag_flow.config import load_settings

    with FakeOpenAIServer(FakeConfig(latency_s=0.01, p_hang=1.0)) as srv:
        (tmp_path / "settings.yaml").write_text(
            f"llm: {{provider: openai, api_base: '{srv.base_url}', request_timeout_s: 10}}\n", encoding="utf-8")
        monkeypatch.setenv("OPENAI_API_KEY", KEY)
        with pytest.raises(FatalLLMError) as info:
            asyncio.run(run_check(tmp_path, load_settings(tmp_path), quick=False))
    message = str(info.value)
    assert ("no answer within 4.00 s: the 4 s limit of `graphrag-flow check` and the index preflight "
            "(llm.request_timeout_s is 10 s)") in message, message


def test_credentials_in_api_base_are_never_shown():
    with FakeOpenAIServer(FakeConfig(latency_s=0.01, api_key="sk-other")) as srv:
        host = srv.base_url.split("://", 1)[1]
        url = f"http://robot:hunter2-in-url@{host}"

        async def main():
            async with client_for(url, key=None) as c:  # the URL's user:password goes as basic auth
                await c.list_models()

        with pytest.raises(FatalLLMError) as info:
            asyncio.run(main())
        message = str(info.value) + repr(client_for(url, key=None))
        assert "API key rejected by http://" + host in message, message
        assert "hunter2" not in message and "robot" not in message, message
        with pytest.raises(SettingsError, match="llm.api_base carries a user:password@") as both:
            client_for(url)  # and a key: one Authorization header cannot carry both
        assert "hunter2" not in str(both.value)
