"""The client for OpenAI-compatible APIs: every chat and embedding request of a run.

What it promises (docs/llm-client.md has the whole contract and the error table):

- Structured chat answers, validated with pydantic against the schema asked for
  (graphrag_flow/llm/schemas.py), in json_schema strict mode, or, when the server refuses
  that, in json_object mode with the schema in the system prompt, for the rest of the run
  (logged once, and a warning in the run summary).
- Every chat answer is looked up in the answer cache before it is asked for, and committed
  to it before it is returned (graphrag_flow/llm/answer_cache.py, cache_batches.py).
- Embedding batches aligned by `data[i].index` and checked (graphrag_flow/llm/parsing.py);
  inputs over `llm.embedding_batch_max_tokens` cut before sending; a batch the model finds
  too long split in halves, and a lone input still too long cut further, with a warning.
- The error table (graphrag_flow/llm/outcomes.py): retry, fail the item, or stop the run.
  A request's attempts, retries, deadlines and hedges are the transport's (transport.py).

This client talks HTTP with aiohttp directly, not through `openai.AsyncOpenAI`: it needs the
raw status, body and `Retry-After` of every attempt and its own retry rules (the SDK's
retries would hide attempts from the run's stats and hold no limiter slot), a hard
per-attempt cap, and float embeddings (the SDK asks for base64 by default).

Use as `async with client:` in the coroutine (event loop) that makes the calls; a client
refuses to be used from another loop or thread, and never creates an event loop.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from contextlib import AsyncExitStack
from typing import Any, Awaitable, Callable

import numpy as np
from pydantic import BaseModel, ValidationError

from graphrag_flow.config import LLMSettings
from graphrag_flow.errors import FatalLLMError, ItemFailedError
from graphrag_flow.llm.answer_cache import AnswerCache
from graphrag_flow.llm.azure import PROBES
from graphrag_flow.llm.cache_batches import BatchedAnswerCache
from graphrag_flow.llm.connections import ConnectionPool
from graphrag_flow.llm.entra import EntraToken
from graphrag_flow.llm.limiter import DEFAULT_PRIORITY, RequestLimiter
from graphrag_flow.llm.outcomes import BadRequest, Reply, says_context_length, says_json_schema_unsupported
from graphrag_flow.llm.pacing import RateBudget
from graphrag_flow.llm.parsing import parse_chat, parse_embeddings, parse_models
from graphrag_flow.llm.retry import Backoff, Budget, request_budget
from graphrag_flow.llm.schemas import ANSWER_MODELS
from graphrag_flow.llm.spend import SpendGate, cost_usd
from graphrag_flow.llm.stats import LLMStats
from graphrag_flow.llm.structured import chat_answer_key, chat_body
from graphrag_flow.llm.tokens import chat_prompt_tokens, count_text_tokens, count_tokens, halve, truncate
from graphrag_flow.llm.transport import Transport

__all__ = ["CHECK_TIMEOUT_S", "OpenAICompatibleClient"]


class _RequestUsage:
    """The meter of one request (its attempts, retries and hedges): what each answer received
    was billed goes to the run's stats and spend gate the moment it arrives."""

    __slots__ = ("stats", "gate", "stage", "embedding", "tokens", "usd", "billed", "missing")

    def __init__(self, stats: LLMStats, gate: SpendGate | None, stage: str, embedding: bool):
        self.stats, self.gate, self.stage, self.embedding = stats, gate, stage, embedding
        self.tokens, self.usd = 0, 0.0
        #: The last answer's billed (prompt, completion): stored with it in the answer cache.
        self.billed: tuple[int, int] | None = None
        self.missing = False  # the last answer carried no usage: counted once the request succeeds

    def __call__(self, usage: tuple[int, int] | None) -> None:
        if usage is None:
            self.missing = True
            return
        self.missing = False
        self.billed = usage
        self.add(*usage, counted=False)

    def add(self, prompt: int, completion: int, counted: bool) -> None:
        p, c, e = (0, 0, prompt) if self.embedding else (prompt, completion, 0)
        self.stats.usage(self.stage, p, c, e, counted)
        self.tokens += prompt + completion
        if self.gate is not None:
            self.gate.spend(p, c, e)
            self.usd += cost_usd(self.gate.prices, p, c, e) or 0.0

