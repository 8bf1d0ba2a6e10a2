"""The LLM strategy of the extract stage: one graph_extraction request per text unit (a unit
longer than chunks are made is sent in pieces and the answers merged).

Each request's text is a function of the unit's text alone, so the answer cache serves any unit
whose text did not change, whatever run or order it comes in.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from graphrag_flow.llm import GraphExtraction
from graphrag_flow.prompts import chat_messages
from graphrag_flow.llm import get_encoding
from graphrag_flow.stages.extract import ExtractOne

if TYPE_CHECKING:
    from graphrag_flow.llm import OpenAICompatibleClient


def split_tokens(text: str, max_tokens: int) -> list[str]:
    enc = get_encoding()
    tokens = enc.encode(text, disallowed_special=())
    return [enc.decode(tokens[i : i + max_tokens]) for i in range(0, len(tokens), max_tokens)] or [""]


def extraction_requests(prompt: str, text: str, max_unit_tokens: int) -> list[list[dict]]:
    """The graph_extraction requests of one text unit: one per piece of at most
    max(256, `max_unit_tokens`) tokens (one, unless the unit is longer than chunks are made)."""
    return [chat_messages(prompt, piece) for piece in split_tokens(text, max(256, max_unit_tokens))]


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
