"""Usage accounting and the spend gate in the LLM client, against the real HTTP fake server
(tests/fake_openai.py), whose ledger says what a provider would bill. In process, no Prefect:
the run-level figures (manifest, CLI, estimate, budgets) are tests/test_cost.py's."""

from __future__ import annotations

import asyncio
import sqlite3
import time

import pytest

try:
    from tests.fake_openai import FakeConfig, FakeOpenAIServer
    from tests.fake_usage import chat_prompt_tokens as fake_prompt_tokens
except ImportError:  # plain `pytest` puts tests/ itself on sys.path
    from fake_openai import FakeConfig, FakeOpenAIServer  # type: ignore[no-redef]
    from fake_usage import chat_prompt_tokens as fake_prompt_tokens  # type: ignore[no-redef]

from graphrag_flow.config import LLMSettings, TokenPrices
from graphrag_flow.errors import ItemFailedError
from graphrag_flow.llm import AnswerCache, LLMStats, OpenAICompatibleClient, RequestLimiter
from graphrag_flow.llm.spend import NotSentOverBudget, SpendGate
from graphrag_flow.llm.structured import chat_answer_key
from graphrag_flow.llm.tokens import chat_prompt_tokens

KEY = "sk-test-USAGE-0123456789"


def client_for(url: str, stats: LLMStats, cache: AnswerCache | None = None, gate: SpendGate | None = None,
               **kw) -> OpenAICompatibleClient:
    s = LLMSettings(**(dict(provider="openai", api_base=url, request_timeout_s=3.0, max_retries=8,
                            max_concurrency=4) | kw))
    return OpenAICompatibleClient(s, KEY, RequestLimiter(s.max_concurrency), stats, cache, backoff_base_s=0.01,
                                  backoff_max_s=0.05, gate=gate)


def messages(i: int) -> list[dict]:
    return [{"role": "system", "content": "Merge the descriptions of one entity into one."},
            {"role": "user", "content": f"Entity: PEP {i}\nDescriptions:\n- a proposal numbered {i}\n- a document"}]


def texts(i: int, n: int = 4) -> list[str]:
    return [f"text {i}.{j}: Guido van Rossum wrote PEP {i * 10 + j} about Python." * (1 + j) for j in range(n)]


def settled_billing(srv, wait_s: float = 3.0) -> dict:
    """The ledger once every logged request is closed (a hedge's loser closes a moment after the
    client has moved on)."""
    deadline = time.monotonic() + wait_s
    while True:
        stats = srv.stats()
        if all(e["status"] is not None for e in stats["log"]) or time.monotonic() > deadline:
            return stats["billing"]
        time.sleep(0.02)


def totals(stats: LLMStats) -> dict:
    by_stage = stats.usage_by_stage()
    return {"requests": sum(u.answers for u in by_stage.values()),
            "prompt_tokens": sum(u.prompt_tokens + u.embedding_tokens for u in by_stage.values()),
            "completion_tokens": sum(u.completion_tokens for u in by_stage.values()),
            "counted": sum(u.counted for u in by_stage.values())}


def test_chat_prompt_tokens_follow_openais_rule_as_the_fake_bills_it():
    cases = [messages(1),
             [{"role": "user", "name": "example_user", "content": "New synergies will help drive top-line growth."}],
             [{"role": "user", "content": [{"type": "text", "text": "part one "}, {"type": "text", "text": "two"}]}],
             [{"role": "system", "content": "<|endoftext|> is text here"}]]
    for m in cases:
        assert chat_prompt_tokens(m) == fake_prompt_tokens(m), m


