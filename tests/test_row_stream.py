"""The row stream that lets embeddings start before their frame is finished."""

from __future__ import annotations

import asyncio

from graphrag_flow.row_stream import RowStream


def test_whole_batches_as_they_wait_then_the_rest_at_close():
    async def main() -> list[list[str]]:
        stream = RowStream()
        got: list[list[str]] = []

        async def consume() -> None:
            async for chunk in stream.chunks(4):
                got.append([row_id for row_id, _ in chunk])

        consumer = asyncio.create_task(consume())
        for i in range(6):
            stream.post(f"r{i}", f"text {i}")
        await asyncio.sleep(0.01)
        assert got == [["r0", "r1", "r2", "r3"]]  # a whole batch; r4, r5 wait for more or the close
        stream.post("r1", "posted again")  # a retried producer: ignored, never a duplicate in a batch
        for i in range(6, 9):
            stream.post(f"r{i}", f"text {i}")
        await asyncio.sleep(0.01)
        stream.close()
        stream.post("late", "after close")  # the frame's full pass embeds it
        await asyncio.wait_for(consumer, 1)
        return got

    assert asyncio.run(main()) == [["r0", "r1", "r2", "r3"], ["r4", "r5", "r6", "r7"], ["r8"]]


def test_a_stream_nobody_posts_to_ends_when_closed():
    async def main() -> list:
        stream = RowStream()
        chunks = []

        async def consume() -> None:
            async for chunk in stream.chunks(16):
                chunks.append(chunk)

        consumer = asyncio.create_task(consume())
        await asyncio.sleep(0.01)
        stream.close()  # what the embed stage does when its frame came from Prefect's cache
        await asyncio.wait_for(consumer, 1)
        return chunks

    assert asyncio.run(main()) == []
