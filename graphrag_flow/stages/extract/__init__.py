"""The extract stage: entities and relationships from every text unit, merged into candidates.

Each text unit gets one `GraphExtraction` answer, from the offline rules (offline.py, rules.py)
or a chat model (llm.py); `run_extraction` asks for all of them, and `merge_extractions` turns
the answers into entity and relationship candidates. Entities are keyed by their upper-cased
name (as GraphRAG does), so that "asyncio" and "Asyncio" are one node; each keeps every
description it was given, for the summarize stage.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter, defaultdict
from typing import Awaitable, Callable

import pandas as pd

from graphrag_flow.aio import gather_fatal_first
from graphrag_flow.errors import ItemFailedError
from graphrag_flow.hashing import sha256_parts, sha256_text
from graphrag_flow.llm import GraphExtraction
from graphrag_flow.progress import StageProgress

ENTITY_CANDIDATE_COLUMNS = ["id", "title", "type", "descriptions", "text_unit_ids", "frequency"]
RELATIONSHIP_CANDIDATE_COLUMNS = ["id", "source", "target", "descriptions", "weight", "text_unit_ids"]

_SPACE = re.compile(r"\s+")


def normalize_title(name: str) -> str:
    """GraphRAG's entity title: upper case, single spaces, no quotes around it; never a `'`."""
    title = _SPACE.sub(" ", name).strip().strip("\"'`").strip()
    return title.replace("'", "\u2019").upper()


def entity_id(title: str) -> str:
    return sha256_text(title)


def relationship_id(source: str, target: str) -> str:
    return sha256_parts("relationship", source, target)


def merge_extractions(
    answers: list[tuple[str, GraphExtraction]], variants: bool = False
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Entity and relationship candidates from (text_unit_id, answer) pairs, in a stable order.

    A relationship whose endpoint was not listed as an entity adds that entity with an empty
    type (as GraphRAG does), so no extracted fact is dropped. `variants` (the offline rules)
    also merges titles that differ only by spacing, hyphens, underscores or a plural
    (variants.py).
    """
    ent_types: dict[str, Counter] = defaultdict(Counter)
    ent_desc: dict[str, list[str]] = defaultdict(list)
    ent_units: dict[str, set[str]] = defaultdict(set)
    rel_desc: dict[tuple[str, str], list[str]] = defaultdict(list)
    rel_weight: dict[tuple[str, str], float] = defaultdict(float)
    rel_units: dict[tuple[str, str], set[str]] = defaultdict(set)

    for unit_id, answer in sorted(answers, key=lambda pair: pair[0]):
        for ent in answer.entities:
            title = normalize_title(ent.name)
            if not title:
                continue
            ent_types[title][ent.type.strip().upper()] += 1
            desc = ent.description.strip()
            if desc and desc not in ent_desc[title]:
                ent_desc[title].append(desc)
            ent_units[title].add(unit_id)
        for rel in answer.relationships:
            source, target = normalize_title(rel.source), normalize_title(rel.target)
            if not source or not target or source == target:
                continue
            key = (source, target)
            desc = rel.description.strip()
            if desc and desc not in rel_desc[key]:
                rel_desc[key].append(desc)
            rel_weight[key] += float(rel.strength)
            rel_units[key].add(unit_id)
            for title in key:
                ent_units[title].add(unit_id)
                ent_types.setdefault(title, Counter())

    entity_rows = []
    for title in sorted(ent_units):
        types = ent_types.get(title) or Counter()
        etype = sorted(types.items(), key=lambda kv: (-kv[1], kv[0]))[0][0] if types else ""
        units = sorted(ent_units[title])
        entity_rows.append(
            {
                "id": entity_id(title),
                "title": title,
                "type": etype,
                "descriptions": ent_desc.get(title, []),
                "text_unit_ids": units,
                "frequency": len(units),
            }
        )
    rel_rows = []
    for key in sorted(rel_units):
        rel_rows.append(
            {
                "id": relationship_id(*key),
                "source": key[0],
                "target": key[1],
                "descriptions": rel_desc.get(key, []),
                "weight": rel_weight[key],
                "text_unit_ids": sorted(rel_units[key]),
            }
        )
    entities = pd.DataFrame(entity_rows, columns=ENTITY_CANDIDATE_COLUMNS)
    relationships = pd.DataFrame(rel_rows, columns=RELATIONSHIP_CANDIDATE_COLUMNS)
    entities["frequency"] = entities["frequency"].astype("int64")
    relationships["weight"] = relationships["weight"].astype("float64")
    if variants:
        from graphrag_flow.stages.extract.variants import merge_variants

        return merge_variants(entities, relationships, entity_id, relationship_id)
    return entities, relationships


ExtractOne = Callable[[str, str], Awaitable[GraphExtraction]]


async def run_extraction(
    units: pd.DataFrame, extract_one: ExtractOne, concurrency: int, progress: StageProgress
) -> tuple[list[tuple[str, GraphExtraction]], list[ItemFailedError]]:
    """Extract every text unit; failed units are listed, never dropped silently.

    Answers are stored by the extractor as they arrive (answer cache), so a failed or
    killed stage loses none of them.
    """
    answers: list[tuple[str, GraphExtraction]] = []
    failures: list[ItemFailedError] = []
    limit = asyncio.Semaphore(max(1, concurrency))

    async def one(unit_id: str, text: str) -> None:
        async with limit:
            try:
                answers.append((unit_id, await extract_one(unit_id, text)))
            except ItemFailedError as exc:
                failures.append(exc)
            else:
                progress.advance()  # counts what is done: a failed stage's bar stops short

    await gather_fatal_first(one(u, t) for u, t in zip(units["id"], units["text"]))
    answers.sort(key=lambda pair: pair[0])
    return answers, failures
