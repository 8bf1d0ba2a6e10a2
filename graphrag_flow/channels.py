"""What a stage makes, handed to the stages running beside it within one run, in memory.

Stages that depend on one another run as separate Prefect tasks with their own cache keys, but
a stage does not wait for its upstream task to save, return and be loaded back: every stage
starts with the run and waits here for exactly what it reads, so one concurrency limit is kept
busy from the first request to the last (docs/architecture.md, "Run state").

A channel carries one frame of one stage, named as the stage store names it
(`channels.of("summarize", "entities")`), in two forms:

- rows as they become final (`post`): another stage waits for specific rows by id (`rows`: a
  community report waits for its own members' summaries, not for every summary), or takes them
  as they come, in batches (`row_batches`: entity and report texts are embedded while the rest
  are still being written);
- the whole value (`put`; `get` waits for it): a frame, or its columns as plain lists when it
  is made on the event loop (pandas would hold the loop).

A stage that did not run in this process (Prefect served it from its cache) fills its channels
by one generic path, `offer_saved`: each saved frame is read in a worker thread by the first
stage that asks, and rows asked for by id are taken from it.

Everything here lives on one event loop (the flow's): posting, putting and waiting are
loop-only operations, and a channel's row stream has one reader (the embed stage of its field).
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any, AsyncIterator, Callable, Iterable

import pandas as pd

from graphrag_flow.storage.stages import StageRef

_MISSING = object()


class Channel:
    """One frame of one stage: its rows as they become final, then the whole value."""

    def __init__(self, name: str):
        self.name = name
        self._value: Any = _MISSING
        self._load: Callable[[], Any] | None = None
        self._ready = asyncio.Event()
        self._loading = asyncio.Lock()
        self._records: dict[str, dict] = {}
        #: An Event per id waited for, not a shared Future: a waiter cancelled because its stage
        #: failed must not cancel the others waiting for the same id.
        self._waiting: dict[str, asyncio.Event] = {}
        #: Rows come from the saved frame (offered), indexed by id on first use.
        self._saved_rows = False
        self._indexed = False
        self._stream: list[tuple[str, dict]] = []
        self._streamed: set[str] = set()
        self._stream_open = True
        self._changed = asyncio.Event()

    # -- the producing stage

    def post(self, row_id: str, record: dict) -> None:
        """Row `row_id` is final: whoever waits for it goes on, and it joins the row stream (once,
        while the stream is open: a retried attempt's rows are left to the whole value)."""
        self._records[row_id] = record
        event = self._waiting.pop(row_id, None)
        if event is not None:
            event.set()
        if self._stream_open and row_id not in self._streamed:
            self._streamed.add(row_id)
            self._stream.append((row_id, record))
            self._changed.set()

    def put(self, value: Any) -> None:
        """The whole value is made; the row stream ends (what it lacks, the value delivers)."""
        self._value = value
        self._ready.set()
        self.end_rows()

    def end_rows(self) -> None:
        """No more rows will be streamed (the producing attempt ended, or the value is there)."""
        self._stream_open = False
        self._changed.set()

    def offer(self, load: Callable[[], pd.DataFrame]) -> None:
        """The value from its saved frame, `load`ed (blocking: in a worker thread) by the first
        stage that asks; rows asked for by id come from it too. A no-op once the value is put."""
        if self._value is not _MISSING:
            return
        self._load = load
        self._saved_rows = True
        self._ready.set()
        self.end_rows()
        for event in self._waiting.values():  # waiters look again, in the saved frame
            event.set()

    # -- the stages reading it

    @property
    def ready(self) -> bool:
        """Whether the whole value is there (put, or offered from a saved frame)."""
        return self._ready.is_set()

    async def get(self) -> Any:
        """The whole value, once it is put or offered."""
        await self._ready.wait()
        if self._value is _MISSING:
            async with self._loading:
                if self._value is _MISSING:
                    assert self._load is not None
                    self._value = await asyncio.to_thread(self._load)
        return self._value

    async def rows(self, ids: Iterable[str]) -> list[dict]:
        """The records of `ids`, in order, once each is posted (or found in the saved frame)."""
        ids = list(ids)
        for row_id in ids:
            while row_id not in self._records:
                if self._saved_rows:
                    await self._index_saved_frame()
                    if row_id not in self._records:
                        raise KeyError(f"{self.name}: no row {row_id} in the saved frame")
                    break
                event = self._waiting.get(row_id)
                if event is None:
                    event = self._waiting[row_id] = asyncio.Event()
                await event.wait()
        return [self._records[i] for i in ids]

    async def row_batches(self, size: int) -> AsyncIterator[list[tuple[str, dict]]]:
        """Every streamed (id, record) once: whole batches of `size` as soon as they are waiting (so
        streamed rows cost no more requests than the whole value would), the rest when the
        stream ends."""
        taken = 0
        while True:
            while self._stream_open and len(self._stream) - taken < size:
                self._changed.clear()
                await self._changed.wait()
            if self._stream_open:
                end = taken + (len(self._stream) - taken) // size * size
            else:
                end = len(self._stream)
            if end == taken:
                return
            batch, taken = self._stream[taken:end], end
            yield batch

    async def _index_saved_frame(self) -> None:
        frame = await self.get()
        async with self._loading:
            if not self._indexed:
                for row_id, record in (await asyncio.to_thread(records_by_id, frame)).items():
                    self._records.setdefault(row_id, record)
                self._indexed = True


def records_by_id(frame: pd.DataFrame) -> dict[str, dict]:
    """id -> the row's other columns, from column lists (a frame's `to_dict("records")` is several
    times slower). pandas: call it in a worker thread."""
    columns = [c for c in frame.columns if c != "id"]
    values = [frame[c].tolist() for c in columns]
    return {row_id: dict(zip(columns, row)) for row_id, *row in zip(frame["id"].tolist(), *values)}


class Channels:
    """The channels of one run, one per (stage, frame), made on first use."""

    def __init__(self) -> None:
        self._channels: dict[tuple[str, str], Channel] = {}

    def of(self, stage: str, frame: str) -> Channel:
        key = (stage, frame)
        channel = self._channels.get(key)
        if channel is None:
            channel = self._channels[key] = Channel(f"{stage}/{frame}")
        return channel

    def publish(self, stage: str, frames: dict[str, Any]) -> None:
        """Put each of a stage's frames on its channel."""
        for name, value in frames.items():
            self.of(stage, name).put(value)

    async def values(self, stage: str, *frames: str) -> list[Any]:
        """The whole values of several frames of one stage, once all are there."""
        return list(await asyncio.gather(*(self.of(stage, frame).get() for frame in frames)))

    def offer_saved(self, ref: StageRef, load: Callable[[StageRef, str], pd.DataFrame]) -> None:
        """Offer every frame a finished stage saved, for the stages waiting on them; a no-op for
        the frames the stage put while it ran here (so it costs nothing after a stage that ran)."""
        for frame in ref.rows:
            self.of(ref.stage, frame).offer(functools.partial(load, ref, frame))
