"""What the CLI adds to the terminal while `index` runs: a progress bar per stage that stays
put, the run's warnings above it, and the full log in a file.

Prefect's console handler writes to the stream it was given when logging was configured, past
rich's live display: its lines land between the redrawn bars, the block of bars is printed again
below each, and long lines are cut at the terminal's edge. The CLI replaces that handler with one
that prints through the console the bars are drawn on (rich prints it above them and wraps it),
at WARNING unless `--verbose`; the full log, at INFO, goes to `cache/logs/index-<time>.log`, and a
flow run's log still goes to the Prefect API (the UI) through Prefect's own handler.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from rich.console import Console
from rich.progress import Progress
from rich.text import Text

#: The engine's loggers of flow and task runs: their ERROR records say again what the CLI prints
#: once when the run ends (the run's error), each with a traceback.
RUN_LOGGERS = ("prefect.flow_runs", "prefect.task_runs")
#: Prefect's background services, whose shutdown notes ("Still processing items") are no
#: action for the person at the terminal; they stay in the log file.
SERVICE_LOGGERS = ("EventsWorker", "APILogWorker")
#: Log files of earlier runs kept in cache/logs/.
KEEP_LOGS = 20
LOG_FORMAT = "%(asctime)s.%(msecs)03d | %(levelname)-7s | %(name)s - %(message)s"


class ConsoleLogHandler(logging.Handler):
    """Prints log records through `console`, above its live progress bars, wrapped to its width."""

    STYLES = {logging.WARNING: "yellow", logging.ERROR: "red", logging.CRITICAL: "bold red"}

    def __init__(self, console: Console, level: int):
        super().__init__(level)
        self.console = console

    def emit(self, record: logging.LogRecord) -> None:
        if record.name in SERVICE_LOGGERS or (record.name in RUN_LOGGERS and record.levelno >= logging.ERROR):
            return
        try:
            where = getattr(record, "task_run_name", None)
            line = Text(f"{record.levelname.lower()}: ", style=self.STYLES.get(record.levelno, "dim"))
            line.append(f"{where}: " if where else "")
            line.append(record.getMessage())
            if record.exc_info and record.levelno >= logging.ERROR and not record.name.startswith("prefect"):
                line.append(f" ({type(record.exc_info[1]).__name__}; the traceback is in the log file)")
            self.console.print(line, overflow="fold", highlight=False)
        except Exception:
            self.handleError(record)


def route_logging(console: Console, log_dir: Path, verbose: bool) -> Path | None:
    """Send every console log handler's records through `console` (at WARNING, INFO when
    `verbose`), and the full log to a new file in `log_dir`, returned (None when the folder
    cannot be written: the run is not stopped for its log file)."""
    from prefect.logging.handlers import PrefectConsoleHandler

    ours = ConsoleLogHandler(console, logging.INFO if verbose else logging.WARNING)
    loggers = [logging.getLogger()] + [
        logger for logger in logging.Logger.manager.loggerDict.values() if isinstance(logger, logging.Logger)
    ]
    for logger in loggers:
        replaced = [h for h in logger.handlers if isinstance(h, PrefectConsoleHandler)]
        for handler in replaced:
            logger.removeHandler(handler)
        if replaced:
            logger.addHandler(ours)
    # graphrag_flow's own INFO lines (what a stage did) belong in the file; the root stays at WARNING.
    logging.getLogger("graphrag_flow").setLevel(logging.INFO)
    log_file = _open_log_file(log_dir)
    if log_file is not None:
        handler = logging.FileHandler(log_file, encoding="utf-8")
        handler.setLevel(logging.INFO)
        handler.setFormatter(_file_formatter())
        logging.getLogger().addHandler(handler)
        for name in ("uvicorn", "fastapi", *SERVICE_LOGGERS):  # loggers that do not propagate to the root
            if not logging.getLogger(name).propagate:
                logging.getLogger(name).addHandler(handler)
    return log_file


def _file_formatter() -> logging.Formatter:
    """Prefect's own line format, which names the flow or task run of each line."""
    from prefect.logging.formatters import PrefectFormatter

    return PrefectFormatter(
        format=LOG_FORMAT,
        flow_run_fmt="%(asctime)s.%(msecs)03d | %(levelname)-7s | Flow run %(flow_run_name)r - %(message)s",
        task_run_fmt="%(asctime)s.%(msecs)03d | %(levelname)-7s | Task run %(task_run_name)r - %(message)s",
        datefmt="%Y-%m-%d %H:%M:%S",
    )


def _open_log_file(log_dir: Path) -> Path | None:
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
        for old in sorted(log_dir.glob("index-*.log"))[:-(KEEP_LOGS - 1)]:
            old.unlink(missing_ok=True)
        path = log_dir / time.strftime("index-%Y%m%d-%H%M%S.log")
        path.touch()
        return path
    except OSError:
        return None


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
