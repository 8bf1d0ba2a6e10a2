"""What the next `index` of a project will send, before it runs: requests, tokens and dollars per
stage. It sends no request (README, "Estimate and budget").

- **extract** is exact on its prompt side: the input is read and chunked as `index` does, each
  text unit's graph_extraction request is built and looked up in the answer cache, and each one
  missing is counted with OpenAI's chat rule (graphrag_flow/llm/tokens.py), as the provider bills
  it. Cached answers cost nothing, so an unchanged folder estimates 0.
- **embed-text_unit_text** is exact too: the tokens of the new text units (those whose
  extraction is not all cached), in the batches the embed stage plans.
- What depends on answers not given yet (how long extraction answers are, how many entities the
  model finds, how long it writes) is a range. `low` is a floor, what the run costs at least:
  each extraction answer at least an empty graph (`EMPTY_EXTRACTION`), and nothing for the
  stages that follow, since a model that finds no entity makes no summary, community or report.
  `high` is a central figure proportional to the new extraction work (its requests and its exact
  prompt tokens) times `SPREAD`. The proportions are this project's own when its last completed
  run recorded usage (`output/_manifest.json`), else `DEFAULT_RATIOS`, measured on peps-mini
  against the fake server (README, "Estimate and budget").

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
    missing = [(uid, text, m) for (uid, text, m), key in zip(requests, keys) if key not in cached]
    new_units = list(dict.fromkeys((uid, text) for uid, text, _ in missing))
    ext_requests = len(missing)
    ext_prompt = sum(chat_prompt_tokens(m) for _, _, m in missing)

    history = history_ratios(_manifest(paths))
    ratios = history or DEFAULT_RATIOS
    stages: dict[str, dict] = {}
    least = ext_requests * count_text_tokens(EMPTY_EXTRACTION)
    completion = max(least, ratios["extract"].tokens * ext_prompt * SPREAD)
    stages["extract"] = _chat_stage(prices, _span(ext_requests, ext_requests), ext_prompt, ext_prompt,
                                    least, completion)
    stages["extract"]["exact"] = ["requests", "prompt_tokens"]
    for stage in DERIVED:
        r = ratios[stage]
        req = _span(0, r.requests * ext_requests * SPREAD)
        high = r.tokens * ext_prompt * SPREAD
        if stage.startswith("embed-"):
            stages[stage] = _embed_stage(prices, req, 0, high)
        else:
            stages[stage] = _chat_stage(prices, req, 0, high * r.prompt_share, 0, high * (1 - r.prompt_share))
    # text units' own vectors: exact, batched as the embed stage plans them
    limit = llm.embedding_batch_max_tokens
    unit_tokens = sum(min(count_text_tokens(text), limit) for _, text in new_units)
    batches = len(plan_batches([t for _, t in new_units], llm.embedding_batch_size, limit)) if new_units else 0
    stages["embed-text_unit_text"] = _embed_stage(prices, _span(batches, batches), unit_tokens, unit_tokens)
    stages["embed-text_unit_text"]["exact"] = ["requests", "embedding_tokens"]
    basis = ("this project's last completed run" if history else 'defaults measured on peps-mini (README, "Estimate and budget")')
    result = _with_total({name: stages[name] for name in names}, prices, basis)
    result["new_text_units"] = len(new_units)
    result["cached_extraction_requests"] = len(requests) - ext_requests
    return result


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
