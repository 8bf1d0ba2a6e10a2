"""The client's rules one by one: retry waits, the error table, Retry-After, the adaptive
deadline, hedging, and reading answers.

tests/test_llm_client.py checks them end to end against the fake server; these pin down each
rule's numbers and messages, which a run only shows when a provider misbehaves.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from graphrag_flow.config import LLMSettings
from graphrag_flow.errors import FatalLLMError
from graphrag_flow.llm.deadlines import adaptive_deadline, p95
from graphrag_flow.llm.hedging import hedge_delay, hedged
from graphrag_flow.llm.limiter import RequestLimiter
from graphrag_flow.llm.outcomes import (
    MAX_RETRY_AFTER_S,
    BadAnswer,
    BadRequest,
    Reply,
    Retryable,
    retry_after,
    says_context_length,
    says_json_schema_unsupported,
    server_message,
    status_failure,
)
from graphrag_flow.llm.parsing import parse_chat, parse_models, strip_fences
from graphrag_flow.llm.retry import Backoff, Budget, RequestRetries, request_budget
from graphrag_flow.llm.schemas import EntitySummary
from graphrag_flow.llm.stats import LLMStats
from graphrag_flow.llm.structured import chat_body, strict_schema

KEY = "sk-rules-SECRET-0123456789"
BASE = "http://llm.example/v1"


def reply(status: int = 200, body: object = b"", **headers: str) -> Reply:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    h = CIMultiDict({k.replace("_", "-"): v for k, v in headers.items()})
    return Reply(status, CIMultiDictProxy(h), raw)


def scrub(text: str) -> str:
    return text.replace(KEY, "***")


def budget(retries: int = 6, timeout_s: float = 60.0) -> Budget:
    return Budget(retries, timeout_s, f"llm.request_timeout_s = {timeout_s:g} s")


# --------------------------------------------------------------------------- retry waits


def waits(failures: list[Retryable], backoff: Backoff = Backoff(1.0, 100.0), retries: int = 10) -> list[float | None]:
    state = RequestRetries(budget(retries), backoff)
    return [state.after(f) for f in failures]


def test_backoff_grows_with_the_failures_of_one_kind_not_with_every_attempt():
    # A disconnect, a 429 without Retry-After, then two 500s: the first 500 waits like a first
    # failure (1 s x 0.5-1), the second like a second (2 s x 0.5-1). Counted per attempt, the
    # fourth failure would wait 8 s x 0.5-1.
    got = waits([Retryable("disconnect", "r"), Retryable("rate_limit", "r"), Retryable("server_error", "r"),
                 Retryable("server_error", "r")])
    assert got[0] <= 0.1
    assert 0.5 <= got[1] <= 1.0 and 0.5 <= got[2] <= 1.0
    assert 1.0 <= got[3] <= 2.0


@pytest.mark.parametrize("kind", ["disconnect", "deadline"])
def test_the_first_retry_after_a_disconnect_or_a_hang_is_quick_and_the_second_backs_off(kind):
    for _ in range(50):
        first, second = waits([Retryable(kind, "r"), Retryable(kind, "r")])
        assert 0.0 <= first <= 0.1
        assert 1.0 <= second <= 2.0


@pytest.mark.parametrize("kind", ["timeout", "server_error", "invalid_answer", "rate_limit"])
def test_other_failures_back_off_from_the_first_retry(kind):
    for _ in range(50):
        assert 0.5 <= waits([Retryable(kind, "r")])[0] <= 1.0


def test_retry_after_sets_the_wait_whatever_the_count():
    got = waits([Retryable("rate_limit", "r")] * 4 + [Retryable("rate_limit", "r", wait=7.0)])
    assert got[4] == 7.0


def test_backoff_is_capped_and_jittered_below_its_ceiling():
    backoff = Backoff(0.5, 20.0)
    samples = [backoff.exponential(12) for _ in range(200)]
    assert all(10.0 <= s <= 20.0 for s in samples)
    assert len(set(samples)) > 100  # random: a burst of failures does not come back at once


def test_the_budget_gives_up_after_its_retries_and_counts_deadlines():
    state = RequestRetries(budget(retries=2), Backoff(0.01, 0.02))
    assert state.after(Retryable("deadline", "r")) is not None
    assert state.after(Retryable("deadline", "r")) is not None
    assert state.after(Retryable("deadline", "r")) is None  # the third failure: three attempts made
    assert state.retries == 2 and state.deadline_hits == 3


def test_no_retries_means_one_attempt():
    state = RequestRetries(budget(retries=0), Backoff())
    assert state.after(Retryable("disconnect", "r")) is None and state.retries == 0


def test_the_per_attempt_limit_names_what_sets_it():
    settings = LLMSettings(provider="openai", api_base=BASE, request_timeout_s=10)
    assert request_budget(settings, 1) == Budget(1, 10.0, "llm.request_timeout_s = 10 s")
    assert request_budget(settings, 1, 4.0, "`graphrag-flow check`") == Budget(
        1, 4.0, "the 4 s limit of `graphrag-flow check` (llm.request_timeout_s is 10 s)")
    assert request_budget(settings, 1, 30.0, "a cap above the setting").timeout_s == 10.0


# --------------------------------------------------------------------------- Retry-After


def test_retry_after_in_seconds_milliseconds_and_http_dates():
    assert 1.5 <= retry_after(reply(429, retry_after_ms="1500")) <= 1.65
    assert 2.0 <= retry_after(reply(429, retry_after="2")) <= 2.2
    assert 0.25 <= retry_after(reply(429, retry_after=" 0.25 ")) <= 0.275
    # retry-after-ms wins; an unreadable one falls back to Retry-After
    assert 0.1 <= retry_after(reply(429, retry_after_ms="100", retry_after="9")) <= 0.11
    assert 3.0 <= retry_after(reply(429, retry_after_ms="soon", retry_after="3")) <= 3.3
    when = datetime.now(timezone.utc) + timedelta(seconds=30)
    assert 28.0 <= retry_after(reply(429, retry_after=format_datetime(when, usegmt=True))) <= 33.0
    past = datetime.now(timezone.utc) - timedelta(seconds=30)
    assert retry_after(reply(429, retry_after=format_datetime(past, usegmt=True))) == 0.0


@pytest.mark.parametrize("headers", [{}, {"retry_after": "soon"}, {"retry_after": "nan"}, {"retry_after": "inf"},
                                     {"retry_after_ms": "-inf"}, {"retry_after": ""}])
def test_a_missing_or_unreadable_retry_after_leaves_the_backoff_to_decide(headers):
    assert retry_after(reply(429, **headers)) is None


def test_a_huge_or_negative_retry_after_is_bounded():
    assert MAX_RETRY_AFTER_S <= retry_after(reply(429, retry_after="86400")) <= MAX_RETRY_AFTER_S * 1.1
    assert retry_after(reply(429, retry_after="-5")) == 0.0


# --------------------------------------------------------------------------- the error table


def test_the_error_table_by_status():
    def outcome(status: int, body: object = None, setting: tuple[str, str] | None = ("llm.chat_model", "m")):
        return status_failure(reply(status, body if body is not None else {"error": {"message": "nope"}}), BASE,
                              setting, scrub)

    for status in (401, 403):
        err = outcome(status)
        assert isinstance(err, FatalLLMError)
        assert str(err) == (f"API key rejected by {BASE}; set llm.api_key, llm.api_key_secret or OPENAI_API_KEY "
                            f"(HTTP {status})")
    err = outcome(404)
    assert isinstance(err, FatalLLMError) and "model 'm' (setting llm.chat_model)" in str(err)
    assert "llm.api_base" in str(err) and "Server said: nope" in str(err)
    err = outcome(404, setting=None)
    assert isinstance(err, FatalLLMError) and "404 to GET /models: check the setting llm.api_base" in str(err)
    err = status_failure(reply(429, {"error": "slow down"}, retry_after="2"), BASE, None, scrub)
    assert isinstance(err, Retryable) and err.kind == "rate_limit" and 2.0 <= err.wait <= 2.2
    assert err.reason == "rate limited (429): slow down"
    assert outcome(408).kind == "timeout"
    for status in (409, 500, 502, 503, 504, 529):
        err = outcome(status)
        assert isinstance(err, Retryable) and err.kind == "server_error" and err.wait is None
        assert err.reason == f"server error {status}: nope"
    for status in (400, 413, 422):
        err = outcome(status)
        assert isinstance(err, BadRequest) and (err.status, err.message) == (status, "nope")


@pytest.mark.parametrize("body,message", [
    ({"error": {"message": "model   overloaded\n try later"}}, "model overloaded try later"),
    ({"error": "plain string"}, "plain string"),
    ({"message": "from a proxy"}, "from a proxy"),
    (b"<html>Bad gateway</html>", "<html>Bad gateway</html>"),
    (b"", "HTTP 502"),
    ({"error": {"message": f"bad key {KEY}"}}, "bad key ***"),
    (f"upstream said {KEY}".encode(), "upstream said ***"),
])
def test_the_servers_message_is_read_in_its_shapes_and_scrubbed(body, message):
    assert server_message(reply(502, body), scrub) == message


def test_the_servers_message_is_cut_to_500_characters():
    assert len(server_message(reply(500, {"error": {"message": "x" * 5000}}), scrub)) == 500


@pytest.mark.parametrize("message", [
    "This model's maximum context length is 8192 tokens, however you requested 9000 tokens",
    "Input is too long for requested model.",
    "too many tokens in input",
    "The input token count (9000) exceeds the maximum number of tokens allowed (8192).",
    "input must have less than 512 tokens",
    "context window exceeded",
])
def test_context_length_messages_are_recognised(message):
    assert says_context_length(message)
    assert not says_json_schema_unsupported(message)


@pytest.mark.parametrize("message", [
    "response_format json_schema is not supported by this model",
    "Invalid parameter: 'response_format' of type 'json_schema' is not supported with this model.",
    "This model does not support structured outputs",
])
def test_json_schema_refusals_are_recognised(message):
    assert says_json_schema_unsupported(message)
    assert not says_context_length(message)


def test_other_400s_are_neither():
    for message in ("messages must be non-empty", "temperature must be at most 2", "invalid model"):
        assert not says_context_length(message) and not says_json_schema_unsupported(message)


# --------------------------------------------------------------------------- the adaptive deadline


def test_p95_waits_for_20_samples_and_takes_the_nearest_rank():
    assert p95([0.1] * 19) is None
    assert p95([float(i) for i in range(20, 0, -1)]) == 19.0  # ceil(0.95 x 20) = 19th of 1..20
    assert p95([float(i) for i in range(1, 101)]) == 95.0


def test_the_adaptive_deadline_is_four_p95_with_a_floor_doubled_per_deadline_hit():
    b = budget(timeout_s=60.0)
    assert adaptive_deadline("chat", None, 0, b) is None
    assert adaptive_deadline("chat", 0.05, 0, b)[0] == 0.5  # the floor
    assert adaptive_deadline("chat", 0.2, 0, b)[0] == pytest.approx(0.8)
    assert adaptive_deadline("chat", 0.2, 2, b)[0] == pytest.approx(3.2)
    assert adaptive_deadline("chat", 2.0, 3, b) is None  # 64 s: the setting's 60 s applies instead
    assert adaptive_deadline("chat", 15.0, 0, b) is None  # exactly the limit: the setting names it


def test_the_adaptive_deadline_says_how_it_was_derived():
    _, why = adaptive_deadline("embeddings", 0.2, 1, budget(timeout_s=5.0))
    assert why == ("the adaptive deadline, max(4 x 0.20 s, the p95 latency of embeddings requests in this run, "
                   "0.5 s), doubled 1 time(s) for this request's earlier deadlines; llm.request_timeout_s = 5 s is "
                   "the most a request may take")


# --------------------------------------------------------------------------- hedging


def test_a_request_is_hedged_after_two_p95_but_not_before_a_quarter_second():
    assert hedge_delay(None) is None
    assert hedge_delay(0.05) == 0.25
    assert hedge_delay(0.3) == pytest.approx(0.6)


def hedge_run(first: str, second: str, idle_slots: bool = True) -> tuple[object, list[str], dict]:
    """`hedged` with two scripted attempts: 'ok:<s>' answers after s seconds, 'fatal', 'retry'
    or 'hang'. Returns the outcome, the attempts started, and the stats' hedges."""
    started: list[str] = []

    async def main():
        limiter = RequestLimiter(2)
        stats = LLMStats()
        holders = []
        if not idle_slots:  # another request waits for a slot: a hedge would take it
            gate = asyncio.Event()

            async def hold():
                async with limiter.slot():
                    await gate.wait()

            holders = [asyncio.create_task(hold()) for _ in range(3)]
            await asyncio.sleep(0)
        scripts = iter([first, second])

        async def attempt(tag: str, on_wire: asyncio.Event | None = None):
            script = next(scripts)
            started.append(script)
            if on_wire is not None:
                on_wire.set()
            if script == "hang":
                await asyncio.sleep(10)
            if script == "fatal":
                raise FatalLLMError("key rejected")
            if script == "retry":
                await asyncio.sleep(0.1)
                raise Retryable("disconnect", "gone")
            await asyncio.sleep(float(script.split(":")[1]))
            return f"{tag}:{script}"

        try:
            result = await hedged(attempt, ("req",), 0.05, limiter, stats, "s")
        except Exception as exc:  # noqa: BLE001
            result = exc
        for h in holders:
            h.cancel()
        return result, dict(stats.get("s").retry_reasons)

    result, reasons = asyncio.run(main())
    return result, started, reasons