log = logging.getLogger(__name__)

#: `check()` must answer in seconds even against a hung server.
CHECK_TIMEOUT_S = 10.0


class OpenAICompatibleClient:
    """Chat and embeddings against one OpenAI-compatible `api_base` (see the module docstring).

    `json_object_mode` starts the client in the json_object fallback (a caller that saw an
    earlier client fall back passes it on, so a run logs the fallback once); read it back
    after use.
    """

    def __init__(
        self,
        settings: LLMSettings,
        api_key: str | None,
        limiter: RequestLimiter,
        stats: LLMStats,
        cache: AnswerCache | None,
        *,
        json_object_mode: bool = False,
        read_cache: bool = True,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 20.0,
        pool: ConnectionPool | None = None,
        priority: int = DEFAULT_PRIORITY,
        timeout_cap: tuple[float, str] | None = None,
        gate: SpendGate | None = None,
        entra: EntraToken | None = None,
        pacer: RateBudget | None = None,
    ):
        """`timeout_cap` (seconds, what sets it): a limit below llm.request_timeout_s for every
        request, e.g. `graphrag-flow check`'s; messages then name it, not the setting. `entra`:
        the run's Microsoft Entra ID token source, with `llm.azure_auth: entra_id`. `pacer`: the
        run's tokens/requests-per-minute budget (graphrag_flow/llm/pacing.py), when one is set."""
        self._settings = settings
        default_budget = request_budget(settings, settings.max_retries, *(timeout_cap or (None,)))
        self._transport = Transport(settings, api_key, limiter, stats, default_budget,
                                    Backoff(backoff_base_s, backoff_max_s), pool=pool, priority=priority,
                                    entra=entra, pacer=pacer)
        self._stats = stats
        #: The run's budget, asked before each request leaves (graphrag_flow/llm/spend.py).
        self._gate = gate if gate is not None and gate.limited else None
        self._cache = cache
        # --full asks again for every answer but still stores each one as it arrives, so a
        # killed rebuild resumes from what it had received.
        self._read_cache = read_cache
        self.json_object_mode = json_object_mode
        #: Chat answers taken out of prose (a server that ignores response_format).
        self.prose_answers = 0
        self._timeout_cap = timeout_cap
        self._embedding_dim: int | None = settings.embedding_dimensions
        self._cache_batches: BatchedAnswerCache | None = None
        #: The transport and the cache's thread while the client is open.
        self._open: AsyncExitStack | None = None

    def __repr__(self) -> str:
        key = "set" if self._transport.has_key else "none"
        return (f"OpenAICompatibleClient(api_base={self._transport.shown_base!r}, "
                f"chat_model={self._settings.chat_model!r}, embedding_model={self._settings.embedding_model!r}, "
                f"api_key=<{key}>)")

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise TypeError("OpenAICompatibleClient cannot be pickled (it holds a secret and belongs to one event loop)")

    # ---- lifetime

    async def __aenter__(self) -> "OpenAICompatibleClient":
        if self._open is not None:
            raise RuntimeError("this client is already open")
        async with AsyncExitStack() as stack:
            # Closed in reverse order: the transport first, which waits for every call still
            # running (and using the cache), then the cache. The answer cache gets its own
            # thread, and the calls waiting at a moment go to it together
            # (graphrag_flow/llm/cache_batches.py): lookups and fsync'd stores must not queue
            # behind LanceDB merges and pandas work in the default pool, nor one by one.
            cache = None
            if self._cache is not None:
                cache = await stack.enter_async_context(BatchedAnswerCache(self._cache))
            await stack.enter_async_context(self._transport)
            self._cache_batches = cache
            self._open = stack.pop_all()
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Wait for every call still running (bounded by its retries and timeouts), then close."""
        stack, self._open = self._open, None
        try:
            if stack is not None:
                await stack.aclose()
        finally:
            self._cache_batches = None

    # ---- chat

    async def chat(self, stage: str, schema_name: str, messages: list[dict], item: str) -> BaseModel:
        """One structured answer, from the answer cache or the server; validated either way."""
        return await self._chat(stage, schema_name, messages, item, self._transport.budget, use_cache=True)

    async def _chat(self, stage: str, schema_name: str, messages: list[dict], item: str, budget: Budget,
                    use_cache: bool) -> BaseModel:
        if schema_name not in ANSWER_MODELS:
            raise ValueError(f"unknown answer schema {schema_name!r}; known: {', '.join(ANSWER_MODELS)}")
        model_cls = ANSWER_MODELS[schema_name]
        s = self._settings
        cache = self._cache_batches if use_cache else None
        async with self._transport.call():
            key = chat_answer_key(s, schema_name, messages)
            if cache is not None and self._read_cache:
                stored = await cache.get(key)
                if stored is not None:
                    try:
                        answer = model_cls.model_validate_json(stored)
                    except ValidationError:
                        answer = None  # an entry from an older schema: ask again, overwrite it
                    if answer is not None:
                        self._stats.cache_hit(stage)
                        self._stats.item(stage)
                        return answer

            meter = _RequestUsage(self._stats, self._gate, stage, embedding=False)

            def parse(response: Reply) -> BaseModel:
                return parse_chat(response, model_cls, schema_name, meter, lambda: self._saw_prose(stage))

            while True:
                json_object = self.json_object_mode
                body = chat_body(s, schema_name, messages, json_object)
                try:
                    answer = await self._send("chat", stage, item, body, "chat/completions", parse, budget,
                                              ("llm.chat_model", s.chat_model), meter,
                                              lambda: sum(len(m.get("content") or "") for m in body["messages"]))
                    break
                except BadRequest as exc:
                    if not json_object and says_json_schema_unsupported(exc.message):
                        self._fall_back_to_json_object(stage, exc.message)
                        continue
                    raise self._rejected(stage, item, exc)
            if meter.missing:  # no `usage` from the server: our own count, marked as counted
                meter.billed = await asyncio.to_thread(
                    lambda: (chat_prompt_tokens(body["messages"]), count_text_tokens(answer.model_dump_json())))
                meter.add(*meter.billed, counted=True)
            if cache is not None:
                await self._store(cache, key, answer.model_dump_json(), meter.billed)
            self._stats.item(stage)
            return answer

    def _saw_prose(self, stage: str) -> None:
        """An answer came as JSON inside prose: the server ignores response_format (said once)."""
        self.prose_answers += 1
        if self.prose_answers == 1:
            note = (f"{self._transport.shown_base} answered JSON inside prose (it ignores response_format); "
                    "the JSON object was taken out of the text and validated against the schema")
            log.warning(note)
            self._stats.warning(stage, note)

    def _fall_back_to_json_object(self, stage: str, message: str) -> None:
        if self.json_object_mode:
            return
        self.json_object_mode = True
        note = (f"{self._transport.shown_base} does not support response_format json_schema ({message[:200]}); "
                "using json_object with the schema in the system prompt for the rest of the run")
        log.warning(note)
        self._stats.warning(stage, note)

    def _send(self, kind: str, stage: str, item: str, body: dict, path: str, parse, budget: Budget,
              model_setting: tuple[str, str], meter: _RequestUsage, size: Callable[[], int]) -> Awaitable[Any]:
        """`Transport.send`, through the spend gate when the run has a budget (a plain function:
        without a budget no coroutine frame is added to the request's path)."""
        if self._gate is None:
            return self._transport.send(kind, stage, item, "POST", path, body, parse, budget, model_setting)
        return self._metered(kind, stage, item, body, path, parse, budget, model_setting, meter, size)

    async def _metered(self, kind: str, stage: str, item: str, body: dict, path: str, parse, budget: Budget,
                       model_setting: tuple[str, str], meter: _RequestUsage, size: Callable[[], int]):
        """`Transport.send` once the spend gate admits the request; `size()`: the request's
        characters, what the gate forecasts its cost from."""
        gate = self._gate
        assert gate is not None
        chars = size()
        try:
            reservation = await gate.admit(kind, chars, item)
        except ItemFailedError:
            self._stats.failure(stage)
            raise
        answered = False
        try:
            result = await self._transport.send(kind, stage, item, "POST", path, body, parse, budget, model_setting)
            answered = True
            return result
        finally:
            gate.settle(reservation, kind, chars, meter.tokens, meter.usd, answered)

    async def _store(self, cache: BatchedAnswerCache, key: str, value: str,
                     usage: tuple[int, int] | None = None) -> None:
        """Committed before the answer is returned (off the loop: it fsyncs)."""
        try:
            await cache.put(key, value, usage)
        except sqlite3.Error as exc:  # a lost cache entry costs one request later, never the answer
            log.warning("could not store an LLM answer in the answer cache: %s", exc)

    def _rejected(self, stage: str, item: str, exc: BadRequest) -> ItemFailedError:
        return self._transport.fail(stage, item, f"the server rejected the request ({exc.status}): {exc.message}")

    # ---- embeddings

    async def embed(self, stage: str, texts: list[str], item: str) -> np.ndarray:
        """Vectors for ONE batch, in input order (plan batches with `plan_batches`)."""
        return await self._embed(stage, texts, item, self._transport.budget)

    async def _embed(self, stage: str, texts: list[str], item: str, budget: Budget) -> np.ndarray:
        if not texts:
            return np.empty((0, self._embedding_dim or 0))
        async with self._transport.call():
            prepared = await self._truncate_inputs(stage, list(texts))
            vectors = await self._embed_batch(stage, prepared, item, budget)
            self._stats.item(stage)
            return vectors

    async def _truncate_inputs(self, stage: str, texts: list[str]) -> list[str]:
        """Cut inputs over `embedding_batch_max_tokens`; a token is at least one UTF-8 byte,
        so short texts skip the tokenizer."""
        limit = self._settings.embedding_batch_max_tokens
        long = [i for i, t in enumerate(texts) if len(t.encode("utf-8")) > limit]
        if not long:
            return texts
        cut = await asyncio.to_thread(lambda: [truncate(texts[i], limit) for i in long])
        out = list(texts)
        n = 0
        for i, (text, was_cut) in zip(long, cut):
            out[i] = text
            n += was_cut
        if n:
            self._stats.truncated(stage, n)
        return out

    async def _embed_batch(self, stage: str, texts: list[str], item: str, budget: Budget) -> np.ndarray:
        """The batch's vectors; a batch the model finds too long is split in halves, and a lone
        input still too long cut to half its tokens until it fits (a warning says so)."""
        try:
            return await self._embed_request(stage, texts, item, budget)
        except BadRequest as exc:
            if not says_context_length(exc.message):
                raise self._rejected(stage, item, exc)
            first_message = exc.message
        if len(texts) > 1:
            # Halves run one after the other: a failing half must not leave its sibling running.
            self._stats.reason(stage, "context_length_split")
            mid = len(texts) // 2
            left = await self._embed_batch(stage, texts[:mid], item, budget)
            return np.concatenate([left, await self._embed_batch(stage, texts[mid:], item, budget)])
        text = texts[0]
        original = await asyncio.to_thread(count_tokens, text)
        while True:
            text, n = await asyncio.to_thread(halve, text)
            if n == 0:
                raise self._transport.fail(stage, item, f"the server rejects even a short input as too long: "
                                                        f"{first_message}")
            self._stats.reason(stage, "context_length_truncate")
            try:
                vectors = await self._embed_request(stage, [text], item, budget)
            except BadRequest as exc:
                if says_context_length(exc.message):
                    continue
                raise self._rejected(stage, item, exc)
            self._stats.warning(stage, f"{item}: an input of {original} tokens exceeded the embedding model's "
                                       f"context length; embedded its first {n} tokens")
            return vectors

    async def _embed_request(self, stage: str, texts: list[str], item: str, budget: Budget) -> np.ndarray:
        s = self._settings
        body: dict[str, Any] = {"model": s.embedding_model, "input": texts, "encoding_format": "float"}
        if s.embedding_dimensions:
            body["dimensions"] = s.embedding_dimensions

        meter = _RequestUsage(self._stats, self._gate, stage, embedding=True)

        def parse(response: Reply) -> np.ndarray:
            return parse_embeddings(response, len(texts), self._embedding_dim, meter)

        vectors = await self._send("embeddings", stage, item, body, "embeddings", parse, budget,
                                   ("llm.embedding_model", s.embedding_model), meter, lambda: sum(map(len, texts)))
        if meter.missing:  # no `usage` from the server: our own count, marked as counted
            meter.add(await asyncio.to_thread(lambda: sum(map(count_text_tokens, texts))), 0, counted=True)
        if self._embedding_dim is None:
            self._embedding_dim = len(vectors[0])  # every later batch must match the first
        return vectors

    # ---- models and check

    async def list_models(self) -> list[str]:
        """Model ids served at `api_base` (GET /models); 401/403/404 raise FatalLLMError."""
        async with self._transport.call():
            try:
                return await self._transport.send("models", "check", "GET /models", "GET", "models", None,
                                                  parse_models, self._transport.budget, None)
            except BadRequest as exc:
                raise FatalLLMError(f"GET {self._transport.shown_base}/models was refused ({exc.status}): "
                                    f"{exc.message} (setting llm.api_base)") from None

    async def probe_deployments(self) -> None:
        """Azure: the route, api-version, credentials and both deployments, proved by a body each
        deployment refuses (graphrag_flow/llm/azure.py `PROBES`): nothing generated or billed.
        401, 403 and 404 raise FatalLLMError naming the setting."""
        s = self._settings
        async with self._transport.call():
            for path, setting in (("chat/completions", ("llm.chat_model", s.chat_model)),
                                  ("embeddings", ("llm.embedding_model", s.embedding_model))):
                try:
                    await self._transport.send("models", "check", f"probe of {setting[0]}", "POST", path,
                                               PROBES[path], lambda reply: None, self._transport.budget, setting)
                except BadRequest:
                    pass  # refused as invalid after every other check passed: what a probe asks for

    async def check(self) -> str:
        """Fail fast: the key works, both models exist and each answers one tiny request. Returns
        the structured-output mode the chat model accepted (`json_schema` or `json_object`), or
        `prose` when it ignored response_format and answered the JSON inside text.

        Short timeout and at most one retry; any failure is a FatalLLMError naming the setting.
        """
        s = self._settings
        base = self._transport.shown_base
        cap_s, cap_name = self._timeout_cap or (CHECK_TIMEOUT_S, "a check request")
        check_budget = request_budget(s, min(s.max_retries, 1), min(cap_s, CHECK_TIMEOUT_S), cap_name)
        if not self._transport.serves("models"):
            await self.probe_deployments()
        else:
            models = await self.list_models()
            for setting, model in (("llm.chat_model", s.chat_model), ("llm.embedding_model", s.embedding_model)):
                if models and model not in models:
                    raise FatalLLMError(f"model '{model}' (setting {setting}) is not served by {base} "
                                        f"(setting llm.api_base); it serves: {', '.join(sorted(models)[:20])}")
        messages = [
            {"role": "system", "content": "Merge the descriptions of one entity into one short description."},
            {"role": "user", "content": "Entity: graphrag-flow\nDescriptions:\n- a tool\n- an indexer"},
        ]
        try:
            await self._chat("check", "entity_summary", messages, "check: chat model", check_budget, use_cache=False)
        except ItemFailedError as exc:
            raise FatalLLMError(f"chat model '{s.chat_model}' (setting llm.chat_model) at {base} did not "
                                f"answer a tiny structured request: {exc.reason}") from None
        try:
            await self._embed("check", ["graphrag-flow check"], "check: embedding model", check_budget)
        except ItemFailedError as exc:
            raise FatalLLMError(f"embedding model '{s.embedding_model}' (setting llm.embedding_model) at "
                                f"{base} did not embed a tiny input: {exc.reason}") from None
        if self.prose_answers:
            return "prose"
        return "json_object" if self.json_object_mode else "json_schema"
