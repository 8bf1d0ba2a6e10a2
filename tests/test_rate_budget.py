"""Rate budgets (graphrag_flow/llm/pacing.py): `llm.tokens_per_minute` and
`llm.requests_per_minute` held for the whole run, against the fake server enforcing the same
limits over a sliding window (tests/fake_openai.py `tpm`, `rpm`, `rate_window_s`).

The budget's own window is a constructor argument: the client-level tests here use a window of
a few seconds on both sides to stay short; the product's window is a minute, and
tests/test_providers_cli.py runs a whole index against a server enforcing real minutes.
"""

from __future__ import annotations

import asyncio
import time

import pytest

try:
    from tests.fake_openai import FakeConfig, FakeOpenAIServer
    from tests.fake_usage import chat_prompt_tokens, count_tokens as server_count
except ImportError:  # plain `pytest` puts tests/ itself on sys.path
    from fake_openai import FakeConfig, FakeOpenAIServer  # type: ignore[no-redef]
    from fake_usage import chat_prompt_tokens, count_tokens as server_count  # type: ignore[no-redef]

from graphrag_flow.config import LLMSettings
from graphrag_flow.llm import LLMStats, OpenAICompatibleClient, RequestLimiter
from graphrag_flow.llm import pacing
from graphrag_flow.llm.pacing import RateBudget, parse_duration, request_tokens

ALLOWANCE = 300  # what the server counts a chat answer for, and the client expects


def user_text(i: int) -> str:
    return f"Entity: thing {i}\nDescriptions:\n- " + " ".join(f"word{i}x{j}" for j in range(40))


def summary_messages(i: int) -> list[dict]:
    return [{"role": "system", "content": "Merge the descriptions of one entity into one short description."},
            {"role": "user", "content": user_text(i)}]


# ---- counting


def test_a_request_is_counted_as_the_server_counts_it():
    """The client's count before sending equals the server's on arrival (the fake follows
    OpenAI's per-message rule and its rate-limit guide): a budget that counts less would be
    refused, one that counts more would waste the limit."""
    messages = summary_messages(3) + [{"role": "user", "name": "ada", "content": "and one more, named"}]
    body = {"model": "m", "messages": messages, "response_format": {"type": "json_object"}}
    assert request_tokens("chat", body, ALLOWANCE) == chat_prompt_tokens(messages) + ALLOWANCE
    assert request_tokens("chat", body | {"max_tokens": 50}, ALLOWANCE) == chat_prompt_tokens(messages) + 50
    inputs = ["Ada Lovelace", "Grace Hopper wrote the first compiler", "é" * 30]
    assert request_tokens("embeddings", {"input": inputs}, ALLOWANCE) == sum(server_count(t) for t in inputs)
    assert request_tokens("models", None, ALLOWANCE) == 0


def test_reset_durations_read_as_openai_writes_them():
    assert parse_duration("6m0s") == 360
    assert parse_duration("1s") == 1
    assert parse_duration("20ms") == pytest.approx(0.02)
    assert parse_duration("1h2m3.5s") == pytest.approx(3723.5)
    assert parse_duration("2.5") == 2.5
    assert parse_duration("soon") is None and parse_duration(None) is None


# ---- the budget alone (a short window)


def test_tokens_wait_for_the_window_and_the_wait_is_counted():
    budget = RateBudget(100, None, window_s=0.6, margin_s=0.05)

    async def go():
        started = time.monotonic()
        await budget.acquire(60)
        await budget.acquire(30)  # 90 <= 100: at once
        first = time.monotonic() - started
        await budget.acquire(60)  # waits for the first 60 to leave the window
        return first, time.monotonic() - started

    first, total = asyncio.run(go())
    assert first < 0.1
    assert 0.6 <= total < 1.0
    assert budget.waits["tokens_per_minute"] == pytest.approx(total, abs=0.1)
    assert budget.delayed["tokens_per_minute"] == 1 and budget.waits["requests_per_minute"] == 0


def test_requests_wait_for_the_window():
    budget = RateBudget(None, 2, window_s=0.5, margin_s=0.0)

    async def go():
        started = time.monotonic()
        for _ in range(5):
            await budget.acquire(0)
        return time.monotonic() - started

    assert 1.0 <= asyncio.run(go()) < 1.4  # 2 now, 2 after 0.5 s, 1 after 1 s
    assert budget.delayed["requests_per_minute"] == 2


