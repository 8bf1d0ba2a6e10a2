"""The provider's rate limits, held for the whole run: `llm.tokens_per_minute` and
`llm.requests_per_minute` over a sliding minute, beside `llm.max_concurrency`.

Hosted providers (OpenAI, Azure OpenAI) count a request against their per-minute limits when it
arrives, for the tokens it *may* use: its prompt plus its `max_tokens` (or an estimate of the
answer), not the usage billed afterwards. `RateBudget` counts each attempt the same way before it
leaves (`request_tokens`: the prompt by OpenAI's per-message rule with the run's tokenizer, plus
`llm.expected_completion_tokens` for a chat request) and holds it back until the last minute has
room for it, so a server enforcing the same limits has nothing to refuse:

- An attempt counts from when it leaves until a minute plus `MARGIN_S` later: the server's minute
  starts when the request arrives, a little after it left, so ours must end a little later.
- Attempts go in arrival order (one waits at a time, the others behind it): a large request is
  never starved by small ones slipping past it.
- The server's own `x-ratelimit-limit-*`, `x-ratelimit-remaining-*` and `x-ratelimit-reset-*`
  headers correct the count when they come (`observe`): a lower limit than the settings say is
  adopted, and usage the server sees beyond ours (another process on the same key, a completion
  counted higher than our estimate) is held as extra usage until the server's reset.
- A 429 with a `Retry-After` pauses every attempt of the run until then (`pause`), not only the
  one refused.

The waits are counted per cause (`waits`): the run summary says how long the run was held back
by each budget. A run without a rate budget has no `RateBudget` and pays nothing for it: no
token counting, no header parsing.

Belongs to the event loop that first uses it (its lock is that loop's), like the limiter.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
import re
import time
from functools import lru_cache
from typing import Any, Callable, Mapping, NamedTuple

from graphrag_flow.config import LLMSettings
from graphrag_flow.llm.tokens import count_tokens

log = logging.getLogger(__name__)

#: The providers' window: their limits are per minute.
WINDOW_S = 60.0
#: How much longer than the server's minute an attempt counts here (see the module docstring).
MARGIN_S = 1.0
#: OpenAI's chat prompt rule: tokens per message on top of its role and content, and the reply's priming.
TOKENS_PER_MESSAGE = 3
REPLY_PRIMING = 3
#: The causes of a wait, as the summary names them.
CAUSES = ("tokens_per_minute", "requests_per_minute", "retry_after")

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_S = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


class Sent(NamedTuple):
    """When an attempt left, and how much had left the window by then."""

    at: float
    expired_tokens: int
    expired_requests: int


class RateBudget:
    """Tokens and requests per minute for every request of a run (see the module docstring)."""

    def __init__(self, tokens_per_minute: int | None, requests_per_minute: int | None, *,
                 window_s: float = WINDOW_S, margin_s: float = MARGIN_S,
                 clock: Callable[[], float] = time.monotonic):
        self.tokens_per_minute = tokens_per_minute
        self.requests_per_minute = requests_per_minute
        self._hold_s = window_s + margin_s
        self._clock = clock
        #: (expires, tokens) of what counts now: our attempts, and usage only the server saw.
        self._tokens: list[tuple[float, int]] = []
        self._token_sum = 0
        #: expiry of each request that counts now (attempts, and requests only the server saw).
        self._requests: list[float] = []
        self._paused_until = 0.0
        #: Tokens and requests that have left the window so far (what `Sent` compares with).
        self._expired_tokens = 0
        self._expired_requests = 0
        self._lock: asyncio.Lock | None = None
        #: Seconds the run was held back, per cause (one attempt waits at a time: wall time).
        self.waits = {cause: 0.0 for cause in CAUSES}
        #: Waits, per cause (an attempt may wait more than once, e.g. for tokens, then for a pause).
        self.delayed = {cause: 0 for cause in CAUSES}
        self.attempts = 0

    @classmethod
    def from_settings(cls, settings: LLMSettings) -> "RateBudget | None":
        """The run's budget, or None when neither limit is set (the hot path then skips it)."""
        if settings.tokens_per_minute is None and settings.requests_per_minute is None:
            return None
        return cls(settings.tokens_per_minute, settings.requests_per_minute)

    # ---- before an attempt leaves

    async def acquire(self, tokens: int) -> Sent:
        """Wait until the last minute has room for one more request of `tokens`, then count it.
        What it returns goes back to `observe` with the reply's headers."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:  # arrival order: the head waits, the others queue behind it
            while True:
                now = self._clock()
                wait, cause = self._wait(now, tokens)
                if wait <= 0:
                    break
                self.delayed[cause] += 1
                started = self._clock()
                await asyncio.sleep(wait)
                self.waits[cause] += self._clock() - started
            expires = now + self._hold_s
            heapq.heappush(self._tokens, (expires, tokens))
            self._token_sum += tokens
            heapq.heappush(self._requests, expires)
            self.attempts += 1
            return Sent(now, self._expired_tokens, self._expired_requests)

    def _wait(self, now: float, tokens: int) -> tuple[float, str]:
        """Seconds until the request fits, and what it waits for (0: it fits now)."""
        self._expire(now)
        if self._paused_until > now:
            return self._paused_until - now, "retry_after"
        rpm = self.requests_per_minute
        if rpm is not None and len(self._requests) >= rpm:
            # room once the (len - rpm + 1) earliest have expired
            return heapq.nsmallest(len(self._requests) - rpm + 1, self._requests)[-1] - now, "requests_per_minute"
        tpm = self.tokens_per_minute
        # A request larger than the whole budget goes alone, into an empty minute (the server
        # then says it is too large, which names the request).
        need = min(tokens, tpm) if tpm is not None else 0
        if tpm is not None and self._token_sum + need > tpm:
            left = self._token_sum
            for expires, n in sorted(self._tokens):
                left -= n
                if left + need <= tpm:
                    return expires - now, "tokens_per_minute"
        return 0.0, ""

    def _expire(self, now: float) -> None:
        while self._tokens and self._tokens[0][0] <= now:
            n = heapq.heappop(self._tokens)[1]
            self._token_sum -= n
            self._expired_tokens += n
        while self._requests and self._requests[0] <= now:
            heapq.heappop(self._requests)
            self._expired_requests += 1

    # ---- what the server says

    def observe(self, headers: Mapping[str, str], sent: Sent) -> None:
        """Correct the count from the `x-ratelimit-*` headers of the reply to the attempt `sent`
        (absent headers change nothing).

        The server wrote them when the attempt arrived, maybe long ago: what has left our window
        since it was sent still counted then, and the server's reset runs from then.
        """
        self._expire(self._clock())
        tokens = self._unseen(headers, "tokens", "tokens_per_minute",
                              self._token_sum + self._expired_tokens - sent.expired_tokens, sent.at)
        if tokens is not None:
            heapq.heappush(self._tokens, (tokens[1], tokens[0]))
            self._token_sum += tokens[0]
        requests = self._unseen(headers, "requests", "requests_per_minute",
                                len(self._requests) + self._expired_requests - sent.expired_requests, sent.at)
        if requests is not None:
            for _ in range(requests[0]):
                heapq.heappush(self._requests, requests[1])

    def _unseen(self, headers: Mapping[str, str], kind: str, setting: str, ours: int,
                since: float) -> tuple[int, float] | None:
        """What the server counts of `kind` beyond `ours`, and until when (None: nothing more);
        a lower limit than the setting's is adopted."""
        view = _server_view(headers, kind)
        budget = getattr(self, setting)
        if view is None or budget is None:
            return None
        limit, remaining, reset_s = view
        if limit is not None and limit < budget:
            log.warning("the server's limit is %d %s per minute, below llm.%s (%d): pacing to the server's",
                        limit, kind, setting, budget)
            setattr(self, setting, limit)
            budget = limit
        unseen = budget - remaining - ours
        if unseen <= 0:
            return None
        expires = since + (reset_s if reset_s is not None else self._hold_s)
        return (unseen, expires) if expires > self._clock() else None

    def pause(self, seconds: float) -> None:
        """A 429 asked to wait: no attempt of the run leaves before then."""
        self._paused_until = max(self._paused_until, self._clock() + seconds)

    def summary(self) -> dict[str, Any]:
        """For the run summary: the limits and the seconds the run waited on each."""
        return {"tokens_per_minute": self.tokens_per_minute, "requests_per_minute": self.requests_per_minute,
                "attempts": self.attempts, "waited_s": {c: round(s, 2) for c, s in self.waits.items()},
                "delayed": dict(self.delayed)}


