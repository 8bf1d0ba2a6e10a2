"""What a run's LLM requests cost: tokens per stage and in total, and dollars at the prices set.

The counts are the run's own: answers received in this run, as their servers billed them
(graphrag_flow/llm/stats.py `StageUsage`); cache hits cost nothing and are not counted. The
cost is null when `llm.price_per_million_tokens` is not set, never 0: an unknown price is not
a free one. With prices set, a run that sent nothing (offline, or all answers cached) costs 0.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from graphrag_flow.config import TokenPrices
from graphrag_flow.llm.spend import cost_usd
from graphrag_flow.llm.stats import StageUsage

#: The keys of a usage record (the manifest's `usage` and each of its stages).
USAGE_KEYS = ("requests", "prompt_tokens", "completion_tokens", "embedding_tokens", "cost_usd")


def usage_record(u: StageUsage, prices: TokenPrices | None) -> dict[str, Any]:
    cost = cost_usd(prices, u.prompt_tokens, u.completion_tokens, u.embedding_tokens)
    record = {"requests": u.answers, "prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens,
              "embedding_tokens": u.embedding_tokens, "cost_usd": None if cost is None else round(cost, 6)}
    if u.counted:  # tokens of answers without `usage`: our count, not the provider's bill
        record["counted_requests"] = u.counted
    return record


def run_usage(by_stage: Mapping[str, StageUsage], prices: TokenPrices | None,
              stages: Iterable[str] = ()) -> dict[str, Any]:
    """The manifest's `usage`: totals and `stages` (every stage of `stages`, zeros included,
    and every stage that received an answer)."""
    total = StageUsage()
    for u in by_stage.values():
        total.answers += u.answers
        total.prompt_tokens += u.prompt_tokens
        total.completion_tokens += u.completion_tokens
        total.embedding_tokens += u.embedding_tokens
        total.counted += u.counted
    names = list(dict.fromkeys([*stages, *by_stage]))
    return usage_record(total, prices) | {
        "stages": {name: usage_record(by_stage.get(name, StageUsage()), prices) for name in names}}


def tokens_of(record: Mapping[str, Any]) -> int:
    return int(record["prompt_tokens"]) + int(record["completion_tokens"]) + int(record["embedding_tokens"])


def cost_text(cost: float | None) -> str:
    """A cost as the summary shows it: `-` when prices are not set."""
    return "-" if cost is None else f"${cost:.4f}"
