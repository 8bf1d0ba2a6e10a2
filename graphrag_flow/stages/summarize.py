"""The summarize stage: one description per entity and relationship candidate.

Offline, descriptions are merged deterministically (unique, in order, capped). With an LLM,
only items with more than one distinct description cost a request, and the request text is
a function of the descriptions alone, so the answer cache serves unchanged items for free.

Each item is published as it is done (`on_summarized`), as the record a community report reads
(`REPORT_FIELDS` and its description): reports start on their own members before this stage
ends, and entity texts go to their embeddings as they come.
"""

from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING, Awaitable, Callable, Optional

import pandas as pd

from graphrag_flow.aio import for_each_bounded
from graphrag_flow.errors import ItemFailedError
from graphrag_flow.hashing import sha256_json
from graphrag_flow.llm import EntitySummary
from graphrag_flow.progress import StageProgress

if TYPE_CHECKING:
    from graphrag_flow.llm import OpenAICompatibleClient

MAX_OFFLINE_DESCRIPTION_CHARS = 1000
#: Entities and relationships a summarize stage prepares and finishes on the event loop.
ITEMS_ON_LOOP_MAX = 5000
_SENTENCE_END = re.compile(r"[.!?](?=\s|$)")


def cap_text(text: str, max_chars: int) -> str:
    """Cut at the last sentence end before the cap (else at a word), marking the cut."""
    if len(text) <= max_chars:
        return text
    head = text[:max_chars]
    ends = [m.end() for m in _SENTENCE_END.finditer(head)]
    if ends and ends[-1] > max_chars // 2:
        return head[: ends[-1]].rstrip()
    cut = head.rsplit(" ", 1)[0] if " " in head else head
    return cut.rstrip() + " …"


def merge_descriptions_offline(descriptions: list[str], max_chars: int = MAX_OFFLINE_DESCRIPTION_CHARS) -> str:
    seen: list[str] = []
    for desc in descriptions:
        d = " ".join(desc.split())
        if d and d not in seen:
            seen.append(d)
    return cap_text(" ".join(seen), max_chars)


def summary_messages(system_prompt: str, name: str, descriptions: list[str]) -> list[dict]:
    """The entity_summary request: instructions, then the item's name and descriptions."""
    listing = "\n".join(f"- {d}" for d in descriptions)
    return [
        {"role": "system", "content": system_prompt},
        {"role": "user", "content": f"Name: {name}\nDescriptions:\n{listing}"},
    ]


SummarizeOne = Callable[[str, list[str]], Awaitable[str]]
#: Told of each finished item: its kind ("entities" or "relationships"), row and description.
OnSummarized = Callable[[str, int, str], None]


def offline_summarizer() -> SummarizeOne:
    async def summarize_one(name: str, descriptions: list[str]) -> str:
        return merge_descriptions_offline(descriptions)

    return summarize_one


#: Descriptions sent in one summary request, at most (the rest are rarely new information).
MAX_SUMMARY_INPUTS = 30


def llm_summarizer(client: "OpenAICompatibleClient", prompt: str) -> SummarizeOne:
    """A single description needs no request; several are merged by the model."""

    async def summarize_one(name: str, descriptions: list[str]) -> str:
        unique = list(dict.fromkeys(d.strip() for d in descriptions if d.strip()))
        if len(unique) <= 1:
            return unique[0] if unique else ""
        messages = summary_messages(prompt, name, sorted(unique)[:MAX_SUMMARY_INPUTS])
        answer: EntitySummary = await client.chat("summarize", "entity_summary", messages, f"description of {name}")
        return answer.description

    return summarize_one