def test_the_first_answer_wins_and_the_hedge_is_counted():
    result, started, reasons = hedge_run("hang", "ok:0")
    assert result == "req:ok:0" and started == ["hang", "ok:0"] and reasons == {"hedge": 1}


def test_a_fast_answer_is_not_hedged():
    result, started, reasons = hedge_run("ok:0", "ok:0")
    assert result == "req:ok:0" and started == ["ok:0"] and reasons == {}


def test_a_fatal_error_of_either_attempt_ends_the_request_at_once():
    result, _, _ = hedge_run("hang", "fatal")
    assert isinstance(result, FatalLLMError)


def test_a_retryable_failure_waits_for_the_other_attempt():
    result, started, _ = hedge_run("ok:0.2", "retry")
    assert result == "req:ok:0.2" and started == ["ok:0.2", "retry"]
    result, started, _ = hedge_run("retry", "retry")  # both failed: the request's retry rules take over
    assert isinstance(result, Retryable) and started == ["retry", "retry"]


def test_no_hedge_takes_a_slot_another_request_waits_for():
    result, started, reasons = hedge_run("ok:0.2", "ok:0", idle_slots=False)
    assert result == "req:ok:0.2" and started == ["ok:0.2"] and reasons == {}


# --------------------------------------------------------------------------- reading answers


