"""Entity and relationship records, posted as the summarize stage settles their descriptions.

Community reports read it instead of the summarize stage's saved output, so a report starts
as soon as its own members are summarized, not when the last summary of the whole graph
comes back. Before, the reports stage waited for every summary, then for the stage hand-off
(save, detect communities, load): 0.6-0.8 s with the limit idle at 64 in flight
(benchmarks/llm_throughput.py). What a report reads is the same either way: each record is
final when posted.
"""

from __future__ import annotations

import asyncio
from typing import Iterable


class DescriptionBoard:
    """id -> record (an entity's title, type, frequency and description, or a relationship's
    source, target, weight and description); waiting for an id that is not posted yet.

    Lives on one event loop (the flow's): posting and waiting are loop-only operations.
    """

    def __init__(self) -> None:
        self._records: dict[str, dict] = {}
        self._waiting: dict[str, asyncio.Event] = {}
        #: Set once every record of the run is posted (the summarize stage finished or was cached).
        self.complete = False

    def post(self, item_id: str, record: dict) -> None:
        self._records[item_id] = record
        event = self._waiting.pop(item_id, None)
        if event is not None:
            event.set()

    def post_many(self, records: Iterable[tuple[str, dict]]) -> None:
        for item_id, record in records:
            self.post(item_id, record)

    async def get(self, ids: Iterable[str]) -> list[dict]:
        """The records of `ids`, in order, once all are posted.

        An Event per missing id rather than a shared Future: a cancelled waiter (its stage
        failed) must not cancel the others waiting for the same id.
        """
        ids = list(ids)
        for item_id in ids:
            if item_id not in self._records:
                event = self._waiting.get(item_id)
                if event is None:
                    event = self._waiting[item_id] = asyncio.Event()
                await event.wait()
        return [self._records[i] for i in ids]


#: What a report reads of each kind (besides `description`, and the degree it gets from communities).
FIELDS = {"entities": ["title", "type", "frequency"], "relationships": ["source", "target", "weight"]}


def base_records(kind: str, frame) -> list[tuple[str, dict]]:
    """(id, record without its description) per row of a summarize-stage frame; pandas, so
    call it in a worker thread. From column lists: `to_dict("records")` took 30-40 ms for
    peps-mini's 1,205 rows, between the last extraction and the first summary request."""
    names = FIELDS[kind]
    columns = [frame[name].tolist() for name in names]
    return [(item_id, dict(zip(names, values))) for item_id, *values in zip(frame["id"].tolist(), *columns)]


def summarized_records(kind: str, frame) -> list[tuple[str, dict]]:
    """(id, full record) per row of a saved summarize-stage frame (which has `description`)."""
    return [
        (item_id, record | {"description": description})
        for (item_id, record), description in zip(base_records(kind, frame), frame["description"].tolist())
    ]
