"""Variant titles merged into one entity: the same name written with other case, spacing,
hyphens, underscores or a plural ("TYPE ALIAS" / "TYPEALIAS" / "TYPE ALIASES", "BUILT-IN TYPE" /
"BUILTIN TYPE").

The offline rules see one text unit at a time and write a term as that unit does, so the same
thing arrives under several titles; an LLM's extraction keeps GraphRAG's titles as they are. The
merged entity takes the title most text units use (ties: the shortest, then the first in
order), every description, unit and relationship of its variants, and the most frequent type.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict

import pandas as pd

_JOINERS = re.compile(r"(?<=[^\W_])[\s_-]+(?=[^\W_])")
_PLURALS = (("IES", "Y"), ("ES", ""), ("S", ""))


def compact(title: str) -> str:
    """The title without case and without spaces, hyphens or underscores between words."""
    return _JOINERS.sub("", title.upper())


def variant_keys(titles: list[str]) -> list[str]:
    """One key per title, equal for titles that differ only by case, spaces, hyphens or
    underscores between words, or by a plural ending whose singular is also a title ("TYPE
    ALIASES" / "TYPE ALIAS"); a dunder name is its own (``__LEN__`` is not LEN)."""
    compacts = [compact(t) for t in titles]
    known = set(compacts)
    keys = []
    for c in compacts:
        key = c
        if not c.startswith("__") and not c.endswith("SS") and len(c) > 3:
            for cut, tail in _PLURALS:
                if c.endswith(cut) and c[: -len(cut)] + tail in known:
                    key = c[: -len(cut)] + tail
                    break
        keys.append(key)
    return keys


def merge_variants(entities: pd.DataFrame, relationships: pd.DataFrame, entity_id, relationship_id) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The candidates with each group of variant titles merged into one entity."""
    groups: dict[str, list[int]] = defaultdict(list)
    for i, key in enumerate(variant_keys(entities["title"].tolist())):
        groups[key].append(i)
    rename: dict[str, str] = {}
    for rows in groups.values():
        if len(rows) < 2:
            continue
        titles = [entities["title"].iat[i] for i in rows]
        freqs = [int(entities["frequency"].iat[i]) for i in rows]
        best = min(range(len(rows)), key=lambda k: (-freqs[k], len(titles[k]), titles[k]))
        for title in titles:
            rename[title] = titles[best]
    if not rename:
        return entities, relationships

    merged: dict[str, dict] = {}
    types: dict[str, Counter] = defaultdict(Counter)
    for row in entities.to_dict("records"):
        title = rename.get(row["title"], row["title"])
        if row["type"]:
            types[title][row["type"]] += int(row["frequency"])
        into = merged.get(title)
        if into is None:
            merged[title] = {**row, "title": title, "id": entity_id(title),
                             "descriptions": list(row["descriptions"]), "text_unit_ids": list(row["text_unit_ids"])}
            continue
        into["descriptions"] += [d for d in row["descriptions"] if d not in into["descriptions"]]
        into["text_unit_ids"] = sorted(set(into["text_unit_ids"]) | set(row["text_unit_ids"]))
    for title, row in merged.items():
        counts = types.get(title)
        row["type"] = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0][0] if counts else row["type"]
        row["frequency"] = len(row["text_unit_ids"])
    new_entities = pd.DataFrame(sorted(merged.values(), key=lambda r: r["title"]), columns=entities.columns)
    new_entities["frequency"] = new_entities["frequency"].astype("int64")

    rels: dict[tuple[str, str], dict] = {}
    for row in relationships.to_dict("records"):
        source, target = rename.get(row["source"], row["source"]), rename.get(row["target"], row["target"])
        if source == target:
            continue
        key = (source, target) if (source, target) in rels or (target, source) not in rels else (target, source)
        into = rels.get(key)
        if into is None:
            rels[key] = {**row, "source": key[0], "target": key[1], "id": relationship_id(*key),
                         "descriptions": list(row["descriptions"]), "text_unit_ids": list(row["text_unit_ids"])}
            continue
        into["descriptions"] += [d for d in row["descriptions"] if d not in into["descriptions"]]
        into["weight"] = float(into["weight"]) + float(row["weight"])
        into["text_unit_ids"] = sorted(set(into["text_unit_ids"]) | set(row["text_unit_ids"]))
    new_rels = pd.DataFrame([rels[k] for k in sorted(rels)], columns=relationships.columns)
    new_rels["weight"] = new_rels["weight"].astype("float64")
    return new_entities, new_rels
