"""Progress events from long stages, fanned out to whoever listens (CLI bars, Prefect artifacts).

Domain code reports progress without knowing who shows it, so it stays free of rich and
Prefect imports.
"""

from __future__ import annotations

import threading
from typing import Protocol


class ProgressListener(Protocol):
    def start(self, stage: str, total: int) -> None: ...
    def advance(self, stage: str, done: int) -> None: ...
    def finish(self, stage: str) -> None: ...


_listeners: list[ProgressListener] = []
_lock = threading.Lock()


def add_listener(listener: ProgressListener) -> None:
    with _lock:
        _listeners.append(listener)


def remove_listener(listener: ProgressListener) -> None:
    with _lock:
        if listener in _listeners:
            _listeners.remove(listener)


def _each(method: str, *args: object) -> None:
    with _lock:
        listeners = list(_listeners)
    for listener in listeners:
        try:
            getattr(listener, method)(*args)
        except Exception:  # a broken display must never fail the indexing run
            pass


class StageProgress:
    """Counts one stage's finished items and tells listeners; safe from several threads."""

    def __init__(self, stage: str, total: int):
        self.stage = stage
        self.total = total
        self.done = 0
        self._lock = threading.Lock()
        _each("start", stage, total)

    def advance(self, n: int = 1) -> None:
        with self._lock:
            self.done += n
            done = self.done
        _each("advance", self.stage, done)

    def finish(self) -> None:
        _each("finish", self.stage)
