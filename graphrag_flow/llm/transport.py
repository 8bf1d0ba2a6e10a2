"""One request on the wire: the session, the attempts and their retries.

`Transport` owns what a request needs below the OpenAI API: the aiohttp session on the
run's keep-alive connections (graphrag_flow/llm/connections.py), a slot of the run's limiter
while an attempt is on the wire (never during a backoff sleep), the attempt's hard deadline,
the error table (graphrag_flow/llm/outcomes.py), the retry rules (retry.py), the adaptive
deadline (deadlines.py) and hedging (hedging.py). The client (client.py) builds the requests
and reads the answers; it passes a `parse` function that turns a 200 into the answer.

Where requests go and how they carry the key is the provider's (graphrag_flow/llm/endpoints.py:
an OpenAI-compatible API, or Azure OpenAI's deployments with its own error bodies, azure.py).

A transport belongs to the event loop that entered it (`async with`); it refuses calls from
another loop or thread, and never creates a loop. The API key is sent only as a session
header, an Entra ID token (entra.py) only as a request header: neither enters a message, a log
line or `repr()`, and every message is scrubbed of both and of any user:password@ in the URL.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any, AsyncIterator, Callable, TypeVar

import aiohttp
from pydantic import SecretStr

from graphrag_flow.config import OPENAI_API_BASE, LLMSettings
from graphrag_flow.errors import FatalLLMError, ItemFailedError, SettingsError
from graphrag_flow.llm.azure import azure_failure
from graphrag_flow.llm.connections import ConnectionPool, proxy_for
from graphrag_flow.llm.deadlines import adaptive_deadline, p95
from graphrag_flow.llm.endpoints import key_header, request_urls
from graphrag_flow.llm.entra import EntraToken
from graphrag_flow.llm.hedging import hedge_delay, hedged
from graphrag_flow.llm.limiter import DEFAULT_PRIORITY, RequestLimiter
from graphrag_flow.llm.outcomes import BadAnswer, Reply, Retryable, status_failure
from graphrag_flow.llm.pacing import RateBudget, request_tokens
from graphrag_flow.llm.retry import Backoff, Budget, RequestRetries
from graphrag_flow.llm.stats import LLMStats
from graphrag_flow.urls import safe_url, scrub_url, url_userinfo

log = logging.getLogger(__name__)
T = TypeVar("T")

_JSON = {"Content-Type": "application/json"}


class Transport:
    """Sends requests to one OpenAI-compatible `api_base` (see the module docstring)."""

    def __init__(self, settings: LLMSettings, api_key: str | None, limiter: RequestLimiter, stats: LLMStats,
                 budget: Budget, backoff: Backoff, *, pool: ConnectionPool | None = None,
                 priority: int = DEFAULT_PRIORITY, entra: EntraToken | None = None,
                 pacer: RateBudget | None = None):
        base_url = settings.require_base_url()
        if not api_key and entra is None and base_url == OPENAI_API_BASE:
            raise SettingsError(f"no API key set (llm.api_key, llm.api_key_secret or OPENAI_API_KEY); "
                                f"{OPENAI_API_BASE} requires one")
        self._settings = settings
        self._api_base = base_url.rstrip("/")
        #: What messages show: without any user:password@ the URL may carry.
        self.shown_base = safe_url(self._api_base)
        if api_key and url_userinfo(self._api_base):
            # aiohttp sends a URL's user:password as basic auth, in the header the key needs
            raise SettingsError("llm.api_base carries a user:password@ and an API key is set too: a request can "
                                "carry only one of them; remove one")
        # SecretStr: a vars()/debugger dump shows '**********', never the key.
        self._api_key = SecretStr(api_key) if api_key else None
        #: Azure with Microsoft Entra ID: a token per request instead of the key.
        self._entra = entra if settings.uses_entra_id else None
        if self._entra is None and settings.uses_entra_id:
            raise SettingsError("llm.azure_auth is entra_id but no Entra ID credential was given to the client")
        self._failure = (functools.partial(azure_failure, settings=settings) if settings.provider == "azure"
                         else status_failure)
        self._limiter = limiter
        #: The run's tokens/requests-per-minute budget (pacing.py); None: no request is counted.
        self._pacer = pacer
        #: This transport's place in the queue for the run's limiter (lower goes first).
        self._priority = priority
        self._stats = stats
        #: The budget of a request that names none.
        self.budget = budget
        self._backoff = backoff
        self._urls = request_urls(settings, self._api_base)
        self._session: aiohttp.ClientSession | None = None
        #: The run's connections when given (and open on this loop), else the transport's own.
        self._shared_pool = pool
        self._own_pool: AsyncExitStack | None = None
        self._proxy: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._active = 0
        self._idle: asyncio.Event | None = None
        self._closing = False

    def __repr__(self) -> str:
        return f"Transport(api_base={self.shown_base!r}, api_key=<{'set' if self.has_key else 'none'}>)"

    def __reduce__(self) -> Any:
        raise TypeError("a Transport cannot be pickled (it holds a secret and belongs to one event loop)")

    # ---- lifetime

    async def __aenter__(self) -> "Transport":
        if self._session is not None:
            raise RuntimeError("this client is already open")
        n = self._settings.max_concurrency
        rt = self._settings.request_timeout_s
        headers = {"User-Agent": "graphrag-flow"}
        if self._api_key is not None and self._entra is None:
            # Session headers appear in no exception or repr; errors carry only the URL.
            headers.update(key_header(self._settings, self._api_key.get_secret_value()))
        self._loop = asyncio.get_running_loop()
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False
        pool = self._shared_pool
        if pool is None or not pool.is_open or pool.loop is not self._loop:
            self._own_pool = AsyncExitStack()
            pool = await self._own_pool.enter_async_context(ConnectionPool(n))
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

    @asynccontextmanager
    async def call(self) -> AsyncIterator[None]:
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

    # ---- one request: attempts until one succeeds

    async def send(self, kind: str, stage: str, item: str, method: str, path: str, body: dict | None,
                   parse: Callable[[Reply], T], budget: Budget, model_setting: tuple[str, str] | None) -> T:
        """Attempts until one succeeds; raises ItemFailedError, FatalLLMError or BadRequest.

        `kind` (chat, embeddings, models) keys the latencies the deadline and hedging read;
        `model_setting` (setting, model) is what a 404 names.
        """
        retries = RequestRetries(budget, self._backoff)
        # Serialized once for every attempt (retries and hedges send the same bytes).
        data = None if body is None else json.dumps(body, ensure_ascii=False, separators=(",", ":"),
                                                     allow_nan=False).encode("utf-8")
        # Counted once for every attempt, in a thread (the tokenizer), only under a rate budget.
        tokens = 0
        if self._pacer is not None and kind in ("chat", "embeddings"):
            tokens = await asyncio.to_thread(request_tokens, kind, body, self._settings.expected_completion_tokens)
            tpm = self._pacer.tokens_per_minute
            if tpm is not None and tokens > tpm:  # the provider would refuse it as too large, after a minute's wait
                raise self.fail(stage, item, f"the request counts {tokens} tokens, more than the {tpm} tokens per "
                                             f"minute of llm.tokens_per_minute (or the server's limit): the provider "
                                             f"refuses it as too large; shorten the input or raise the limit")
        while True:
            self._stats.request(stage)
            # Hedged (graphrag_flow/llm/hedging.py) only when that can apply: hedging on and a
            # p95 known. Otherwise one plain attempt, with no task of its own.
            after = hedge_delay(p95(self._stats.latencies(kind))) if self._settings.hedge_slow_requests else None
            try:
                if after is None:
                    return await self._attempt(kind, method, path, data, parse, budget, retries.deadline_hits,
                                               model_setting, tokens)
                return await hedged(self._attempt, (kind, method, path, data, parse, budget, retries.deadline_hits,
                                                    model_setting, tokens), after, self._limiter, self._stats, stage)
            except Retryable as exc:
                failure = exc
            delay = retries.after(failure)
            if delay is None:
                raise self.fail(stage, item, f"{failure.reason} (gave up after {retries.retries + 1} attempt(s))")
            self._stats.retry(stage, failure.kind)
            log.debug("%s %s: %s; retry %d/%d in %.2fs", stage, item, failure.reason, retries.retries,
                      budget.retries, delay)
            await asyncio.sleep(delay)

    async def _attempt(self, kind: str, method: str, path: str, data: bytes | None,
                       parse: Callable[[Reply], T], budget: Budget, deadline_hits: int,
                       model_setting: tuple[str, str] | None, tokens: int = 0,
                       on_wire: asyncio.Event | None = None) -> T:
        session = self._session
        assert session is not None
        limit, why = budget.timeout_s, budget.timeout_source
        try:
            async with self._limiter.slot(self._priority):
                sent = None
                if self._pacer is not None:
                    # In the slot: the limiter's priorities decide who queues for the budget first.
                    sent = await self._pacer.acquire(tokens)
                if on_wire is not None:
                    on_wire.set()
                # Decided once on the wire (after the wait for a slot), from the latest samples.
                adaptive = adaptive_deadline(kind, p95(self._stats.latencies(kind)), deadline_hits, budget)
                if adaptive is not None:
                    limit, why = adaptive
                headers = _JSON if data is not None else None
                if self._entra is not None:  # fetched (or refreshed) before the clock starts
                    headers = {**(headers or {}), "Authorization": await self._entra.bearer()}
                started = time.monotonic()
                async with asyncio.timeout(limit):
                    async with session.request(method, self._urls[path], data=data, proxy=self._proxy,
                                               headers=headers, allow_redirects=False) as raw:
                        response = Reply(raw.status, raw.headers, await raw.read())
                latency = time.monotonic() - started
                if sent is not None:
                    self._pacer.observe(response.headers, sent)
        # The error table's transport rows (graphrag_flow/llm/outcomes.py).
        except aiohttp.ConnectionTimeoutError:  # aiohttp's connect timeout: no socket yet
            raise Retryable("timeout", f"could not connect to {self.shown_base} within "
                                       f"{self._connect_timeout_s():g} s") from None
        except TimeoutError:  # the attempt's deadline (or aiohttp's read timeout, the same limit)
            kind_ = "deadline" if limit < budget.timeout_s else "timeout"
            raise Retryable(kind_, f"no answer within {limit:.2f} s: {why}") from None
        except aiohttp.InvalidURL:
            raise FatalLLMError(f"{self.shown_base} is not a valid URL (setting llm.api_base)") from None
        except (aiohttp.ClientError, OSError) as exc:  # reset, refused, server disconnected, cut body
            raise Retryable("disconnect", f"connection failed ({type(exc).__name__}: {self.scrub(str(exc))})") from None

        if response.status == 200:
            try:
                result = parse(response)
            except BadAnswer as exc:
                raise Retryable("invalid_answer", self.scrub(str(exc))) from None
            self._stats.latency(kind, latency)  # shared by the run's transports (see LLMStats)
            return result
        # a user:password@ in api_base is a credential too (sent as basic auth): its 401 is a rejection
        key_sent = self.has_key or bool(url_userinfo(self._api_base))
        failure = self._failure(response, self.shown_base, model_setting, self.scrub, key_sent=key_sent)
        if self._pacer is not None and isinstance(failure, Retryable) and failure.kind == "rate_limit" and failure.wait:
            self._pacer.pause(failure.wait)  # the others would only be refused too
        raise failure

    def _connect_timeout_s(self) -> float:
        return min(10.0, self.budget.timeout_s)

    # ---- messages

    @property
    def has_key(self) -> bool:
        """Whether requests carry an API key or a token (what `repr()` may say about it)."""
        return self._api_key is not None or self._entra is not None

    def serves(self, path: str) -> bool:
        """Whether the provider has this endpoint (Azure serves no `models`)."""
        return path in self._urls

    def fail(self, stage: str, item: str, reason: str) -> ItemFailedError:
        """The item's failure, counted, its reason scrubbed."""
        self._stats.failure(stage)
        return ItemFailedError(item, self.scrub(reason))

    def scrub(self, text: str) -> str:
        """Belt and braces: a server or proxy might echo the key back, and an error of aiohttp's
        may show the URL with its user:password@."""
        text = scrub_url(text, self._api_base)
        secrets = self._entra.secrets() if self._entra is not None else []
        if self._api_key is not None:
            secrets.append(self._api_key.get_secret_value())
        for secret in secrets:
            if secret and len(secret) >= 4:
                text = text.replace(secret, "***")
        return text
