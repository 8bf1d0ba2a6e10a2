"""The LLM side of stage tasks: what identifies a stage's answers, one client per stage run, and
the skeleton the extract, summarize and reports tasks share (`item_stage`)."""

from __future__ import annotations

from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, AsyncIterator, Iterable

from graphrag_flow.channels import Channel
from graphrag_flow.config import Settings, secret_value
from graphrag_flow.errors import ItemFailedError, StageFailedError
from graphrag_flow.hashing import sha256_text
from graphrag_flow.progress import StageProgress
from graphrag_flow.prompts import load_prompt
from tasks.context import RunContext

if TYPE_CHECKING:
    from graphrag_flow.llm import OpenAICompatibleClient

#: The prompt each LLM stage sends (its hash is part of the stage's key).
STAGE_PROMPTS = {"extract": "graph_extraction", "summarize": "entity_summary", "reports": "community_report"}

#: Who gets a free request slot first (lower first): each chat stage waits for the one before
#: it (summaries need every extraction, a report its members' summaries), so the earliest
#: stage's requests unblock the most; embeddings feed no later request and take the slots
#: the chat stages leave free (graphrag_flow/llm/limiter.py). Among equals, first come first.
STAGE_PRIORITY = {"extract": 0, "summarize": 1, "reports": 2}
EMBEDDING_PRIORITY = 3


def llm_identities(settings: Settings, root: Path) -> dict[str, dict]:
    """Per LLM stage, what makes its answers what they are (part of its key; no secrets). Reads
    the prompts, so a missing or empty prompt file fails the run before any stage."""
    if settings.llm.provider == "offline":
        return {stage: {"provider": "offline"} for stage in STAGE_PROMPTS}
    identities = {}
    for stage, prompt in STAGE_PROMPTS.items():
        identities[stage] = {
            "provider": settings.llm.provider,
            "chat_model": settings.llm.chat_model,
            "temperature": settings.llm.temperature,
            "prompt": sha256_text(load_prompt(prompt, settings.llm.prompts_dir, root)),
        }
    identities["reports"]["report_max_input_tokens"] = settings.llm.report_max_input_tokens
    return identities


def stage_priority(stage: str) -> int:
    return STAGE_PRIORITY.get(stage, EMBEDDING_PRIORITY)


def items_in_progress(max_concurrency: int) -> int:
    """How many items an LLM stage works on at once: twice the request limit.

    An item spends part of its life off the wire (answer-cache lookup and store in a thread,
    building the prompt, validating the answer); with only `max_concurrency` items in progress
    those moments leave limiter slots empty (docs/performance.md). The limiter still caps the
    requests on the wire at `llm.max_concurrency`, across all stages.
    """
    return 2 * max_concurrency


@asynccontextmanager
async def llm_client(run: RunContext, stage: str) -> AsyncIterator["OpenAICompatibleClient | None"]:
    """An OpenAI-compatible client opened for this stage run (None offline).

    Opened here, in the coroutine that uses it, and closed only after its requests have
    finished: a client is never shared across stages running in other threads or loops.
    Its connections are the run's (graphrag_flow/llm/connections.py), kept open between stages.
    """
    if run.offline:
        yield None
        return
    from graphrag_flow.llm import OpenAICompatibleClient

    client = OpenAICompatibleClient(
        run.settings.llm,
        # resolved when the run started (flows/secret_lookup.py): never looked up per stage
        api_key=secret_value(run.settings.llm.api_key),
        limiter=run.limiter,
        stats=run.stats,
        cache=run.cache,
        read_cache=not run.full,
        pool=run.pool,
        priority=stage_priority(stage),
        gate=run.gate,
        entra=run.entra,
        pacer=run.pacer,
    )
    async with client:
        yield client


@dataclass
class ItemWork:
    """What an item stage's body works with, and what it reports back."""

    #: The stage's LLM client; None offline (the body picks its offline strategy then).
    client: "OpenAICompatibleClient | None"
    #: How many items to work on at once.
    concurrency: int
    progress: StageProgress
    #: The items that failed: set by the body; the stage fails listing them when it ends.
    failures: list[ItemFailedError] = field(default_factory=list)


@asynccontextmanager
async def item_stage(run: RunContext, stage: str, total: int, *, offline_concurrency: int = 1,
                     streams: Iterable[Channel] = ()) -> AsyncIterator[ItemWork]:
    """The skeleton of a stage that works through items (text units, descriptions, communities):
    a progress bar over `total` items, the stage's LLM client and how many items to work on at
    once. When the body ends, the row streams of `streams` end (a retried attempt's rows are left
    to the whole value), and the stage fails naming every failed item (its finished items are
    in the answer cache), or its bar is finished."""
    progress = StageProgress(stage, total)
    try:
        async with llm_client(run, stage) as client:
            concurrency = offline_concurrency if client is None else items_in_progress(run.settings.llm.max_concurrency)
            work = ItemWork(client, concurrency, progress)
            yield work
    finally:
        for channel in streams:
            channel.end_rows()
    if work.failures:
        raise StageFailedError(stage, work.failures)
    progress.finish()