def _server_view(headers: Mapping[str, str], kind: str) -> tuple[int | None, int, float | None] | None:
    """(limit, remaining, seconds to reset) of one kind from the headers; None without `remaining`."""
    remaining = _int(headers.get(f"x-ratelimit-remaining-{kind}"))
    if remaining is None:
        return None
    return (_int(headers.get(f"x-ratelimit-limit-{kind}")), remaining,
            parse_duration(headers.get(f"x-ratelimit-reset-{kind}")))


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def parse_duration(text: str | None) -> float | None:
    """OpenAI's reset durations (`6m0s`, `1s`, `20ms`, `8.64s`, `1h2m3s`) in seconds; None if unreadable."""
    if not text:
        return None
    text = text.strip()
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        try:  # a plain number of seconds
            value = float(text)
        except ValueError:
            return None
        return value if math.isfinite(value) and value >= 0 else None
    return sum(float(n) * _UNIT_S[u] for n, u in parts)


# ---- what a request counts for


@lru_cache(maxsize=256)
def _text_tokens(text: str) -> int:
    """Cached: the system prompt of every request of a stage is the same text."""
    return count_tokens(text)


def request_tokens(kind: str, body: dict[str, Any] | None, expected_completion_tokens: int) -> int:
    """What a request counts for against a token budget, as providers count it on arrival.

    CPU-bound (the tokenizer): callers run it in a worker thread.
    """
    if not body or kind not in ("chat", "embeddings"):
        return 0
    if kind == "embeddings":
        inputs = body.get("input") or []
        return sum(_text_tokens(t) if isinstance(t, str) else 0 for t in inputs)
    total = REPLY_PRIMING
    for message in body.get("messages") or []:
        total += TOKENS_PER_MESSAGE
        for key in ("role", "content", "name"):
            value = message.get(key)
            if isinstance(value, list):  # content parts
                value = "".join(p.get("text", "") for p in value if isinstance(p, dict))
            if isinstance(value, str) and value:
                total += _text_tokens(value)
        if message.get("name"):
            total += 1
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    return total + (int(limit) if limit else expected_completion_tokens)
