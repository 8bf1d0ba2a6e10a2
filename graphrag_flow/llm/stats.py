"""Per-stage request counters for the run summary (CLI table and Prefect artifact).

Updated from the event loop (the client) and, rarely, from worker threads; a plain
threading.Lock costs well under a microsecond uncontended, so it is safe in both places.
"""

from __future__ import annotations

import threading
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field


@dataclass
class StageCounters:
    requests: int = 0  # attempts put on the wire (a retried request counts each time)
    retries: int = 0
    cache_hits: int = 0  # answers served by the answer cache: no request sent
    failures: int = 0  # items that failed for good
    items: int = 0  # calls (chat answers, embedding batches) that succeeded
    truncated_inputs: int = 0  # embedding inputs cut to llm.embedding_batch_max_tokens
    retry_reasons: Counter = field(default_factory=Counter)
    warnings: list[str] = field(default_factory=list)
    usage: "StageUsage" = field(default_factory=lambda: StageUsage())


@dataclass
class StageUsage:
    """What a stage's answers received in this run were billed (graphrag_flow/usage.py prices it).

    `answers`: 200 answers received (retries and hedges that answered included; a cache hit
    costs nothing and is not here); `counted`: those whose server sent no `usage`, so their
    tokens are our own count (OpenAI's rule, graphrag_flow/llm/tokens.py), not the bill's.
    """

    answers: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    embedding_tokens: int = 0
    counted: int = 0


#: Successful latencies kept per request kind: recent enough to follow a server that slows down.
LATENCY_WINDOW = 256


class LLMStats:
    """Counters keyed by stage name; updated from the event loop or worker threads.

    Also the run's recent latencies per request kind (chat, embeddings), which the adaptive
    deadline (graphrag_flow/llm/deadlines.py) and hedging read: every stage opens its own
    client, and a hang early in a stage, before the stage's client has seen 20 answers of
    its own, must still end at the deadline rather than at request_timeout_s.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.stages: dict[str, StageCounters] = defaultdict(StageCounters)
        self._latencies: dict[str, deque[float]] = {}

    def latency(self, kind: str, seconds: float) -> None:
        with self._lock:
            self._latencies.setdefault(kind, deque(maxlen=LATENCY_WINDOW)).append(seconds)

    def latencies(self, kind: str) -> list[float]:
        with self._lock:
            return list(self._latencies.get(kind, ()))

    def request(self, stage: str) -> None:
        with self._lock:
            self.stages[stage].requests += 1

    def retry(self, stage: str, reason: str) -> None:
        """One retry, with its kind (disconnect, timeout, deadline, rate_limit, server_error, ...)."""
        with self._lock:
            self.stages[stage].retries += 1
            self.stages[stage].retry_reasons[reason] += 1

    def reason(self, stage: str, reason: str) -> None:
        """An event worth counting that is not a retry of the same request (e.g. a batch split)."""
        with self._lock:
            self.stages[stage].retry_reasons[reason] += 1

    def cache_hit(self, stage: str) -> None:
        with self._lock:
            self.stages[stage].cache_hits += 1

    def failure(self, stage: str) -> None:
        with self._lock:
            self.stages[stage].failures += 1

    def item(self, stage: str) -> None:
        with self._lock:
            self.stages[stage].items += 1

    def truncated(self, stage: str, n: int = 1) -> None:
        with self._lock:
            self.stages[stage].truncated_inputs += n

    def usage(self, stage: str, prompt_tokens: int, completion_tokens: int, embedding_tokens: int,
              counted: bool) -> None:
        """One answer received, and what it was billed (or counted, without `usage`)."""
        with self._lock:
            u = self.stages[stage].usage
            u.answers += 1
            u.prompt_tokens += prompt_tokens
            u.completion_tokens += completion_tokens
            u.embedding_tokens += embedding_tokens
            u.counted += counted

    def usage_by_stage(self) -> dict[str, StageUsage]:
        """A copy of every stage's usage, stages that received no answer left out."""
        with self._lock:
            return {name: StageUsage(**vars(c.usage)) for name, c in self.stages.items() if c.usage.answers}

    def warning(self, stage: str, message: str) -> None:
        with self._lock:
            self.stages[stage].warnings.append(message)

    def get(self, stage: str) -> StageCounters:
        """A copy of one stage's counters (zeros for a stage never seen)."""
        with self._lock:
            c = self.stages.get(stage)
            if c is None:
                return StageCounters()
            return StageCounters(c.requests, c.retries, c.cache_hits, c.failures, c.items, c.truncated_inputs,
                                 Counter(c.retry_reasons), list(c.warnings), StageUsage(**vars(c.usage)))

    def as_rows(self) -> list[dict]:
        with self._lock:
            return [
                {"stage": name, "requests": c.requests, "retries": c.retries, "cache_hits": c.cache_hits,
                 "failures": c.failures, "items": c.items, "truncated_inputs": c.truncated_inputs,
                 "retry_reasons": dict(c.retry_reasons), "warnings": list(c.warnings)}
                for name, c in self.stages.items()
            ]
