"""The offline strategy of the extract stage: the rules (rules/) in a worker thread, each answer
cached like an LLM's, so an incremental offline run extracts only new or changed text units."""

from __future__ import annotations

import asyncio
import functools
from typing import TYPE_CHECKING, Callable

from graphrag_flow.hashing import package_files_sha256, sha256_parts
from graphrag_flow.llm import GraphExtraction
from graphrag_flow.stages.extract import ExtractOne

if TYPE_CHECKING:
    from graphrag_flow.llm import AnswerCache


@functools.cache
def offline_version() -> str:
    """Hash of the rules (their modules and word files), once per process: a changed rule set
    must not serve answers cached by the old one."""
    from graphrag_flow.stages.extract import rules

    return package_files_sha256(rules)[:16]


def offline_answer_key(text: str, version: str | None = None) -> str:
    """The answer cache's key of a text unit's rule-based extraction."""
    return sha256_parts("offline-extract", version or offline_version(), text)


def offline_extractor(cache: AnswerCache | None, on_cache_hit: Callable[[], None] | None = None) -> ExtractOne:
    """Rule-based extraction in a worker thread, its answers cached like an LLM's.

    Caching makes an incremental offline run extract only new or changed text units;
    `on_cache_hit` counts each served answer, so the run summary says so (cache hits).
    """
    from graphrag_flow.stages.extract.rules import extract_offline

    version = offline_version()

    async def extract_one(unit_id: str, text: str) -> GraphExtraction:
        key = offline_answer_key(text, version)
        if cache is not None:
            hit = cache.get(key)
            if hit is not None:
                if on_cache_hit is not None:
                    on_cache_hit()
                return GraphExtraction.model_validate_json(hit)
        answer = await asyncio.to_thread(extract_offline, text)
        if cache is not None:
            cache.put(key, answer.model_dump_json())
        return answer

    return extract_one