def test_a_request_larger_than_the_budget_goes_alone_into_an_empty_window():
    budget = RateBudget(100, None, window_s=0.3, margin_s=0.0)

    async def go():
        await budget.acquire(50)
        started = time.monotonic()
        await budget.acquire(500)  # never fits: it waits for an empty window, then goes
        return time.monotonic() - started

    assert 0.25 <= asyncio.run(go()) < 0.6


def test_the_servers_headers_correct_the_count():
    """Usage the server sees beyond ours (another process on the key) is held until its reset;
    a lower limit than the setting is adopted; headers saying less is used change nothing."""
    budget = RateBudget(1000, 100, window_s=60, margin_s=1)

    async def go():
        sent = await budget.acquire(100)
        budget.observe({"x-ratelimit-limit-tokens": "1000", "x-ratelimit-remaining-tokens": "950",
                        "x-ratelimit-reset-tokens": "1s"}, sent)
        assert budget._token_sum == 100  # the server sees less than we count: we keep ours
        budget.observe({"x-ratelimit-limit-tokens": "1000", "x-ratelimit-remaining-tokens": "300",
                        "x-ratelimit-reset-tokens": "400ms",
                        "x-ratelimit-limit-requests": "100", "x-ratelimit-remaining-requests": "97"}, sent)
        assert budget._token_sum == 700 and len(budget._requests) == 3
        started = time.monotonic()
        sent = await budget.acquire(600)  # fits once the server's 600 unseen tokens reset (0.4 s)
        waited = time.monotonic() - started
        budget.observe({"x-ratelimit-limit-tokens": "800", "x-ratelimit-remaining-tokens": "100"}, sent)
        return waited

    waited = asyncio.run(go())
    assert 0.35 <= waited < 0.8
    assert budget.tokens_per_minute == 800


def test_headers_of_a_slow_reply_count_from_when_the_request_was_sent():
    """The server wrote the headers when the request arrived: what left our window while the
    answer took its time is not usage the server hides from us."""
    budget = RateBudget(1000, None, window_s=0.3, margin_s=0.0)

    async def go():
        await budget.acquire(400)
        sent = await budget.acquire(100)  # the server, on arrival: 500 used, 500 remaining
        await asyncio.sleep(0.4)  # a slow answer: both have left our window since
        budget.observe({"x-ratelimit-limit-tokens": "1000", "x-ratelimit-remaining-tokens": "500",
                        "x-ratelimit-reset-tokens": "300ms"}, sent)
        return budget._token_sum

    assert asyncio.run(go()) == 0


def test_a_429_pauses_every_request():
    budget = RateBudget(None, 1000, window_s=60)

    async def go():
        budget.pause(0.4)
        started = time.monotonic()
        await asyncio.gather(*(budget.acquire(0) for _ in range(5)))
        return time.monotonic() - started

    assert 0.35 <= asyncio.run(go()) < 0.8
    assert budget.delayed["retry_after"] == 1  # the head waited; the others queued behind it


# ---- the client against a server enforcing the limits


def client(srv: FakeOpenAIServer, pacer: RateBudget | None, stats: LLMStats, **kw) -> OpenAICompatibleClient:
    s = LLMSettings(**(dict(provider="openai", api_base=srv.base_url, request_timeout_s=5.0, max_retries=6,
                            max_concurrency=16, expected_completion_tokens=ALLOWANCE) | kw))
    return OpenAICompatibleClient(s, None, RequestLimiter(s.max_concurrency), stats, None, pacer=pacer,
                                  backoff_base_s=0.05, backoff_max_s=0.5)


WINDOW_S = 2.0


