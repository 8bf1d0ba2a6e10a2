"""Per-stage request counters for the run summary (CLI table and Prefect artifact)."""

from __future__ import annotations

import threading
from collections import Counter, defaultdict
from dataclasses import dataclass, field


@dataclass
class StageCounters:
    requests: int = 0
    retries: int = 0
    cache_hits: int = 0
    failures: int = 0
    retry_reasons: Counter = field(default_factory=Counter)
    warnings: list[str] = field(default_factory=list)


class LLMStats:
    """Counters keyed by stage name; updated from the event loop or worker threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.stages: dict[str, StageCounters] = defaultdict(StageCounters)

    def request(self, stage: str) -> None:
        with self._lock:
            self.stages[stage].requests += 1

    def retry(self, stage: str, reason: str) -> None:
        with self._lock:
            self.stages[stage].retries += 1
            self.stages[stage].retry_reasons[reason] += 1

    def cache_hit(self, stage: str) -> None:
        with self._lock:
            self.stages[stage].cache_hits += 1

    def failure(self, stage: str) -> None:
        with self._lock:
            self.stages[stage].failures += 1

    def warning(self, stage: str, message: str) -> None:
        with self._lock:
            self.stages[stage].warnings.append(message)

    def get(self, stage: str) -> StageCounters:
        with self._lock:
            return self.stages.get(stage) or StageCounters()

    def as_rows(self) -> list[dict]:
        with self._lock:
            return [
                {"stage": name, "requests": c.requests, "retries": c.retries, "cache_hits": c.cache_hits,
                 "failures": c.failures, "retry_reasons": dict(c.retry_reasons), "warnings": list(c.warnings)}
                for name, c in self.stages.items()
            ]
