"""Stage cache keys: one function computes each, once per stage per run.

A key is a content hash of what the stage's output depends on: its upstream stages' keys, the
settings that change its output, and the code version; never a path or a run id. So a second
run on unchanged input skips finished stages across processes, and a code change never serves
a stale result. The flow computes every key (`stage_keys`) and passes each to its task as the
`key` parameter: Prefect's cache key (`cache_key_fn` returns it), and the stage store's name for
the stage's checkpoint.

The code version hashes the three packages whole (the domain, the tasks, the flows), not each
stage's own modules: a stage's output depends on helpers anywhere in the domain (hashing,
tables, the tokenizer), and a missed one would serve stale results. A code change therefore
recomputes every stage once; the answer cache, keyed on content alone, still serves every LLM
answer.
"""

from __future__ import annotations

from typing import Any

import flows
import graphrag_flow
import tasks
from graphrag_flow.config import Settings
from graphrag_flow.hashing import code_version, sha256_json

CODE_VERSION = code_version(graphrag_flow, tasks, flows)


def stage_key(stage: str, inputs: dict[str, Any]) -> str:
    """The cache key of `stage` from its inputs (upstream keys, settings, identities)."""
    return sha256_json({"stage": stage, "code": CODE_VERSION, **inputs})


def stage_keys(documents_key: str, settings: Settings, identities: dict[str, dict]) -> dict[str, str]:
    """The key of every cached stage of a run whose documents have `documents_key`.

    `identities` are the LLM stages' (tasks/llm_stage.py `llm_identities`). The summarize,
    communities and reports stages start before their upstream stages end, so they are keyed on
    those stages' keys rather than on their outputs.
    """
    chunk = stage_key("chunk", {"documents": documents_key, "chunking": settings.chunks.model_dump()})
    extract = stage_key("extract", {"text_units": chunk, "llm": identities["extract"]})
    summarize = stage_key("summarize", {"extractions": extract, "llm": identities["summarize"]})
    communities = stage_key("communities", {"extractions": extract, "clustering": settings.graph.model_dump()})
    reports = stage_key("reports", {"documents": documents_key, "text_units": chunk, "communities": communities,
                                    "summaries": summarize, "llm": identities["reports"]})
    return {"chunk": chunk, "extract": extract, "summarize": summarize, "communities": communities,
            "reports": reports}