def test_paced_requests_get_no_429_and_take_close_to_the_ideal_time():
    """40 chat answers of ~430 counted tokens each (17,000 in all) against 4,000 tokens and 12
    requests per window: the client sends what fits and waits for the rest, so the server
    refuses nothing, and the requests beyond the first window's budget take close to
    (tokens beyond it) / TPM windows."""
    n, tpm, rpm = 40, 4000, 12
    with FakeOpenAIServer(FakeConfig(tpm=tpm, rpm=rpm, rate_window_s=WINDOW_S, rate_completion_tokens=ALLOWANCE,
                                     latency_s=0.02)) as srv:
        stats = LLMStats()
        pacer = RateBudget(tpm, rpm, window_s=WINDOW_S, margin_s=0.05)

        async def go():
            async with client(srv, pacer, stats) as c:
                started = time.monotonic()
                await asyncio.gather(*(c.chat("summarize", "entity_summary", summary_messages(i), f"e{i}")
                                       for i in range(n)))
                return time.monotonic() - started

        elapsed = asyncio.run(go())
        st = srv.stats()
        counted = sum(e["rate_tokens"] or 0 for e in st["log"] if e["status"] == 200)
        assert st["rate_limit"]["rejected"] == 0, st["rate_limit"]
        assert stats.get("summarize").retries == 0
        ideal = max((counted - tpm) / tpm, (n - rpm) / rpm) * WINDOW_S
        assert elapsed <= 1.3 * ideal + 0.3, (elapsed, ideal)
        summary = pacer.summary()
        assert summary["waited_s"]["tokens_per_minute"] + summary["waited_s"]["requests_per_minute"] > 0.5 * ideal


def test_without_a_budget_the_same_server_refuses_many(monkeypatch):
    """The contrast, and what a run without a budget never pays for: no request is counted."""
    def never(*args, **kwargs):
        raise AssertionError("request_tokens called without a rate budget")

    monkeypatch.setattr(pacing, "request_tokens", never)
    monkeypatch.setattr("graphrag_flow.llm.transport.request_tokens", never)
    with FakeOpenAIServer(FakeConfig(tpm=4000, rpm=12, rate_window_s=WINDOW_S, rate_completion_tokens=ALLOWANCE,
                                     latency_s=0.02)) as srv:
        stats = LLMStats()

        async def go():
            async with client(srv, None, stats, max_retries=20) as c:
                await asyncio.gather(*(c.chat("summarize", "entity_summary", summary_messages(i), f"e{i}")
                                       for i in range(20)))

        asyncio.run(go())
        assert srv.stats()["rate_limit"]["rejected"] >= 10


@pytest.mark.parametrize("paced", [True, False])
def test_a_request_larger_than_the_limit_fails_its_item_at_once(paced):
    """No wait makes it fit: paced, it is never sent; unpaced, the server's "Request too large"
    429 is not retried (a paced run would otherwise stall every request behind it)."""
    with FakeOpenAIServer(FakeConfig(tpm=500, rate_window_s=WINDOW_S, rate_completion_tokens=ALLOWANCE)) as srv:
        stats = LLMStats()
        pacer = RateBudget(500, None, window_s=WINDOW_S) if paced else None
        big = [{"role": "user", "content": "Entity: x\nDescriptions:\n- " + "word " * 400}]

        async def go():
            async with client(srv, pacer, stats) as c:
                return await asyncio.gather(c.chat("summarize", "entity_summary", big, "entity x"),
                                            c.chat("summarize", "entity_summary", summary_messages(1), "e1"),
                                            return_exceptions=True)

        started = time.monotonic()
        failed, fine = asyncio.run(go())
        assert time.monotonic() - started < 1.5
        assert fine.description
        assert failed.item == "entity x" and ("too large" in failed.reason), failed.reason
        assert stats.get("summarize").retries == 0
        assert srv.stats()["rate_limit"]["rejected_too_large"] == (0 if paced else 1)


def test_paced_requests_under_a_request_limit_get_no_429():
    """RPM binds here (embeddings of a few tokens each): 30 requests at 10 per window."""
    n, rpm, window = 30, 10, 1.5
    with FakeOpenAIServer(FakeConfig(rpm=rpm, rate_window_s=window, latency_s=0.02)) as srv:
        stats = LLMStats()
        pacer = RateBudget(None, rpm, window_s=window, margin_s=0.05)

        async def go():
            async with client(srv, pacer, stats) as c:
                started = time.monotonic()
                await asyncio.gather(*(c.embed("embed", [f"text {i}"], f"batch {i}") for i in range(n)))
                return time.monotonic() - started

        elapsed = asyncio.run(go())
        assert srv.stats()["rate_limit"]["rejected"] == 0
        ideal = (n - rpm) / rpm * window
        assert ideal <= elapsed <= 1.3 * ideal + 0.3, (elapsed, ideal)
        assert pacer.summary()["waited_s"]["requests_per_minute"] >= 0.9 * ideal