def test_usage_equals_what_the_server_billed_under_faults_retries_and_hedging():
    """Every answer received is counted once, as billed: retried requests (500s and disconnects
    are not billed, an invalid answer is), hedged ones (the loser is cancelled, so only what
    arrived counts: `billed_delivered`), chat and embeddings, per stage."""
    stats = LLMStats()
    with FakeOpenAIServer(FakeConfig(latency_s=0.005, per_item_latency_s=0.02, seed=7)) as srv:

        async def main():
            async with client_for(srv.base_url, stats) as c:
                for i in range(25):  # latencies for the adaptive deadline and hedging
                    await c.embed("embed-warm", [f"warm {i}"], f"warm {i}")
                srv.configure(p_500=0.1, p_disconnect=0.05, p_malformed=0.05, p_hang=0.05)
                await asyncio.gather(*(c.embed("embed-x", texts(i, 1 + i % 8), f"batch {i}") for i in range(60)),
                                     *(c.chat("summarize", "entity_summary", messages(i), f"item {i}")
                                       for i in range(60)))
                # slow requests with slots idle: each is hedged after 2 x p95 (< 0.4 s); the first answer
                # wins, the loser is cancelled before it arrives
                srv.configure(p_500=0.0, p_disconnect=0.0, p_malformed=0.0, p_hang=0.0, latency_s=0.8)
                for i in range(3):
                    await c.embed("embed-x", [f"slow {i}"], f"slow {i}")
                    await c.chat("summarize", "entity_summary", messages(100 + i), f"slow {i}")

        asyncio.run(main())
        billing = settled_billing(srv)
    ours = totals(stats)
    delivered = billing["billed_delivered"]
    assert stats.get("embed-x").retry_reasons["hedge"] >= 3, stats.get("embed-x").retry_reasons
    assert stats.get("summarize").retry_reasons["hedge"] >= 3, stats.get("summarize").retry_reasons
    assert sum(stats.get(s).retries for s in ("embed-x", "summarize")) > 10
    assert ours["counted"] == 0
    assert (ours["requests"], ours["prompt_tokens"], ours["completion_tokens"]) == (
        delivered["requests"], delivered["prompt_tokens"], delivered["completion_tokens"])
    chat = billing["by_endpoint"]["chat"]["billed_delivered"]
    summarize = stats.usage_by_stage()["summarize"]
    assert (summarize.answers, summarize.prompt_tokens, summarize.completion_tokens) == (
        chat["requests"], chat["prompt_tokens"], chat["completion_tokens"])


def test_a_server_without_usage_gets_our_count_marked_as_counted():
    stats = LLMStats()
    with FakeOpenAIServer(FakeConfig(usage=False)) as srv:

        async def main():
            async with client_for(srv.base_url, stats) as c:
                await c.embed("embed", texts(1), "batch")
                await c.chat("summarize", "entity_summary", messages(1), "item")

        asyncio.run(main())
        billed = srv.stats()["billing"]["by_endpoint"]
    emb, chat = stats.usage_by_stage()["embed"], stats.usage_by_stage()["summarize"]
    assert (emb.counted, chat.counted) == (1, 1)
    assert emb.embedding_tokens == billed["embeddings"]["billed_total"]["prompt_tokens"]
    assert chat.prompt_tokens == billed["chat"]["billed_total"]["prompt_tokens"]
    # the completion is counted on the validated answer, re-serialized: close to, not exactly, the bill
    assert chat.completion_tokens == pytest.approx(billed["chat"]["billed_total"]["completion_tokens"], rel=0.2)


def test_an_answer_is_stored_with_its_usage_and_a_cache_hit_costs_nothing(tmp_path):
    stats = LLMStats()
    cache = AnswerCache(tmp_path / "answers.sqlite")
    with FakeOpenAIServer(FakeConfig()) as srv:

        async def main():
            for _ in range(2):
                async with client_for(srv.base_url, stats, cache) as c:
                    await c.chat("summarize", "entity_summary", messages(3), "item")

        asyncio.run(main())
        billed = srv.stats()["billing"]["billed_total"]
    settings = LLMSettings(provider="openai", api_base=srv.base_url)
    key = chat_answer_key(settings, "entity_summary", messages(3))
    assert cache.usage_many([key]) == {key: (billed["prompt_tokens"], billed["completion_tokens"])}
    assert billed["requests"] == 1 and stats.usage_by_stage()["summarize"].answers == 1
    assert stats.get("summarize").cache_hits == 1


