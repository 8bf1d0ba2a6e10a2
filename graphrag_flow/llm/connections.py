"""Keep-alive connections to the LLM server, kept for a whole run on the run's event loop.

Every stage run still opens its own client (`async with`, closed only after its requests
finish), but the sockets underneath belong to the run: they outlive each stage's client, so
the next stage's first round does not open `max_concurrency` new connections while the run
waits. Per stage, a fresh pool meant ~290 connects and closes for ~420 requests on peps-mini
at 64 in flight (each stage's first round on new sockets, a connect and transport set-up of
~1 ms of loop CPU each, at the very moment the limit sat idle between stages).

A pool belongs to the event loop that opened it, like a client: a client on another loop
(a stage run in another thread) gets its own pools instead.
"""

from __future__ import annotations

import asyncio
import math
import ssl
from functools import lru_cache

import httpx

#: Connections per httpx pool. httpcore scans every connection of its pool on each request
#: (a readability syscall and getpeername per idle connection), so one pool of 64 spent more
#: CPU choosing a connection than sending (benchmarks/llm_throughput.py, py-spy): the run
#: spreads `max_concurrency` over pools of at most this many connections.
CONNECTIONS_PER_POOL = 8


@lru_cache(maxsize=1)
def ssl_context() -> ssl.SSLContext:
    """httpx's default context (certifi or SSL_CERT_FILE/SSL_CERT_DIR), built once per process.

    Loading the CA bundle takes 50-150 ms of CPU: built per client on the event loop it
    stalled every request in flight (measured by the heartbeat test), so pools build it in a
    thread once and every later pool reuses it (an SSLContext is thread-safe).
    """
    return httpx.create_ssl_context()


class _Borrowed(httpx.AsyncBaseTransport):
    """A run's transport lent to one stage client: closing the client leaves it open."""

    def __init__(self, inner: httpx.AsyncHTTPTransport):
        self._inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        """The pools' owner closes the connections, after every client is done."""


class ConnectionPools:
    """`max_concurrency` connections in pools of at most CONNECTIONS_PER_POOL, and how many
    requests each pool carries now (so a request goes to the least busy one).

    Use as `async with ConnectionPools(n):` in the coroutine that outlives every client
    that borrows them; the run's limiter keeps the requests in flight within the sum of the
    pools, so a request never waits inside httpx for a connection.
    """

    def __init__(self, max_concurrency: int):
        self.max_concurrency = max_concurrency
        self._transports: list[httpx.AsyncHTTPTransport] | None = None
        self.load: list[int] = []
        self.loop: asyncio.AbstractEventLoop | None = None

    @property
    def is_open(self) -> bool:
        return self._transports is not None

    async def __aenter__(self) -> "ConnectionPools":
        if self._transports is not None:
            raise RuntimeError("these connection pools are already open")
        verify = await asyncio.to_thread(ssl_context)
        n = max(1, self.max_concurrency)
        pools = math.ceil(n / CONNECTIONS_PER_POOL)
        sizes = [n // pools + (1 if i < n % pools else 0) for i in range(pools)]
        self._transports = [
            httpx.AsyncHTTPTransport(
                verify=verify, limits=httpx.Limits(max_connections=size, max_keepalive_connections=size)
            )
            for size in sizes
        ]
        self.load = [0] * pools
        self.loop = asyncio.get_running_loop()
        return self

    async def __aexit__(self, *exc: object) -> None:
        transports, self._transports = self._transports, None
        for transport in transports or ():
            await asyncio.shield(transport.aclose())

    def lend(self) -> list[httpx.AsyncBaseTransport]:
        """One transport per pool for a client on this loop, which it may close freely."""
        if self._transports is None:
            raise RuntimeError("open the connection pools with `async with` before lending them")
        if asyncio.get_running_loop() is not self.loop:
            raise RuntimeError("connection pools belong to the event loop that opened them")
        return [_Borrowed(t) for t in self._transports]

    def least_busy(self) -> int:
        return min(range(len(self.load)), key=self.load.__getitem__)
