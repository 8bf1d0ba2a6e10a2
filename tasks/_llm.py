"""The LLM side of stage tasks: one client per stage run, and what identifies its answers."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import AsyncIterator

from graphrag_flow.config import Settings
from graphrag_flow.hashing import sha256_text
from graphrag_flow.prompts import load_prompt
from tasks._common import current_run


def is_offline(settings: Settings) -> bool:
    return settings.llm.provider == "offline"


def llm_identity(settings: Settings, root, prompt_name: str | None) -> dict:
    """What makes a stage's LLM answers what they are (goes into its cache key; no secrets)."""
    if is_offline(settings):
        return {"provider": "offline"}
    identity = {
        "provider": settings.llm.provider,
        "chat_model": settings.llm.chat_model,
        "temperature": settings.llm.temperature,
    }
    if prompt_name:
        identity["prompt"] = sha256_text(load_prompt(prompt_name, settings.llm.prompts_dir, root))
    return identity


#: Who gets a free request slot first (lower first): each chat stage waits for the one before
#: it (summaries need every extraction, a report its members' summaries), so the earliest
#: stage's requests unblock the most; embeddings feed no later request and take the slots
#: the chat stages leave free (graphrag_flow/llm/limiter.py). Among equals, first come first.
STAGE_PRIORITY = {"extract": 0, "summarize": 1, "reports": 2}
EMBEDDING_PRIORITY = 3


def stage_priority(stage: str) -> int:
    return STAGE_PRIORITY.get(stage, EMBEDDING_PRIORITY)


def items_in_progress(max_concurrency: int) -> int:
    """How many items an LLM stage works on at once: twice the request limit.

    An item spends part of its life off the wire (answer-cache lookup and store in a thread,
    building the prompt, validating the answer). With only `max_concurrency` items in
    progress those moments left limiter slots empty: 4.3 of 8 requests in flight on average
    at 200 ms latency (benchmarks/llm_throughput.py). The limiter still caps the requests on
    the wire at `llm.max_concurrency`, across all stages.
    """
    return 2 * max_concurrency


def prompt(name: str) -> str:
    run = current_run()
    return load_prompt(name, run.settings.llm.prompts_dir, run.root)


@asynccontextmanager
async def llm_client(stage: str) -> AsyncIterator[object | None]:
    """An OpenAI-compatible client opened for this stage run (None offline).

    Opened here, in the coroutine that uses it, and closed only after its requests have
    finished: a client is never shared across stages running in other threads or loops.
    Its connections are the run's (graphrag_flow/llm/connections.py), kept open between stages.
    """
    run = current_run()
    if is_offline(run.settings):
        yield None
        return
    from graphrag_flow.llm.client import OpenAICompatibleClient

    client = OpenAICompatibleClient(
        run.settings.llm,
        # resolved when the run started (flows/secrets.py): never looked up per stage
        api_key=run.settings.llm.api_key.get_secret_value() if run.settings.llm.api_key is not None else None,
        limiter=run.limiter,
        stats=run.stats,
        cache=run.cache,
        read_cache=not run.full,
        pool=run.pool,
        priority=stage_priority(stage),
    )
    async with client:
        yield client