def chat_reply(content: object, **message: object) -> Reply:
    return reply(200, {"choices": [{"message": {"role": "assistant", "content": content, **message}}]})


@pytest.mark.parametrize("text,inner", [
    ('```json\n{"description": "d"}\n```', '{"description": "d"}'),
    ('```\n{"description": "d"}```', '{"description": "d"}'),
    ('  {"description": "d"}  ', '{"description": "d"}'),
    ("```", ""),
])
def test_fences_are_stripped(text, inner):
    assert strip_fences(text).strip() == inner


def test_a_chat_answer_in_a_fence_or_in_content_parts_is_read():
    fenced = chat_reply('```json\n{"description": "merged"}\n```')
    assert parse_chat(fenced, EntitySummary, "entity_summary") == EntitySummary(description="merged")
    parts = chat_reply([{"type": "text", "text": '{"description": '}, {"type": "text", "text": '"parts"}'}])
    assert parse_chat(parts, EntitySummary, "entity_summary") == EntitySummary(description="parts")


@pytest.mark.parametrize("bad,problem", [
    (reply(200, b"not json"), "the server's answer is not JSON"),
    (reply(200, {"choices": []}), "the answer has no choices[0].message"),
    (chat_reply(""), "the answer is empty"),
    (chat_reply(None, refusal="I cannot help with that"), "the model refused: I cannot help with that"),
    (chat_reply('{"summary": "x"}'), "the answer does not match schema entity_summary: description: Field required"),
])
def test_a_chat_answer_that_is_not_the_answer_fails_the_attempt(bad, problem):
    with pytest.raises(BadAnswer) as err:
        parse_chat(bad, EntitySummary, "entity_summary")
    assert str(err.value) == problem


