"""The retry rules: which failed attempt is tried again, after how long, and how many times.

- A request has a budget (`Budget`): `llm.max_retries` retries, and a hard limit for each
  attempt, `llm.request_timeout_s` (or a lower cap, e.g. `graphrag-flow check`'s). A hedge
  (graphrag_flow/llm/hedging.py) runs within the same attempt: the run's stats count it as a
  retry, but it spends none of the budget's.
- Only a `Retryable` outcome (graphrag_flow/llm/outcomes.py) is tried again; a fatal error or a
  bad request ends the request at once.
- A 429's `Retry-After` sets the wait when the server gives one.
- Otherwise the wait grows with the failures of one kind, not with every attempt: a
  disconnect, then a 429 (paced by its Retry-After), then a hang are three unrelated events,
  and backing off 0.5 s x 2^2 after the third would hold a stage's last item for up to 2 s.
- The first retry after a dropped connection or a hung request goes out within 0.1 s:
  neither says the server is overloaded (a stale keep-alive connection, one lost request),
  and at a stage's end that one item is all the run waits for. A second failure of the same
  kind backs off exponentially, with jitter (half fixed, half random) to spread a burst.
- Each deadline a request hits doubles its adaptive deadline for the next attempt
  (graphrag_flow/llm/deadlines.py): a server that slowed down for good still gets the full
  `llm.request_timeout_s`.

Why these rules are ours and not tenacity's: tenacity expresses the loop (stop after N,
retry on an exception type, a custom wait), but not the state these rules keep per request
(failures per kind, deadline hits that the next attempt's deadline reads), which would live
in closures made for every request beside its `AsyncRetrying`; and its objects (a
`RetryCallState` per request, an `AttemptManager` and a `concurrent.futures.Future` with its
lock per attempt) cost the event loop several times what this loop costs, on the path every
request takes.
docs/llm-client.md has the measurement.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from graphrag_flow.config import LLMSettings
from graphrag_flow.llm.outcomes import Retryable

#: The first retry after one of these waits at most this long (random).
QUICK_RETRY_S = 0.1
QUICK_RETRY_KINDS = frozenset({"disconnect", "deadline"})


@dataclass(frozen=True)
class Budget:
    """What one request may spend: `retries` retries, `timeout_s` per attempt at most."""

    retries: int
    timeout_s: float
    #: What sets timeout_s, as a request it ends says: the setting and its value, or the cap below it.
    timeout_source: str


def request_budget(settings: LLMSettings, retries: int, cap_s: float | None = None, cap_name: str = "") -> Budget:
    """Retries and the per-attempt limit: llm.request_timeout_s, or `cap_s` when that is lower."""
    setting = settings.request_timeout_s
    if cap_s is not None and cap_s < setting:
        return Budget(retries, cap_s, f"the {cap_s:g} s limit of {cap_name} (llm.request_timeout_s is {setting:g} s)")
    return Budget(retries, setting, f"llm.request_timeout_s = {setting:g} s")


@dataclass(frozen=True)
class Backoff:
    """The wait before a retry, from the failure and how many of its kind came before."""

    base_s: float = 0.5
    max_s: float = 20.0

    def delay(self, failure: Retryable, n_of_kind: int) -> float:
        """`n_of_kind`: this failure's number among the request's failures of its kind (1 = first)."""
        if failure.wait is not None:
            return failure.wait
        if n_of_kind == 1 and failure.kind in QUICK_RETRY_KINDS:
            return random.uniform(0.0, QUICK_RETRY_S)
        return self.exponential(n_of_kind)

    def exponential(self, n: int) -> float:
        """base x 2^(n-1), capped at max, times a random 0.5-1.0."""
        ceiling = min(self.max_s, self.base_s * 2 ** (n - 1))
        return ceiling * random.uniform(0.5, 1.0)


class RequestRetries:
    """One request's retry state across its attempts (made per request: the transport's
    retry loop asks it what a failed attempt costs)."""

    __slots__ = ("budget", "backoff", "retries", "deadline_hits", "_by_kind")

    def __init__(self, budget: Budget, backoff: Backoff):
        self.budget = budget
        self.backoff = backoff
        #: Retries granted so far (attempts made = retries + 1).
        self.retries = 0
        #: Attempts of this request its adaptive deadline ended.
        self.deadline_hits = 0
        self._by_kind: dict[str, int] | None = None  # made on the first failure: most requests have none

    def after(self, failure: Retryable) -> float | None:
        """Records a failed attempt: the seconds to wait before the next one, or None when the
        budget's retries are spent (the request fails)."""
        if failure.kind == "deadline":
            self.deadline_hits += 1
        if self.retries >= self.budget.retries:
            return None
        self.retries += 1
        by_kind = self._by_kind
        if by_kind is None:
            by_kind = self._by_kind = {}
        n = by_kind[failure.kind] = by_kind.get(failure.kind, 0) + 1
        return self.backoff.delay(failure, n)
