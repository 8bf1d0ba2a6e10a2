"""The run's channels: what a stage makes reaches the stages running beside it, as rows and as a
whole value, whether the stage ran in this process or Prefect served it from its cache."""

from __future__ import annotations

import asyncio

import pandas as pd
import pytest

from graphrag_flow.channels import Channel, Channels
from graphrag_flow.storage.stages import StageStore


def test_row_batches_are_whole_batches_as_they_wait_then_the_rest_when_the_value_is_put():
    async def main() -> list[list[str]]:
        channel = Channel("reports/community_reports")
        got: list[list[str]] = []

        async def consume() -> None:
            async for batch in channel.row_batches(4):
                got.append([row_id for row_id, _ in batch])

        consumer = asyncio.create_task(consume())
        for i in range(6):
            channel.post(f"r{i}", {"text": f"text {i}"})
        await asyncio.sleep(0.01)
        assert got == [["r0", "r1", "r2", "r3"]]  # a whole batch; r4, r5 wait for more or the end
        channel.post("r1", {"text": "posted again"})  # a retried producer: never a duplicate in a batch
        for i in range(6, 9):
            channel.post(f"r{i}", {"text": f"text {i}"})
        await asyncio.sleep(0.01)
        channel.put(pd.DataFrame({"id": [f"r{i}" for i in range(9)]}))
        channel.post("late", {"text": "after the value"})  # the whole value's full pass embeds it
        await asyncio.wait_for(consumer, 1)
        return got

    assert asyncio.run(main()) == [["r0", "r1", "r2", "r3"], ["r4", "r5", "r6", "r7"], ["r8"]]


def test_a_row_stream_nobody_posts_to_ends_when_the_producer_attempt_ends_or_a_saved_frame_is_offered():
    async def main() -> list:
        batches = []

        async def consume(channel: Channel) -> None:
            async for batch in channel.row_batches(16):
                batches.append(batch)

        ended, offered = Channel("a"), Channel("b")
        consumers = [asyncio.create_task(consume(c)) for c in (ended, offered)]
        await asyncio.sleep(0.01)
        ended.end_rows()  # a failed attempt: its retry's rows are the whole value's
        offered.offer(lambda: pd.DataFrame({"id": []}))  # its stage came from Prefect's cache
        await asyncio.wait_for(asyncio.gather(*consumers), 1)
        return batches

    assert asyncio.run(main()) == []


def test_rows_by_id_wait_for_each_id_and_a_cancelled_waiter_leaves_the_others_waiting():
    async def main():
        channel = Channel("summarize/entities")
        first = asyncio.create_task(channel.rows(["a", "b"]))
        doomed = asyncio.create_task(channel.rows(["b"]))
        channel.post("a", {"title": "A"})
        await asyncio.sleep(0.01)
        assert not first.done()
        doomed.cancel()  # its stage failed
        await asyncio.sleep(0.01)
        channel.post("b", {"title": "B"})
        return await asyncio.wait_for(first, 1)

    assert asyncio.run(main()) == [{"title": "A"}, {"title": "B"}]


def test_a_stage_served_from_cache_fills_its_channels_from_its_saved_frames(tmp_path):
    """The one generic path: every saved frame is offered, read once in a thread by the first
    reader; rows asked for by id (also by readers already waiting) come from that frame."""
    store = StageStore(tmp_path / "stages")
    entities = pd.DataFrame({"id": ["e1", "e2"], "title": ["ADA", "BOB"], "description": ["Ada.", "Bob."]})
    ref = store.save("summarize", "key", {"entities": entities, "relationships": entities.iloc[:0]}, {"items": 2})
    loads: list[str] = []

    def load(ref, frame):
        loads.append(frame)
        return store.load(ref, frame)

    async def main():
        channels = Channels()
        waiting = asyncio.create_task(channels.of("summarize", "entities").rows(["e2"]))
        await asyncio.sleep(0.01)
        channels.offer_saved(ref, load)
        rows = await asyncio.wait_for(waiting, 1)
        value, again = await asyncio.gather(channels.of("summarize", "entities").get(),
                                            channels.of("summarize", "entities").get())
        with pytest.raises(KeyError, match="no row e9"):
            await channels.of("summarize", "entities").rows(["e9"])
        return rows, value, again

    rows, value, again = asyncio.run(main())
    assert rows == [{"title": "BOB", "description": "Bob."}]
    assert value is again and value["title"].tolist() == ["ADA", "BOB"]
    assert loads == ["entities"], "read once, and only the frame asked for"


def test_offering_a_saved_frame_after_the_stage_put_its_value_changes_nothing(tmp_path):
    store = StageStore(tmp_path / "stages")
    ref = store.save("communities", "key", {"communities": pd.DataFrame({"id": ["saved"]})}, {})

    async def main():
        channels = Channels()
        made = pd.DataFrame({"id": ["made here"]})
        channels.publish("communities", {"communities": made})
        channels.offer_saved(ref, lambda *_: pytest.fail("a frame the stage made was loaded again"))
        return (await channels.of("communities", "communities").get()) is made

    assert asyncio.run(main())