def test_model_lists():
    assert parse_models(reply(200, {"data": [{"id": "a"}, {"id": "b"}]})) == ["a", "b"]
    with pytest.raises(BadAnswer, match="did not answer a list of models"):
        parse_models(reply(200, {"models": []}))


# --------------------------------------------------------------------------- structured requests


def test_json_object_mode_carries_the_schema_in_the_system_prompt():
    settings = LLMSettings(provider="openai", api_base=BASE)
    messages = [{"role": "system", "content": "Merge.  "}, {"role": "user", "content": "x"}]
    strict = chat_body(settings, "entity_summary", messages, json_object=False)
    assert strict["response_format"] == {"type": "json_schema", "json_schema": {
        "name": "entity_summary", "strict": True, "schema": strict_schema("entity_summary")}}
    assert strict["messages"] is messages
    loose = chat_body(settings, "entity_summary", messages, json_object=True)
    assert loose["response_format"] == {"type": "json_object"}
    system = loose["messages"][0]["content"]
    assert system.startswith("Merge.\n\nJSON schema name: entity_summary\n")
    assert json.dumps(strict_schema("entity_summary")) in system
    assert messages[0]["content"] == "Merge.  "  # the caller's messages are not changed
    no_system = chat_body(settings, "entity_summary", messages[1:], json_object=True)["messages"]
    assert [m["role"] for m in no_system] == ["system", "user"]


# --------------------------------------------------------------------------- the key


def test_the_transport_shows_no_key_and_cannot_be_pickled():
    import pickle

    from graphrag_flow.llm.transport import Transport

    transport = Transport(LLMSettings(provider="openai", api_base=BASE), KEY, RequestLimiter(1), LLMStats(), budget(),
                          Backoff())
    assert KEY not in repr(transport) and KEY not in str(vars(transport))
    assert repr(transport) == f"Transport(api_base='{BASE}', api_key=<set>)"
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(transport)
    assert transport.scrub(f"the server said {KEY}") == "the server said ***"
