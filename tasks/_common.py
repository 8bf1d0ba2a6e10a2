"""What every stage task shares: content cache keys, retry rules and the run's resources.

Cache keys are content hashes (upstream stage keys + the settings that change the stage's
output + a hash of the code), never a path or a run id, so a second run on unchanged input
skips finished stages across processes, and a code change never serves a stale result.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from prefect.context import TaskRunContext

from graphrag_flow.config import Settings
from graphrag_flow.description_board import DescriptionBoard
from graphrag_flow.errors import FatalLLMError, InputError, SettingsError, VerifyError
from graphrag_flow.handoff import Handoff
from graphrag_flow.hashing import CODE_VERSION, sha256_json
from graphrag_flow.llm.answer_cache import AnswerCache
from graphrag_flow.llm.connections import ConnectionPool
from graphrag_flow.llm.limiter import RequestLimiter
from graphrag_flow.llm.stats import LLMStats
from graphrag_flow.row_stream import RowStream
from graphrag_flow.storage.stages import StageRef, StageStore
from graphrag_flow.tables import embedding_text

#: Parameters that never enter a cache key: where the project is, and run plumbing.
_NOT_IN_KEY = {"root"}
#: Errors no retry fixes: a stage retry would only repeat them.
_NO_RETRY = (FatalLLMError, SettingsError, InputError, VerifyError)

STAGE_RETRIES = 1
STAGE_RETRY_DELAY_S = [3]
STAGE_RETRY_JITTER = 0.5


def stage_key(stage: str, parameters: dict[str, Any]) -> str:
    parts: dict[str, Any] = {"stage": stage, "code": CODE_VERSION}
    for name, value in sorted(parameters.items()):
        if name in _NOT_IN_KEY:
            continue
        parts[name] = value.key if isinstance(value, StageRef) else value
    return sha256_json(parts)


def cache_key_for(stage: str):
    def key_fn(context: TaskRunContext, parameters: dict[str, Any]) -> str:
        return stage_key(stage, parameters)

    key_fn.__name__ = f"{stage}_cache_key"
    return key_fn


def failed_state_exception(state) -> BaseException | None:
    """The exception a failed task state holds, without awaiting anything.

    `state.result()` cannot be used in a retry_condition_fn of an async task: there it
    returns an un-awaited coroutine instead of raising (measured with Prefect 3.8.8), so every
    error would look retryable. A failed state's data is the exception, or a result record
    holding it when the task persists results.
    """
    data = state.data
    if isinstance(data, BaseException):
        return data
    inner = getattr(data, "result", None)
    return inner if isinstance(inner, BaseException) else None


def retry_unless_fatal(task, task_run, state) -> bool:
    """Prefect retry_condition_fn: 401/403/404, bad settings and bad input stop at once."""
    return not isinstance(failed_state_exception(state), _NO_RETRY)


def stage_options(stage: str) -> dict[str, Any]:
    """Options every cached stage task shares."""
    return dict(
        cache_key_fn=cache_key_for(stage),
        persist_result=True,
        retries=STAGE_RETRIES,
        retry_delay_seconds=STAGE_RETRY_DELAY_S,
        retry_jitter_factor=STAGE_RETRY_JITTER,
        retry_condition_fn=retry_unless_fatal,
    )


@dataclass
class RunResources:
    """Per-run objects shared by the stage tasks of one flow run, on the flow's event loop.

    Kept out of task parameters (they would enter cache keys and Prefect's records): the
    settings here still hold secrets, the limiter is an asyncio object.
    """

    root: Path
    settings: Settings
    out_dir: Path
    full: bool
    limiter: RequestLimiter
    stats: LLMStats
    cache: AnswerCache
    store: StageStore
    json_object_mode: list[bool] = field(default_factory=lambda: [False])
    stage_seconds: dict[str, float] = field(default_factory=dict)
    #: Summarized entities and relationships as they are done, for reports that start early.
    descriptions: DescriptionBoard = field(default_factory=DescriptionBoard)
    #: Frames a stage hands to the stages running beside it (see graphrag_flow/handoff.py):
    #: "candidates" (extract), "entities" (summarize), "community_reports" (reports), "text_units".
    handoff: Handoff = field(default_factory=Handoff)
    #: The run's keep-alive connections, lent to each stage's client (None offline).
    pool: ConnectionPool | None = None
    #: Rows of a vector field posted as they are final, by field (graphrag_flow/row_stream.py).
    streams: dict[str, RowStream] = field(default_factory=dict)

    def stream(self, vector_field: str) -> RowStream:
        """The one stream of `vector_field` in this run, for its producer and its embed stage."""
        return self.streams.setdefault(vector_field, RowStream())

    @contextmanager
    def posting_rows(self, vector_field: str) -> Iterator[Callable[[str, dict], None] | None]:
        """For a producer stage: post(row id, record) sends the row's text to `vector_field`'s
        embeddings the moment it is final; the stream closes when the block ends (a retried
        attempt's rows are left to the embed stage's full pass). None offline, where the embed
        stage reads only the finished frame and nobody would take the rows."""
        if self.settings.llm.provider == "offline":
            yield None
            return
        stream = self.stream(vector_field)
        try:
            yield lambda row_id, record: stream.post(row_id, embedding_text(vector_field, record))
        finally:
            stream.close()

    @property
    def lancedb_dir(self) -> Path:
        return self.out_dir / "lancedb"


_current: RunResources | None = None


def current_run() -> RunResources:
    if _current is None:
        raise RuntimeError("stage tasks run inside the index flow (flows/index.py)")
    return _current


@contextmanager
def run_resources(resources: RunResources) -> Iterator[RunResources]:
    global _current
    previous, _current = _current, resources
    try:
        yield resources
    finally:
        _current = previous
        resources.cache.close()


async def load_frames(*wanted: tuple[StageRef, str]) -> list:
    """Stage frames read in a worker thread: parquet reads never stall the serving loop."""
    run = current_run()
    return await asyncio.to_thread(lambda: [run.store.load(ref, frame) for ref, frame in wanted])


@contextmanager
def timed(stage: str) -> Iterator[None]:
    start = time.monotonic()
    try:
        yield
    finally:
        run = _current
        if run is not None:
            run.stage_seconds[stage] = run.stage_seconds.get(stage, 0.0) + time.monotonic() - start

