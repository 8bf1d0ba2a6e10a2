"""Structured chat requests: the schema each one carries, and its answer-cache key.

A chat request asks for one of the answer schemas (graphrag_flow/llm/schemas.py) by name,
with `response_format` json_schema in strict mode. A server without json_schema support
answers 400 to that; the client then sends `{"type": "json_object"}` with the schema in the
system prompt instead, for the rest of the run (graphrag_flow/llm/client.py). Both modes ask
for, and are validated against, the same schema, so they share one answer-cache key.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from graphrag_flow.config import LLMSettings
from graphrag_flow.llm.answer_cache import answer_key
from graphrag_flow.llm.schemas import ANSWER_MODELS, strict_json_schema


def chat_answer_key(settings: LLMSettings, schema_name: str, messages: list[dict]) -> str:
    """The answer cache's key of one chat request (what `graphrag-flow status` looks up too)."""
    return answer_key(settings.chat_model, messages, schema_name, strict_schema(schema_name), settings.temperature)


def chat_body(settings: LLMSettings, schema_name: str, messages: list[dict], json_object: bool) -> dict[str, Any]:
    """The body of POST /chat/completions, in json_schema mode or the json_object fallback."""
    schema = strict_schema(schema_name)
    return {
        "model": settings.chat_model,
        "messages": with_schema_prompt(messages, schema_name, schema) if json_object else messages,
        "response_format": {"type": "json_object"} if json_object else {
            "type": "json_schema",
            "json_schema": {"name": schema_name, "strict": True, "schema": schema},
        },
        "temperature": settings.temperature,
    }


@lru_cache(maxsize=None)
def _strict_schema_json(schema_name: str) -> str:
    return json.dumps(strict_json_schema(ANSWER_MODELS[schema_name]))


@lru_cache(maxsize=None)
def strict_schema(schema_name: str) -> dict[str, Any]:
    """One shared dict per schema, read-only by contract (hashed into answer keys, serialized
    into request bodies): a fresh copy per request shows in the event loop's CPU at 64
    requests in flight (docs/llm-client.md)."""
    return json.loads(_strict_schema_json(schema_name))


def with_schema_prompt(messages: list[dict], schema_name: str, schema: dict) -> list[dict]:
    """json_object mode: the schema travels in the system message instead of response_format."""
    note = (f"JSON schema name: {schema_name}\n"
            f"Answer with one JSON object that validates against this JSON schema:\n{json.dumps(schema)}")
    out = [dict(m) for m in messages]
    for m in out:
        if m.get("role") == "system" and isinstance(m.get("content"), str):
            m["content"] = m["content"].rstrip() + "\n\n" + note
            return out
    return [{"role": "system", "content": note}, *out]
