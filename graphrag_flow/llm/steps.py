"""The three LLM steps (extract, summarize, report) on top of the client.

Each request's text is a function of its item's content alone, so the answer cache
serves any item whose content did not change, whatever run or order it comes in.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from graphrag_flow.chunking import get_encoding
from graphrag_flow.extraction import ExtractOne
from graphrag_flow.hashing import sha256_text
from graphrag_flow.llm.schemas import CommunityReportAnswer, EntitySummary, GraphExtraction
from graphrag_flow.reports import ReportOne, SubReports, local_context, report_context
from graphrag_flow.summarize import SummarizeOne, summary_messages

if TYPE_CHECKING:
    from graphrag_flow.llm.client import OpenAICompatibleClient

#: Descriptions sent in one summary request, at most (the rest are rarely new information).
MAX_SUMMARY_INPUTS = 30


def items_in_progress(max_concurrency: int) -> int:
    """How many items an LLM stage works on at once: twice the request limit.

    An item spends part of its life off the wire (answer-cache lookup and store in a thread,
    building the prompt, validating the answer). With only `max_concurrency` items in
    progress those moments left limiter slots empty: 4.3 of 8 requests in flight on average
    at 200 ms latency (benchmarks/llm_throughput.py). The limiter still caps the requests on
    the wire at `llm.max_concurrency`, across all stages.
    """
    return 2 * max_concurrency


def _messages(system: str, user: str) -> list[dict]:
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def split_tokens(text: str, max_tokens: int) -> list[str]:
    enc = get_encoding()
    tokens = enc.encode(text, disallowed_special=())
    return [enc.decode(tokens[i : i + max_tokens]) for i in range(0, len(tokens), max_tokens)] or [""]


def extraction_requests(prompt: str, text: str, max_unit_tokens: int) -> list[list[dict]]:
    """The graph_extraction requests of one text unit: one per piece of at most
    max(256, `max_unit_tokens`) tokens (one, unless the unit is longer than chunks are made)."""
    return [_messages(prompt, piece) for piece in split_tokens(text, max(256, max_unit_tokens))]


def llm_extractor(client: "OpenAICompatibleClient", prompt: str, max_unit_tokens: int) -> ExtractOne:
    """One request per text unit; a unit over `max_unit_tokens` is sent in pieces, answers merged."""

    async def extract_one(unit_id: str, text: str) -> GraphExtraction:
        requests = extraction_requests(prompt, text, max_unit_tokens)
        entities, relationships = [], []
        for n, messages in enumerate(requests):
            item = f"text unit {unit_id[:12]}" + (f" part {n + 1}/{len(requests)}" if len(requests) > 1 else "")
            answer = await client.chat("extract", "graph_extraction", messages, item)
            entities += answer.entities
            relationships += answer.relationships
        return GraphExtraction(entities=entities, relationships=relationships)

    return extract_one


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


#: Entities and relationships a community may have for its report context to be made on the
#: event loop; a bigger one is made in a worker thread.
CONTEXT_ON_LOOP_MAX_ITEMS = 300


def llm_reporter(client: "OpenAICompatibleClient", prompt: str, max_input_tokens: int) -> ReportOne:
    async def report_one(members: list[dict], rels: list[dict], sub_reports: SubReports):
        # A small community's context is made on the loop: from plain records it takes ~2 ms,
        # and a worker thread per report cost more than that in GIL hand-offs with the loop
        # serving 64 requests (reports reached the server 0.2-0.8 s after their context was
        # ready). A big one (sorting thousands of relationships, tokenizing up to the budget)
        # held the loop 20-350 ms on the 688-PEP corpus, so it goes to a thread. The stage
        # loads the tokenizer in a thread before the first report.
        if len(members) + len(rels) <= CONTEXT_ON_LOOP_MAX_ITEMS:
            context = local_context(members, rels, max_input_tokens)
        else:
            context = await asyncio.to_thread(local_context, members, rels, max_input_tokens)
        if context is None:  # too big: report from the sub-communities' reports (GraphRAG's way)
            subs = await sub_reports()
            context = await asyncio.to_thread(report_context, members, rels, subs, max_input_tokens)
        item = f"community report of {', '.join(m['title'] for m in members[:3])}"
        answer: CommunityReportAnswer = await client.chat("reports", "community_report", _messages(prompt, context), item)
        return answer, sha256_text(context)

    return report_one
