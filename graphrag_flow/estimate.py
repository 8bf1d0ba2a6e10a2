"""What the next `index` of a project will send, before it runs: requests, tokens and dollars per
stage. It sends no request (README, "Estimate and budget").

- **extract** is exact on its prompt side: the input is read and chunked as `index` does, each
  text unit's graph_extraction request is built and looked up in the answer cache, and each one
  missing is counted with OpenAI's chat rule (graphrag_flow/llm/tokens.py), as the provider bills
  it. Cached answers cost nothing, so an unchanged folder estimates 0.
- **embed-text_unit_text** is exact too: the tokens of the text units the served index has no
  vector for (a unit's id names its document, so every unit of a changed document is new), in
  the batches the embed stage plans.
- What depends on answers not given yet (how long extraction answers are, how many entities the
  model finds, how long it writes) is a range. `low` is a floor, what the run costs at least:
  each extraction answer at least an empty graph (`EMPTY_EXTRACTION`), and nothing for the
  stages that follow, since a model that finds no entity makes no summary, community or report.
  `high` is a central figure proportional to the new extraction work (its requests and its exact
  prompt tokens) times `SPREAD`. The proportions are this project's own when its last completed
  run recorded usage (`output/_manifest.json`), else `DEFAULT_RATIOS`, measured on peps-mini
  against the fake server (README, "Estimate and budget"). After a change to an index that
  exists, `high` is also at least what the change can touch (`incremental_bounds`): the
  entities its new text units may hold, their summaries and vectors, and every report, since
  communities are found again on the whole graph.

So a run is refused before it starts only when it is sure to cross its budget (`low` does), and
the spend gate (graphrag_flow/llm/spend.py) holds the rest.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from graphrag_flow.config import Settings, TokenPrices
from graphrag_flow.llm.answer_cache import AnswerCache
from graphrag_flow.llm.structured import chat_answer_key
from graphrag_flow.llm.tokens import chat_prompt_tokens, count_text_tokens, plan_batches
from graphrag_flow.prompts import load_prompt
from graphrag_flow.stages.chunk import chunk_documents
from graphrag_flow.stages.extract.llm import extraction_requests
from graphrag_flow.stages.load import load_documents
from graphrag_flow.storage.outputs import MANIFEST
from graphrag_flow.storage.paths import ProjectPaths
from graphrag_flow.tables import VECTOR_FIELDS

#: `high` of an answer-dependent figure: its central value times this.
SPREAD = 1.6
#: The least an extraction answer can be: an empty graph.
EMPTY_EXTRACTION = '{"entities":[],"relationships":[]}'


@dataclass(frozen=True)
class Ratios:
    """A stage's work per unit of new extraction work: requests per extraction request, tokens
    per extraction prompt token, and the share of its tokens that are prompt (chat) tokens."""

    requests: float
    tokens: float
    prompt_share: float


#: peps-mini (12 PEPs, 107 text units) against tests/fake_openai.py, 2026-12-07: extract
#: 107 requests, 143,714 prompt + 76,240 completion tokens; the rest per extraction request
#: and per extraction prompt token (README, "Estimate and budget").
DEFAULT_RATIOS = {
    "extract": Ratios(1.0, 76_240 / 143_714, 0.0),  # completion tokens per prompt token
    "summarize": Ratios(109 / 107, 34_780 / 143_714, 26_599 / 34_780),
    "reports": Ratios(148 / 107, 133_105 / 143_714, 105_532 / 133_105),
    "embed-entity_description": Ratios(32 / 107, 26_784 / 143_714, 0.0),
    "embed-community_full_content": Ratios(10 / 107, 19_626 / 143_714, 0.0),
}
#: The stages whose figures are derived from extraction's.
DERIVED = ("summarize", "reports", "embed-entity_description", "embed-community_full_content")


def _span(low: float, high: float) -> dict[str, int]:
    return {"low": int(math.floor(low)), "high": int(math.ceil(high))}


def _cost_span(prices: TokenPrices | None, low: float, high: float) -> dict[str, float] | None:
    return None if prices is None else {"low": round(low, 6), "high": round(high, 6)}


def history_ratios(manifest: dict | None) -> dict[str, Ratios] | None:
    """This project's proportions, from its last completed run's usage (None: no usable usage)."""
    usage = (manifest or {}).get("usage") or {}
    stages = usage.get("stages") or {}
    ext = stages.get("extract") or {}
    requests, prompt = ext.get("requests", 0), ext.get("prompt_tokens", 0)
    if not requests or not prompt or ext.get("counted_requests"):
        return None
    ratios = {"extract": Ratios(1.0, ext["completion_tokens"] / prompt, 0.0)}
    for stage in DERIVED:
        s = stages.get(stage) or {}
        tokens = s.get("prompt_tokens", 0) + s.get("completion_tokens", 0) + s.get("embedding_tokens", 0)
        ratios[stage] = Ratios(s.get("requests", 0) / requests, tokens / prompt,
                               s.get("prompt_tokens", 0) / tokens if tokens and s.get("prompt_tokens") else 0.0)
    return ratios


def estimate_project(root: Path, settings: Settings) -> dict[str, Any]:
    """The estimate's JSON form: `{"stages": {...}, "total": {...}, "basis": ...}` (see the
    module docstring). Reads the input, the answer cache and the last manifest; writes nothing."""
    paths = ProjectPaths(Path(root).resolve())
    llm = settings.llm
    prices = llm.price_per_million_tokens
    names = ("extract", *DERIVED[:2], *(f"embed-{f}" for f in VECTOR_FIELDS))
    if llm.provider == "offline":
        zero = {"requests": _span(0, 0), "tokens": _span(0, 0), "cost_usd": _cost_span(prices, 0, 0)}
        return _with_total({name: dict(zero) for name in names}, prices, "offline: no request is sent")

    documents = load_documents(paths.root, settings.input).documents
    units = chunk_documents(documents, settings.chunks)
    prompt = load_prompt("graph_extraction", llm.prompts_dir, paths.root)
    requests = [(uid, text, messages) for uid, text in zip(units["id"], units["text"])
                for messages in extraction_requests(prompt, text, settings.chunks.size)]
    keys = [chat_answer_key(llm, "graph_extraction", messages) for _, _, messages in requests]
    cached: set[str] = set()
    if paths.answer_cache.exists():
        cache = AnswerCache(paths.answer_cache)
        try:
            cached = set(cache.get_many(keys))
        finally:
            cache.close()
    missing = [m for (_, _, m), key in zip(requests, keys) if key not in cached]
    ext_requests = len(missing)
    ext_prompt = sum(chat_prompt_tokens(m) for m in missing)
    # text units the served index has no vector for (a unit's id names its document and place)
    served = _served_unit_ids(paths)
    new_units = [text for uid, text in zip(units["id"], units["text"]) if uid not in served]

    manifest = _manifest(paths)
    history = history_ratios(manifest)
    ratios = history or DEFAULT_RATIOS
    bounds = incremental_bounds(manifest, ext_requests, len(new_units)) if manifest else {}
    stages: dict[str, dict] = {}
    least = ext_requests * count_text_tokens(EMPTY_EXTRACTION)
    # a short text unit may still have a long answer: at least the usual answer per request
    last = (((manifest or {}).get("usage") or {}).get("stages") or {}).get("extract") or {}
    per_answer = last["completion_tokens"] / last["requests"] if last.get("requests") else 76_240 / 107
    completion = max(least, ratios["extract"].tokens * ext_prompt * SPREAD, ext_requests * per_answer * SPREAD)
    stages["extract"] = _chat_stage(prices, _span(ext_requests, ext_requests), ext_prompt, ext_prompt,
                                    least, completion)
    stages["extract"]["exact"] = ["requests", "prompt_tokens"]
    for stage in DERIVED:
        r = ratios[stage]
        bound_requests, bound_tokens = bounds.get(stage, (0, 0))
        req = _span(0, max(r.requests * ext_requests * SPREAD, bound_requests))
        high = max(r.tokens * ext_prompt * SPREAD, bound_tokens)
        if stage.startswith("embed-"):
            stages[stage] = _embed_stage(prices, req, 0, high)
        else:
            share = r.prompt_share or DEFAULT_RATIOS[stage].prompt_share
            stages[stage] = _chat_stage(prices, req, 0, high * share, 0, high * (1 - share))
    # text units' own vectors: exact, batched as the embed stage plans them
    limit = llm.embedding_batch_max_tokens
    unit_tokens = sum(min(count_text_tokens(text), limit) for text in new_units)
    batches = len(plan_batches(new_units, llm.embedding_batch_size, limit)) if new_units else 0
    stages["embed-text_unit_text"] = _embed_stage(prices, _span(batches, batches), unit_tokens, unit_tokens)
    stages["embed-text_unit_text"]["exact"] = ["requests", "embedding_tokens"]
    basis = ("this project's last completed run" if history else
             'defaults measured on peps-mini (README, "Estimate and budget")')
    result = _with_total({name: stages[name] for name in names}, prices, basis)
    result["new_text_units"] = len(new_units)
    result["cached_extraction_requests"] = len(requests) - ext_requests
    return result


#: What one item of a later stage cost in the peps-mini run of DEFAULT_RATIOS (tokens): a
#: summary request, a report request, an entity's vector, a report's vector.
DEFAULT_PER_ITEM = {"summarize": 34_780 / 109, "reports": 133_105 / 148,
                    "embed-entity_description": 26_784 / 499, "embed-community_full_content": 19_626 / 148}


def incremental_bounds(manifest: dict, ext_requests: int, new_units: int) -> dict[str, tuple[float, float]]:
    """Highs of an incremental run's later stages, from the served index's tables: requests,
    tokens. The new text units find entities at the index's rate (times SPREAD); each may need
    its summary and its relationships' summaries redone (merged with the old descriptions) and
    its vector; and the communities are found again on the whole graph, so any report may be
    rewritten (the high is all of them, not a share). Each item costs what one did in the last
    run that made some (else in peps-mini's), times SPREAD."""
    tables = manifest.get("tables") or {}
    stages = ((manifest.get("usage") or {}).get("stages")) or {}
    units = max(1, tables.get("text_units", 0))
    entities, relationships = tables.get("entities", 0), tables.get("relationships", 0)
    communities = tables.get("communities", 0)

    def per(stage: str) -> float:
        """Tokens per request of the last run (an embedding request holds one row or more, so
        this is at least a row's), else per item of peps-mini's run."""
        s = stages.get(stage) or {}
        n = s.get("requests", 0)
        tokens = s.get("prompt_tokens", 0) + s.get("completion_tokens", 0) + s.get("embedding_tokens", 0)
        return tokens / n if tokens and n else DEFAULT_PER_ITEM[stage]

    found = min(entities, entities / units * ext_requests * SPREAD)
    summaries = found + min(relationships, relationships / units * ext_requests * SPREAD)
    reports = communities if ext_requests else 0
    touched = min(entities, entities / units * max(ext_requests, new_units) * SPREAD)
    rewritten = communities if new_units or ext_requests else 0
    return {
        "summarize": (summaries, summaries * per("summarize") * SPREAD),
        "reports": (reports, reports * per("reports") * SPREAD),
        # streamed rows go out in small batches: up to one request per row
        "embed-entity_description": (touched, touched * per("embed-entity_description") * SPREAD),
        "embed-community_full_content": (rewritten, rewritten * per("embed-community_full_content") * SPREAD),
    }


def _served_unit_ids(paths: ProjectPaths) -> set[str]:
    """Ids of the text units of the served index (empty when there is none)."""
    try:
        import pyarrow.parquet as pq

        return set(pq.read_table(paths.output / "text_units.parquet", columns=["id"]).column("id").to_pylist())
    except (OSError, ValueError, KeyError):
        return set()


def _manifest(paths: ProjectPaths) -> dict | None:
    try:
        return json.loads((paths.output / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _chat_stage(prices: TokenPrices | None, requests: dict, prompt_low: float, prompt_high: float,
                completion_low: float, completion_high: float) -> dict:
    return {
        "requests": requests,
        "prompt_tokens": _span(prompt_low, prompt_high),
        "completion_tokens": _span(completion_low, completion_high),
        "tokens": _span(prompt_low + completion_low, prompt_high + completion_high),
        "cost_usd": None if prices is None else _cost_span(
            prices, (prompt_low * prices.prompt + completion_low * prices.completion) / 1e6,
            (prompt_high * prices.prompt + completion_high * prices.completion) / 1e6),
    }


def _embed_stage(prices: TokenPrices | None, requests: dict, low: float, high: float) -> dict:
    return {
        "requests": requests,
        "embedding_tokens": _span(low, high),
        "tokens": _span(low, high),
        "cost_usd": None if prices is None else _cost_span(prices, low * prices.embedding / 1e6,
                                                           high * prices.embedding / 1e6),
    }


def _with_total(stages: dict[str, dict], prices: TokenPrices | None, basis: str) -> dict[str, Any]:
    def total(key: str) -> dict:
        return {end: sum(s[key][end] for s in stages.values()) for end in ("low", "high")}

    cost = None
    if prices is not None:
        cost = {end: round(sum(s["cost_usd"][end] for s in stages.values()), 6) for end in ("low", "high")}
    return {"stages": stages, "total": {"requests": total("requests"), "tokens": total("tokens"), "cost_usd": cost},
            "basis": basis}