async def summarize_descriptions(
    frames: dict[str, pd.DataFrame],
    summarize_one: SummarizeOne,
    concurrency: int,
    progress: StageProgress,
    on_summarized: Optional[OnSummarized] = None,
) -> tuple[dict[str, pd.DataFrame], list[ItemFailedError]]:
    """Give every entity and relationship candidate one `description` (in place of `descriptions`).

    Entities and relationships go through one pool of work, not one kind after the other:
    the relationships would otherwise wait for the slowest entity request. `on_summarized`
    hears of each item as it is done, so later work can start before the whole stage ends.
    """
    failures: list[ItemFailedError] = []
    # Preparing and finishing touch every item (tens of thousands on a large corpus), so many
    # items are done in a worker thread, not on the loop serving the requests in flight; a few
    # thousand take a millisecond or two, less than the hop to a thread.
    in_thread = sum(len(frame) for frame in frames.values()) > ITEMS_ON_LOOP_MAX
    names, work = await asyncio.to_thread(_work_items, frames) if in_thread else _work_items(frames)
    results: dict[str, list[str | None]] = {kind: [None] * len(frame) for kind, frame in frames.items()}

    async def one(item: tuple[str, int, str, list[str]]) -> None:
        kind, i, name, descriptions = item
        try:
            results[kind][i] = await summarize_one(name, list(descriptions))
        except ItemFailedError as exc:
            failures.append(exc)
        else:
            if on_summarized is not None:
                on_summarized(kind, i, results[kind][i])
            progress.advance()

    await for_each_bounded(work, one, concurrency)
    if in_thread:
        return await asyncio.to_thread(_summarized_frames, frames, names, results), failures
    return _summarized_frames(frames, names, results), failures


def _work_items(frames: dict[str, pd.DataFrame]) -> tuple[dict[str, list[str]], list[tuple[str, int, str, list[str]]]]:
    """Each item's name, and (kind, row, name, descriptions) of every item in the order to do them.

    Items with the most descriptions first: those are the ones that cost a request (one
    description needs none), so every request is on the wire before the free items are
    settled, and the longest come back first rather than last.
    """
    names = {
        kind: frame["title"].tolist() if kind == "entities"
        else [f"{s} -> {t}" for s, t in zip(frame["source"], frame["target"])]
        for kind, frame in frames.items()
    }
    work = [
        (kind, i, n, d)
        for kind, frame in frames.items()
        for i, (n, d) in enumerate(zip(names[kind], frame["descriptions"]))
    ]
    work.sort(key=lambda item: -len(item[3]))
    return names, work


def _summarized_frames(frames: dict[str, pd.DataFrame], names: dict[str, list[str]],
                       results: dict[str, list[str | None]]) -> dict[str, pd.DataFrame]:
    out: dict[str, pd.DataFrame] = {}
    for kind, frame in frames.items():
        done = frame.drop(columns=["descriptions"]).copy()
        done["description"] = [r if r is not None else "" for r in results[kind]]
        done["content_sha256"] = [sha256_json([n, list(d)]) for n, d in zip(names[kind], frame["descriptions"])]
        out[kind] = done
    return out


#: What a community report reads of each kind, besides `description` (and the degree it gets
#: from the communities stage).
REPORT_FIELDS = {"entities": ["title", "type", "frequency"], "relationships": ["source", "target", "weight"]}


def base_records(kind: str, frame: pd.DataFrame) -> list[tuple[str, dict]]:
    """(id, record without its description) per row of a candidates frame of `kind`; pandas, so
    call it in a worker thread. From column lists: `to_dict("records")` takes several times as
    long, between the last extraction and the first summary request."""
    names = REPORT_FIELDS[kind]
    columns = [frame[name].tolist() for name in names]
    return [(item_id, dict(zip(names, values))) for item_id, *values in zip(frame["id"].tolist(), *columns)]


def entity_columns(bases: list[tuple[str, dict]], descriptions: dict[str, str]) -> dict[str, list]:
    """The summarized entities as the entity embeddings read them (id, title, description):
    plain lists, made on the event loop (a frame is made in the embed stage's worker thread)."""
    return {
        "id": [i for i, _ in bases],
        "title": [r["title"] for _, r in bases],
        "description": [descriptions[i] for i, _ in bases],
    }
