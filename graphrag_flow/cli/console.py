"""What the CLI adds to the terminal while `index` runs: a progress bar per stage, and Prefect's
console log without the tracebacks of errors the CLI prints itself."""

from __future__ import annotations

import logging
import threading

from rich.progress import Progress

from graphrag_flow.errors import GraphragFlowError


class NoTracebackForKnownErrors(logging.Formatter):
    """Wraps a console handler's formatter: a graphrag-flow error (a stage's failed items, a
    rejected key, a bad setting) already says what failed and what to do, and the CLI prints
    it once at the end; Prefect's engine logged it twice more with a 20-line traceback each.
    Only the console's copy loses the traceback: the run's logs in the Prefect UI keep it."""

    def __init__(self, inner: logging.Formatter | None):
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        error = record.exc_info[1] if record.exc_info else None
        if not isinstance(error, GraphragFlowError):
            return self.inner.format(record)
        saved = record.exc_info, record.exc_text
        record.exc_info, record.exc_text = None, None
        try:
            return self.inner.format(record)
        finally:
            record.exc_info, record.exc_text = saved


def console_without_known_tracebacks() -> None:
    from prefect.logging.handlers import PrefectConsoleHandler

    for handler in logging.getLogger().handlers:
        if isinstance(handler, PrefectConsoleHandler) and not isinstance(handler.formatter, NoTracebackForKnownErrors):
            handler.setFormatter(NoTracebackForKnownErrors(handler.formatter))


class RichProgress:
    """A progress bar per stage, fed by graphrag_flow.progress events from any thread."""

    def __init__(self, progress: Progress):
        self.progress = progress
        self.tasks: dict[str, int] = {}
        self.lock = threading.Lock()

    def start(self, stage: str, total: int) -> None:
        with self.lock:
            if stage in self.tasks:
                self.progress.reset(self.tasks[stage], total=total)
            else:
                self.tasks[stage] = self.progress.add_task(stage, total=total)

    def advance(self, stage: str, done: int) -> None:
        with self.lock:
            if stage in self.tasks:
                self.progress.update(self.tasks[stage], completed=done)

    def finish(self, stage: str) -> None:
        with self.lock:
            if stage in self.tasks:
                task = self.progress.tasks[self.tasks[stage]]
                self.progress.update(self.tasks[stage], completed=task.total)
