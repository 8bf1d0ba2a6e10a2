"""What one attempt came to, by the error table the client implements.

| what happens | outcome |
| --- | --- |
| 200 with the answer asked for | the parsed answer |
| 200 with another body (not JSON, short, invalid) | `Retryable("invalid_answer")` |
| connection reset, refused, server disconnected, cut body | `Retryable("disconnect")` |
| connect timeout, `llm.request_timeout_s` reached, 408 | `Retryable("timeout")` |
| the adaptive deadline reached (graphrag_flow/llm/deadlines.py) | `Retryable("deadline")` |
| 429 | `Retryable("rate_limit")`, waiting its `Retry-After` when it gives one |
| 429 "Request too large" (the request alone exceeds the per-minute limit) | `BadRequest`: no wait helps, the item fails |
| 409, 500 and up | `Retryable("server_error")` |
| 401, 403 | `FatalLLMError`: the key is rejected, the run stops, naming the settings |
| 404 | `FatalLLMError`: the model or `llm.api_base` is wrong, naming the setting |
| an invalid `llm.api_base` | `FatalLLMError` |
| any other 4xx | `BadRequest`: the caller falls back (json_object), splits (context length) or fails the item |

The transport rows are raised where the socket fails (graphrag_flow/llm/transport.py), the
status rows here (`status_failure`); graphrag_flow/llm/retry.py decides what a `Retryable`
costs. Every message is passed through the caller's `scrub` first: a server or proxy may echo
the API key back.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, Callable

import orjson
from multidict import CIMultiDictProxy

from graphrag_flow.errors import FatalLLMError

#: A Retry-After longer than this is capped (a misbehaving proxy must not park the run).
MAX_RETRY_AFTER_S = 300.0
RETRYABLE_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})


class Retryable(Exception):
    """A failed attempt the error table says to retry; `wait` overrides the backoff."""

    def __init__(self, kind: str, reason: str, wait: float | None = None):
        super().__init__(reason)
        self.kind, self.reason, self.wait = kind, reason, wait


class BadAnswer(Exception):
    """A 200 whose body is not the answer asked for (not JSON, short, invalid): retried."""


class BadRequest(Exception):
    """A 4xx that no retry fixes; the caller decides (fallback, split, or fail the item)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


@dataclass(frozen=True)
class Reply:
    """One HTTP response, read whole (the connection is back in the pool by then)."""

    status: int
    headers: CIMultiDictProxy[str]
    body: bytes

    def json(self) -> Any:
        """Raises ValueError when the body is not JSON. orjson, not json: the floats of an
        embedding answer are parsed on the event loop, and orjson parses them several times
        faster (docs/llm-client.md)."""
        return orjson.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


def status_failure(reply: Reply, shown_base: str, model_setting: tuple[str, str] | None,
                   scrub: Callable[[str], str], key_sent: bool = True) -> Exception:
    """The error table's outcome of a non-200 reply, to raise.

    `model_setting` (setting, model) names what a 404 points to; None for GET /models,
    whose 404 can only mean a wrong `llm.api_base`. `key_sent` tells a 401 to a request without
    a key (none was set: a local server needs none, a hosted API does) from a rejected key.
    """
    status = reply.status
    message = server_message(reply, scrub)
    if status == 401 and not key_sent:
        return FatalLLMError(f"no API key set (llm.api_key, llm.api_key_secret or OPENAI_API_KEY), and {shown_base} "
                             f"requires one (HTTP 401)")
    if status in (401, 403):
        return FatalLLMError(f"API key rejected by {shown_base}; set llm.api_key, llm.api_key_secret or "
                             f"OPENAI_API_KEY (HTTP {status})")
    if status == 404:
        if model_setting is None:
            return FatalLLMError(f"{shown_base} answered 404 to GET /models: check the setting llm.api_base "
                                 f"(it usually ends in /v1). Server said: {message}")
        setting, model = model_setting
        return FatalLLMError(f"{shown_base} answered 404 for model '{model}' (setting {setting}): the model "
                             f"is not served there, or the setting llm.api_base is wrong (it usually ends in /v1). "
                             f"Server said: {message}")
    if status == 429:
        if says_request_too_large(message):  # larger than the whole per-minute limit: no wait helps
            return BadRequest(status, message)
        return Retryable("rate_limit", f"rate limited (429): {message}", retry_after(reply))
    if status in RETRYABLE_STATUS or status >= 500:
        kind = "timeout" if status == 408 else "server_error"
        return Retryable(kind, f"server error {status}: {message}")
    return BadRequest(status, message)


def server_message(reply: Reply, scrub: Callable[[str], str]) -> str:
    """The server's own error message (OpenAI shape, else the body's start), scrubbed."""
    try:
        payload = reply.json()
        error = payload.get("error") if isinstance(payload, dict) else None
        if isinstance(error, dict) and error.get("message"):
            text = str(error["message"])
        elif isinstance(error, str):
            text = error
        elif isinstance(payload, dict) and payload.get("message"):  # some proxies
            text = str(payload["message"])
        else:
            text = reply.text
    except ValueError:
        text = reply.text
    return scrub(" ".join(text.split())[:500]) or f"HTTP {reply.status}"


def retry_after(reply: Reply) -> float | None:
    """Seconds from `retry-after-ms` or `Retry-After` (seconds or an HTTP date); None if absent
    or unreadable. Capped at MAX_RETRY_AFTER_S, with up to 10% jitter on top."""
    headers = reply.headers
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
    # Never below what the server asked: a burst of 429s must not come back in one instant.
    return min(MAX_RETRY_AFTER_S, max(0.0, value)) * random.uniform(1.0, 1.1)


def says_json_schema_unsupported(message: str) -> bool:
    """A 400 that refuses response_format json_schema: the client falls back to json_object."""
    m = message.lower()
    return "json_schema" in m or "response_format" in m or "structured output" in m


def says_request_too_large(message: str) -> bool:
    """A 429 for a request that alone exceeds the per-minute token limit (OpenAI: "Request too
    large for MODEL ... on tokens per min (TPM): Limit N, Requested M"): the item fails."""
    return "request too large" in message.lower()


def says_context_length(message: str) -> bool:
    """A 400 that says the input is longer than the model takes: the client splits or cuts it."""
    m = message.lower()
    if "context" in m and ("length" in m or "window" in m):
        return True
    if "too many tokens" in m or "input is too long" in m:
        return True
    return "token" in m and any(w in m for w in ("maximum", "exceed", "less than", "too long"))