def test_an_answer_cache_made_before_usage_was_stored_is_migrated_in_place(tmp_path):
    path = tmp_path / "answers.sqlite"
    old = sqlite3.connect(path)
    old.execute("CREATE TABLE answers (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    old.execute("INSERT INTO answers VALUES ('k-old', 'an old answer')")
    old.commit()
    old.close()
    cache = AnswerCache(path)
    assert cache.get("k-old") == "an old answer"
    assert cache.usage_many(["k-old"]) == {"k-old": (None, None)}
    cache.put("k-new", "a new answer", 120, 30)
    cache.close()
    again = AnswerCache(path)  # a second open finds the columns there
    assert again.usage_many(["k-new", "k-old"]) == {"k-new": (120, 30), "k-old": (None, None)}
    again.close()


def test_the_spend_gate_stops_sending_just_below_the_budget_and_refuses_the_rest():
    """Requests wait for those in flight to settle when they do not fit; the run stops within
    the budget, and every request not sent is refused with a message naming the budget."""
    stats = LLMStats()
    budget = 6000
    gate = SpendGate(budget, None, None)
    with FakeOpenAIServer(FakeConfig(latency_s=0.01)) as srv:

        async def main():
            async with client_for(srv.base_url, stats, gate=gate) as c:
                return await asyncio.gather(*(c.chat("summarize", "entity_summary", messages(i), f"item {i}")
                                              for i in range(200)), return_exceptions=True)

        results = asyncio.run(main())
        billed = srv.stats()["billing"]["billed_total"]
    refused = [r for r in results if isinstance(r, ItemFailedError)]
    assert refused and all(isinstance(r, NotSentOverBudget) for r in refused)
    assert "llm.max_run_tokens 6,000" in str(refused[0])
    assert gate.spent_tokens == billed["total_tokens"]
    assert 0.85 * budget <= billed["total_tokens"] <= budget, billed
    assert billed["requests"] + len(refused) == 200
    assert gate.exhausted


def test_a_cost_budget_is_held_at_the_prices_set():
    prices = TokenPrices(prompt=1.0, completion=4.0, embedding=0.1)
    gate = SpendGate(None, 0.004, prices)
    with FakeOpenAIServer(FakeConfig(latency_s=0.01)) as srv:

        async def main():
            async with client_for(srv.base_url, LLMStats(), gate=gate) as c:
                return await asyncio.gather(*(c.chat("summarize", "entity_summary", messages(i), f"item {i}")
                                              for i in range(200)), return_exceptions=True)

        asyncio.run(main())
        billed = srv.stats()["billing"]["billed_total"]
    cost = (billed["prompt_tokens"] * 1.0 + billed["completion_tokens"] * 4.0) / 1e6
    assert gate.spent_usd == pytest.approx(cost)
    assert 0.85 * 0.004 <= cost <= 0.004


def test_prices_and_budgets_are_not_settings_a_run_is_compared_by():
    """A raised budget or a new price is not a change of the index: the next run's delta stays
    "no changes" and no stage is recomputed for it."""
    from graphrag_flow.config import Settings

    base = Settings(llm=LLMSettings(provider="openai", api_base="http://x/v1"))
    priced = Settings(llm=LLMSettings(provider="openai", api_base="http://x/v1", max_run_tokens=1000,
                                      max_run_cost_usd=2.5,
                                      price_per_million_tokens=TokenPrices(prompt=1, completion=2, embedding=0.1)))
    assert base.fingerprint() == priced.fingerprint()
    changed = Settings(llm=LLMSettings(provider="openai", api_base="http://x/v1", temperature=0.5))
    assert changed.fingerprint() != base.fingerprint()


def test_cost_is_null_without_prices_and_zero_for_a_run_that_sent_nothing_at_known_prices():
    from graphrag_flow.llm.stats import StageUsage
    from graphrag_flow.usage import run_usage

    sent = {"extract": StageUsage(answers=2, prompt_tokens=1_000_000, completion_tokens=500_000)}
    prices = TokenPrices(prompt=0.4, completion=1.6, embedding=0.02)
    assert run_usage(sent, None)["cost_usd"] is None
    assert run_usage(sent, prices)["cost_usd"] == pytest.approx(0.4 + 0.8)
    nothing = run_usage({}, prices, ["extract", "embed-text_unit_text"])
    assert nothing["cost_usd"] == 0.0 and nothing["stages"]["extract"]["cost_usd"] == 0.0
    assert run_usage({}, None, ["extract"])["stages"]["extract"]["cost_usd"] is None


def test_check_shows_prices_and_budget_and_warns_of_a_cost_budget_without_prices():
    from graphrag_flow.budget import spending_report
    from graphrag_flow.config import Settings

    def report(**llm):
        return spending_report(Settings(llm=LLMSettings(provider="openai", api_base="http://x/v1", **llm)))

    lines, warnings = report(price_per_million_tokens=TokenPrices(prompt=0.4, completion=1.6, embedding=0.02),
                             max_run_cost_usd=5)
    assert lines == ["prices per million tokens: prompt $0.4, completion $1.6, embedding $0.02 "
                     "(llm.price_per_million_tokens)", "budget per run: $5 (llm.max_run_cost_usd)"]
    assert warnings == []
    lines, warnings = report(max_run_cost_usd=5, max_run_tokens=1_000_000)
    assert lines[0].startswith("prices: not set") and "1,000,000 tokens" in lines[1]
    assert len(warnings) == 1 and "llm.max_run_cost_usd is set but llm.price_per_million_tokens is not" in warnings[0]
