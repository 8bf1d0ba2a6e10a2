"""The run's spend gate: a request that would cross the run's budget is not sent.

The client asks the gate before each request leaves (`admit`, next to the limiter's slot: the
limiter says when a request may go, the gate whether it may go at all), and tells it what each
answer was billed (`spend`). A request's cost is not known before its answer, so the gate
reserves a forecast for each request in flight: its size times the tokens (and dollars) per
character this run's answers of its kind cost so far, or a pessimistic guess before it has
seen any. When what was spent, plus what is in flight, plus the request's own forecast would
cross `llm.max_run_tokens` or `llm.max_run_cost_usd`, the request waits for requests in flight
to finish (their real cost replaces their forecast); with none left in flight and still no room,
it is refused. Once one is refused, every later one is too (the run stops sending); the requests
in flight finish and their answers are kept in the answer cache, so a re-run pays for nothing
twice.

Pure bookkeeping on the event loop: a few float additions per request; a request waits only
near the budget.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from graphrag_flow.config import TokenPrices
from graphrag_flow.errors import ItemFailedError

#: Before a kind has answers to learn from: tokens per character of a request, pessimistic (a
#: request's prompt is ~0.25 tokens per character of English text; chat answers add up to
#: about as much again).
FIRST_TOKENS_PER_CHAR = {"chat": 0.6, "embeddings": 0.35}
#: Answers of a kind after which its own ratio replaces the guess.
LEARN_AFTER = 8
#: Margin on the learned ratio: answers vary around the average.
LEARNED_MARGIN = 1.15


class NotSentOverBudget(ItemFailedError):
    """An item whose request the spend gate refused: the run's budget would be crossed."""


def cost_usd(prices: TokenPrices | None, prompt: int, completion: int, embedding: int) -> float | None:
    """Dollars for tokens at `prices` (per million); None when prices are not set, never 0."""
    if prices is None:
        return None
    return (prompt * prices.prompt + completion * prices.completion + embedding * prices.embedding) / 1e6


@dataclass
class _Kind:
    chars: int = 0
    tokens: int = 0
    cost: float = 0.0
    answers: int = 0


class SpendGate:
    """Budget of one run (or of one flow run across its budget approvals: `raise_budget`).

    `spent_tokens`/`spent_usd` count from the gate's creation; `spent_before` carries what an
    earlier attempt of the same flow run spent.
    """

    def __init__(self, max_tokens: int | None, max_cost_usd: float | None, prices: TokenPrices | None):
        self.max_tokens = max_tokens
        #: A cost budget without prices cannot be held: ignored (`check` and the run warn).
        self.max_cost_usd = max_cost_usd if prices is not None else None
        self.prices = prices
        self.spent_tokens = 0
        self.spent_usd = 0.0
        self._reserved_tokens = 0.0
        self._reserved_usd = 0.0
        self._kinds = {"chat": _Kind(), "embeddings": _Kind()}
        #: Requests refused; once one is, the run stops sending.
        self.refused = 0
        self._in_flight = 0
        #: Set (and replaced) whenever a request in flight settles: the waiting ones look again.
        self._settled: asyncio.Event | None = None

    @property
    def limited(self) -> bool:
        return self.max_tokens is not None or self.max_cost_usd is not None

    @property
    def exhausted(self) -> bool:
        return self.refused > 0

    def raise_budget(self, max_tokens: int | None, max_cost_usd: float | None) -> None:
        """A person approved a new budget (counted from the same start): sending may resume."""
        self.max_tokens = max_tokens
        self.max_cost_usd = max_cost_usd if self.prices is not None else None
        self.refused = 0

    def forecast(self, kind: str, chars: int) -> tuple[float, float]:
        """(tokens, dollars) a request of `chars` characters is expected to cost."""
        k = self._kinds[kind]
        if k.answers >= LEARN_AFTER and k.chars:
            tokens = chars * k.tokens / k.chars * LEARNED_MARGIN
            return tokens, chars * k.cost / k.chars * LEARNED_MARGIN
        tokens = chars * FIRST_TOKENS_PER_CHAR[kind]
        if self.prices is None:
            return tokens, 0.0
        # chat: half prompt, half completion
        per = (self.prices.prompt + self.prices.completion) / 2 if kind == "chat" else self.prices.embedding
        return tokens, tokens * per / 1e6

    def _fits(self, tokens: float, usd: float) -> bool:
        if self.max_tokens is not None and self.spent_tokens + self._reserved_tokens + tokens > self.max_tokens:
            return False
        return self.max_cost_usd is None or self.spent_usd + self._reserved_usd + usd <= self.max_cost_usd

    async def admit(self, kind: str, chars: int, item: str) -> tuple[float, float]:
        """The request's reservation, once it fits; raises NotSentOverBudget when it cannot."""
        tokens, usd = self.forecast(kind, chars)
        while not self.exhausted and not self._fits(tokens, usd) and self._in_flight:
            if self._settled is None:
                self._settled = asyncio.Event()
            await self._settled.wait()
            tokens, usd = self.forecast(kind, chars)  # learned from the answers that settled
        if self.exhausted or not self._fits(tokens, usd):
            self.refused += 1
            raise NotSentOverBudget(item, f"not sent: the run's budget would be crossed ({self.describe()})")
        self._reserved_tokens += tokens
        self._reserved_usd += usd
        self._in_flight += 1
        return tokens, usd

    def spend(self, prompt: int, completion: int, embedding: int) -> None:
        """An answer arrived, billed these tokens (retries, hedges and invalid answers included)."""
        self.spent_tokens += prompt + completion + embedding
        self.spent_usd += cost_usd(self.prices, prompt, completion, embedding) or 0.0

    def settle(self, reservation: tuple[float, float], kind: str, chars: int, tokens: int, usd: float,
               answered: bool) -> None:
        """The request is done: its reservation is released, and what its answers cost (`tokens`,
        `usd`, already spent) teaches the forecast of its kind."""
        self._reserved_tokens -= reservation[0]
        self._reserved_usd -= reservation[1]
        self._in_flight -= 1
        if answered and tokens:
            k = self._kinds[kind]
            k.chars += chars
            k.tokens += tokens
            k.cost += usd
            k.answers += 1
        settled, self._settled = self._settled, None
        if settled is not None:
            settled.set()

    def describe(self) -> str:
        """The budget and what was spent, as a message shows them."""
        parts = []
        if self.max_tokens is not None:
            parts.append(f"llm.max_run_tokens {self.max_tokens:,}, spent {self.spent_tokens:,} tokens")
        if self.max_cost_usd is not None:
            parts.append(f"llm.max_run_cost_usd ${self.max_cost_usd:.4f}, spent ${self.spent_usd:.4f}")
        return "; ".join(parts) or "no budget"
