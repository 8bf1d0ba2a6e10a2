"""The adaptive deadline: a hung request is ended after a few times the usual latency.

`llm.request_timeout_s` is the most a request may take, and it is long (60 s by default), so
that a slow but working model is never cut off. A request that hangs (a lost response, a
stuck connection) is ended sooner: after max(4 x p95, 0.5 s) of the run's recent successful
latencies of its kind (chat, embeddings), once there are 20 of them (graphrag_flow/llm/stats.py
keeps them for the whole run, so a stage's first requests use the previous stage's). Each
deadline a request already hit doubles its allowance. The reason a deadline gives says how it
was derived, so an operator can tell it from the setting.
"""

from __future__ import annotations

import math

from graphrag_flow.llm.retry import Budget

#: The adaptive deadline needs this many successful latencies of a kind before it acts.
MIN_LATENCY_SAMPLES = 20
#: An attempt may take this many times the observed p95 latency of its kind ...
DEADLINE_P95_FACTOR = 4.0
#: ... but never less than this (a fast server's jitter must not cause retries).
DEADLINE_FLOOR_S = 0.5


def p95(samples: list[float]) -> float | None:
    """The 95th percentile (nearest rank) of the samples, once there are MIN_LATENCY_SAMPLES."""
    if len(samples) < MIN_LATENCY_SAMPLES:
        return None
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def adaptive_deadline(kind: str, p95_s: float | None, deadline_hits: int, budget: Budget) -> tuple[float, str] | None:
    """The deadline of an attempt and how it was derived, when it is below the budget's limit
    (else None: the budget's own limit applies)."""
    if p95_s is None:
        return None
    limit = max(DEADLINE_P95_FACTOR * p95_s, DEADLINE_FLOOR_S) * 2 ** deadline_hits
    if limit >= budget.timeout_s:
        return None
    doubled = f", doubled {deadline_hits} time(s) for this request's earlier deadlines" if deadline_hits else ""
    return limit, (f"the adaptive deadline, max({DEADLINE_P95_FACTOR:g} x {p95_s:.2f} s, the p95 latency of {kind} "
                   f"requests in this run, {DEADLINE_FLOOR_S:g} s){doubled}; {budget.timeout_source} is the most "
                   "a request may take")
