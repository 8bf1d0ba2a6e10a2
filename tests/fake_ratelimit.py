"""Requests- and tokens-per-window limits of the fake OpenAI server (tests/fake_openai.py).

The rules, modelled on what OpenAI and Azure OpenAI document:

- A request is counted when it is admitted, for the tokens it *may* use: its prompt tokens (the
  same count as ``usage.prompt_tokens``) plus its completion allowance, ``max_completion_tokens``
  or else ``max_tokens`` (times ``n``), or, when it gives neither, the ``rate_completion_tokens``
  knob. Embeddings have no completion. OpenAI ("your rate limit is calculated as the maximum of
  max_tokens and the estimated number of tokens based on the character count of your request")
  and Azure ("TPM rate limits are based on the maximum number of tokens that are estimated to be
  processed by a request at the time the request is received ... It is different than the
  token count used for billing") both count this estimate, not the answer's usage.
- The window slides: a request counts for ``rate_window_s`` seconds after its admission. A
  request over ``rpm`` requests or ``tpm`` tokens in the window gets a 429 and is not counted
  itself (a client retrying after ``Retry-After`` gets in); one whose own count exceeds ``tpm``
  can never pass ("Request too large") and gets no ``Retry-After``.
- Every answer carries OpenAI's ``x-ratelimit-*`` headers for the configured limits; the reset
  headers say when the window is back to its initial state (the last admitted request leaves
  it), in OpenAI's duration format (``6m0s``, ``1s``, ``20ms``).
"""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass
from typing import Any


def openai_duration(seconds: float) -> str:
    """A duration as OpenAI's ``x-ratelimit-reset-*`` headers write it: ``20ms``, ``1s``,
    ``8.64s``, ``6m0s``, ``1h2m3s``."""
    ms = math.ceil(round(seconds * 1000, 6)) if seconds > 0 else 0  # never "0s" while something is left
    if ms == 0:
        return "0s"
    if ms < 1000:
        return f"{ms}ms"
    minutes, rest_ms = divmod(ms, 60_000)
    hours, minutes = divmod(minutes, 60)
    secs = f"{rest_ms / 1000:.3f}".rstrip("0").rstrip(".")
    if not hours and not minutes:
        return f"{secs}s"
    return (f"{hours}h" if hours else "") + f"{minutes}m{secs}s"


def completion_allowance(body: dict[str, Any], default: int) -> int:
    """The completion tokens a chat request is counted for (see the module docstring)."""
    limit = body.get("max_completion_tokens")
    if limit is None:
        limit = body.get("max_tokens")
    try:
        n = max(1, int(body.get("n") or 1))
        return max(0, int(limit if limit is not None else default)) * n
    except (TypeError, ValueError):  # the real API answers such a request with a 400; counted as unset here
        return int(default)


@dataclass(frozen=True)
class Refusal:
    """Why a request was refused: ``kind`` is ``requests``, ``tokens`` or ``too_large``."""

    kind: str
    limit: int
    used: int
    requested: int
    retry_after_s: float | None


class SlidingWindow:
    """Admitted requests (time, counted tokens) of the last window, and the peaks seen.

    Not thread-safe: the server calls it from its event loop, under its lock.
    """

    def __init__(self) -> None:
        self.events: collections.deque[tuple[float, int]] = collections.deque()
        self.tokens = 0
        self.served: collections.deque[tuple[float, int]] = collections.deque()
        self.served_tokens = 0
        self.stats = {"rejected": 0, "rejected_requests": 0, "rejected_tokens": 0, "rejected_too_large": 0,
                      "max_window_requests": 0, "max_window_tokens_counted": 0, "max_window_tokens_served": 0}

    def _prune(self, now: float, window: float) -> None:
        events = self.events
        while events and events[0][0] <= now - window:
            self.tokens -= events.popleft()[1]

    def admit(self, now: float, tokens: int, rpm: int | None, tpm: int | None, window: float) -> Refusal | None:
        """Count the request in, or say why not (and count the refusal)."""
        self._prune(now, window)
        refusal = None
        if tpm is not None and tokens > tpm:
            refusal = Refusal("too_large", tpm, self.tokens, tokens, None)
        elif rpm is not None and len(self.events) + 1 > rpm:
            # the request fits once the (len - rpm + 1)-th oldest has left the window
            t = self.events[len(self.events) - rpm][0]
            refusal = Refusal("requests", rpm, len(self.events), 1, t + window - now)
        elif tpm is not None and self.tokens + tokens > tpm:
            left, wait_until = self.tokens, now
            for t, n in self.events:
                left -= n
                wait_until = t + window
                if left + tokens <= tpm:
                    break
            refusal = Refusal("tokens", tpm, self.tokens, tokens, wait_until - now)
        if refusal is not None:
            self.stats["rejected"] += 1
            self.stats["rejected_" + refusal.kind] += 1
            return refusal
        self.events.append((now, tokens))
        self.tokens += tokens
        self.stats["max_window_requests"] = max(self.stats["max_window_requests"], len(self.events))
        self.stats["max_window_tokens_counted"] = max(self.stats["max_window_tokens_counted"], self.tokens)
        return None

    def serve(self, now: float, tokens: int, window: float) -> None:
        """An answer of ``tokens`` billed tokens was served: keeps the peak per window."""
        served = self.served
        while served and served[0][0] <= now - window:
            self.served_tokens -= served.popleft()[1]
        served.append((now, tokens))
        self.served_tokens += tokens
        self.stats["max_window_tokens_served"] = max(self.stats["max_window_tokens_served"], self.served_tokens)

    def headers(self, now: float, rpm: int | None, tpm: int | None, window: float) -> dict[str, str]:
        """OpenAI's ``x-ratelimit-*`` headers for the configured limits, as of ``now``."""
        self._prune(now, window)
        reset = openai_duration(self.events[-1][0] + window - now) if self.events else "0s"
        out = {}
        if rpm is not None:
            out["x-ratelimit-limit-requests"] = str(rpm)
            out["x-ratelimit-remaining-requests"] = str(max(0, rpm - len(self.events)))
            out["x-ratelimit-reset-requests"] = reset
        if tpm is not None:
            out["x-ratelimit-limit-tokens"] = str(tpm)
            out["x-ratelimit-remaining-tokens"] = str(max(0, tpm - self.tokens))
            out["x-ratelimit-reset-tokens"] = reset
        return out


def retry_after_headers(seconds: float, azure: bool) -> dict[str, str]:
    """``Retry-After`` in whole seconds (rounded up, at least 1); Azure adds ``retry-after-ms``."""
    out = {"Retry-After": str(max(1, math.ceil(seconds)))}
    if azure:
        out["retry-after-ms"] = str(max(1, math.ceil(seconds * 1000)))
    return out
