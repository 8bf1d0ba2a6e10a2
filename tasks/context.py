"""The run state every stage task of one index run shares, passed to each task explicitly.

The flow builds one `RunContext` per run, on its event loop, and hands it to every task call
wrapped in `prefect.utilities.annotations.quote`: Prefect then neither traverses it (looking
for upstream futures in a parameter costs a visit per attribute) nor records it, and no cache
key sees it (a stage's key is its `key` parameter, tasks/keys.py). It holds what must not be a
task parameter: the settings with their resolved secrets, the asyncio objects of the flow's
loop (limiter, channels, connection pool), the answer cache's SQLite connection.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import pandas as pd

from graphrag_flow.channels import Channels
from graphrag_flow.config import Settings
from graphrag_flow.llm import AnswerCache, ConnectionPool, LLMStats, RequestLimiter
from graphrag_flow.llm.spend import SpendGate
from graphrag_flow.llm.entra import EntraToken
from graphrag_flow.llm.pacing import RateBudget
from graphrag_flow.prompts import load_prompt
from graphrag_flow.storage.outputs import LANCEDB_DIR
from graphrag_flow.storage.paths import ProjectPaths
from graphrag_flow.storage.stages import StageRef, StageStore

if TYPE_CHECKING:
    from tasks.batches import BatchCluster


@dataclass
class RunContext:
    """One index run's shared state (see the module docstring for why it is passed this way)."""

    paths: ProjectPaths
    #: With `llm.api_key` and `neo4j.password` resolved (flows/secret_lookup.py): never a task parameter.
    settings: Settings
    #: The staging folder this run builds its generation in (`output.next`).
    out_dir: Path
    #: `--full`: every stage recomputed, no answer read from the cache.
    full: bool
    store: StageStore
    cache: AnswerCache
    limiter: RequestLimiter
    stats: LLMStats
    #: What each stage makes, for the stages running beside it (graphrag_flow/channels.py).
    channels: Channels = field(default_factory=Channels)
    #: The run's keep-alive connections, lent to each stage's client (None offline).
    pool: ConnectionPool | None = None
    #: The run's budget, asked before every request leaves (None: no budget).
    gate: SpendGate | None = None
    #: llm.tokens_per_minute / requests_per_minute, held across every stage (None: not set).
    pacer: RateBudget | None = None
    #: Azure with llm.azure_auth entra_id: the run's one token source, refreshed before expiry.
    entra: EntraToken | None = None
    #: The Dask cluster the offline batch work runs on (`execution.task_runner: dask`), else None.
    cluster: "BatchCluster | None" = None
    #: Seconds each stage worked, for the run summary (waiting for its inputs not counted).
    stage_seconds: dict[str, float] = field(default_factory=dict)
    _embed_slots: asyncio.Semaphore | None = None

    @property
    def offline(self) -> bool:
        return self.settings.llm.provider == "offline"

    @property
    def lancedb_dir(self) -> Path:
        return self.out_dir / LANCEDB_DIR

    def embed_slots(self) -> asyncio.Semaphore:
        """One semaphore for every vector field of the run: the embed stages run side by side on
        the flow's event loop, and at most `llm.max_concurrency` batches may be taken but not
        yet merged in all (what a kill can lose), not that many per field."""
        if self._embed_slots is None:
            self._embed_slots = asyncio.Semaphore(max(1, self.settings.llm.max_concurrency))
        return self._embed_slots

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        start = time.monotonic()
        try:
            yield
        finally:
            self.stage_seconds[stage] = self.stage_seconds.get(stage, 0.0) + time.monotonic() - start

    def prompt(self, name: str) -> str:
        return load_prompt(name, self.settings.llm.prompts_dir, self.paths.root)

    async def load_frames(self, *wanted: tuple[StageRef, str]) -> list[pd.DataFrame]:
        """Saved stage frames, read in a worker thread: parquet reads never stall the serving loop."""
        return await asyncio.to_thread(lambda: [self.store.load(ref, frame) for ref, frame in wanted])

    async def save(self, stage: str, key: str, frames: dict[str, pd.DataFrame], stats: dict[str, Any]) -> StageRef:
        """The stage's checkpoint, written in a worker thread; its StageRef is the task's result."""
        return await asyncio.to_thread(self.store.save, stage, key, frames, stats)

    def close(self) -> None:
        self.cache.close()
