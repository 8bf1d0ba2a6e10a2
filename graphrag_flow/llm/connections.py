"""Keep-alive connections to the LLM server, kept for a whole run on the run's event loop.

Every stage run still opens its own session (`async with`, closed only after its requests
finish), but the sockets underneath belong to the run: they outlive each stage's session,
so the next stage's first round does not open `max_concurrency` new connections (a connect
and, against a real provider, a TLS handshake each) at the very moment the run waits for it.

aiohttp rather than httpx: the event loop's CPU per request is what limits a run at 32-64
requests in flight, and aiohttp's is a fraction of httpx's (a C HTTP parser and an O(1)
pool, where httpx runs anyio cancel scopes, h11's pure-Python parser and scans its pool per
request). docs/llm-client.md has the figures.

A pool belongs to the event loop that opened it, like a session: a client on another loop
(a stage run in another thread) gets its own instead.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import urllib.request
from functools import lru_cache
from typing import Any

import aiohttp

#: Idle keep-alive connections are closed after this long (aiohttp's default is 15 s); a
#: stage hand-off never leaves them idle that long, and a closed one is simply reopened.
KEEPALIVE_S = 30.0


@lru_cache(maxsize=1)
def ssl_context() -> ssl.SSLContext:
    """certifi's CA bundle, or the files SSL_CERT_FILE / SSL_CERT_DIR name (as httpx and
    requests do), built once per process.

    Loading the CA bundle is slow (docs/llm-client.md has the figure), and on the event loop
    it would stall every request in flight (the flow's heartbeat test catches that), so the
    pool builds it in a thread once and every later pool reuses it (an SSLContext is
    thread-safe).
    """
    if os.environ.get("SSL_CERT_FILE") or os.environ.get("SSL_CERT_DIR"):
        return ssl.create_default_context()  # OpenSSL reads both variables itself
    import certifi

    return ssl.create_default_context(cafile=certifi.where())


def proxy_for(url: str) -> str | None:
    """The proxy the environment names for `url` (HTTPS_PROXY, HTTP_PROXY, NO_PROXY), if any.

    Looked up once per session, not per request: aiohttp's trust_env reads the environment
    and ~/.netrc again for every request, on the event loop.
    """
    scheme, _, rest = url.partition("://")
    host = rest.split("/", 1)[0].rsplit("@", 1)[-1]
    if urllib.request.proxy_bypass(host.split(":", 1)[0]):
        return None
    return urllib.request.getproxies().get(scheme.lower())


class ConnectionPool:
    """At most `max_concurrency` keep-alive connections (an aiohttp connector), lent to the
    sessions of one event loop.

    Use as `async with ConnectionPool(n):` in the coroutine that outlives every session that
    borrows it; the run's limiter keeps the requests in flight within `n`, so a request never
    waits inside aiohttp for a connection.
    """

    def __init__(self, max_concurrency: int):
        self.max_concurrency = max(1, max_concurrency)
        self._connector: aiohttp.TCPConnector | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    @property
    def is_open(self) -> bool:
        return self._connector is not None

    async def __aenter__(self) -> "ConnectionPool":
        if self._connector is not None:
            raise RuntimeError("this connection pool is already open")
        context = await asyncio.to_thread(ssl_context)
        self._connector = aiohttp.TCPConnector(
            limit=self.max_concurrency, limit_per_host=0, ssl=context, keepalive_timeout=KEEPALIVE_S
        )
        self.loop = asyncio.get_running_loop()
        return self

    async def __aexit__(self, *exc: object) -> None:
        connector, self._connector = self._connector, None
        if connector is not None:
            await asyncio.shield(connector.close())

    def session(self, **options: Any) -> aiohttp.ClientSession:
        """A session on these connections; closing it leaves them open for the next one."""
        if self._connector is None:
            raise RuntimeError("open the connection pool with `async with` before lending it")
        if asyncio.get_running_loop() is not self.loop:
            raise RuntimeError("a connection pool belongs to the event loop that opened it")
        return aiohttp.ClientSession(connector=self._connector, connector_owner=False, **options)
