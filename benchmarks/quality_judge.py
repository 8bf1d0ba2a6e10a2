"""Judge an index's graph against a gold file: concepts found, noise, variants, communities.

The measuring stick of benchmarks/offline_quality.py, kept apart from the indexing so that
it is tested on its own (tests/test_quality_judge.py) and can judge any project's `output/`.
It reads only the output parquet files and the gold data under tests/gold/; it imports
nothing from graphrag_flow, so it measures any version of the indexer the same way.

    judge_title(title, type, rules)   the noise rule a title breaks (tests/gold/noise_rules.yaml), or None
    measure(output_dir, gold, ...)    every figure of one corpus, as a JSON-ready dict
"""

from __future__ import annotations

import random
import re
import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

REPO = Path(__file__).resolve().parents[1]
GOLD_DIR = REPO / "tests" / "gold"
RULES_FILE = GOLD_DIR / "noise_rules.yaml"

#: The goals of issue #25, applied to every corpus alike (the rules are not tuned to one).
GOALS = {
    "concepts_found_share_min": 0.90,
    "noise_share_max": 0.05,
    "single_unlinked_entity_share_max": 0.05,
    "variant_groups_max": 3,
    "verb_led_titles_max": 0,
}
#: How many examples a list in the JSON holds (the counts are always complete).
MAX_LISTED = 40

_BRACKETS = {"(": ")", "[": "]", "{": "}"}
_EDGE_PUNCTUATION = "\"'`.,;:!?()[]{}<>*“”‘’"
_PERSON_CHARS = re.compile(r"[^\W\d_]+(?:['’.-][^\W\d_]*)*\.?")


# --------------------------------------------------------------------------- the rules


@dataclass(frozen=True)
class NoiseRules:
    """tests/gold/noise_rules.yaml, loaded: word lists as lowercase frozensets."""

    code_types: frozenset[str]
    code_literal_max_words: int
    person_types: frozenset[str]
    person_max_words: int
    leading_articles_allowed: frozenset[str]
    mention_heads: frozenset[str]
    function_words: frozenset[str]
    plain_verbs: frozenset[str]
    vague_adjectives: frozenset[str]
    honorifics: frozenset[str]
    name_particles: frozenset[str]
    common_words: frozenset[str]


def _word_set(data: dict, key: str, source: Path) -> frozenset[str]:
    values = data.get(key)
    if not isinstance(values, list) or not all(isinstance(v, str) and v for v in values):
        raise ValueError(f"{source}: {key} must be a list of words "
                         "(quote yes, no, on, off and y, which YAML reads as booleans)")
    return frozenset(v.lower() for v in values)


def third_person(verb: str) -> str:
    """The -s form of an English verb: represents, applies, does, fixes."""
    if verb.endswith(("s", "x", "z", "ch", "sh", "o")):
        return verb + "es"
    if len(verb) > 1 and verb.endswith("y") and verb[-2] not in "aeiou":
        return verb[:-1] + "ies"
    return verb + "s"


def load_rules(path: Path = RULES_FILE) -> NoiseRules:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    verbs = _word_set(data, "plain_verbs", path)
    common_file = path.parent / data["common_words_file"]
    common = frozenset(
        line.strip() for line in common_file.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    )
    return NoiseRules(
        code_types=frozenset(data["code_types"]),
        code_literal_max_words=int(data["code_literal_max_words"]),
        person_types=frozenset(data["person_types"]),
        person_max_words=int(data["person_max_words"]),
        leading_articles_allowed=_word_set(data, "leading_articles_allowed", path),
        mention_heads=_word_set(data, "mention_heads", path),
        function_words=_word_set(data, "function_words", path),
        plain_verbs=verbs | {third_person(v) for v in verbs},
        vague_adjectives=_word_set(data, "vague_adjectives", path),
        honorifics=_word_set(data, "honorifics", path),
        name_particles=_word_set(data, "name_particles", path),
        common_words=common,
    )


def title_words(title: str) -> list[str]:
    """The title's words in lower case, punctuation stripped from their ends ("MR." -> "mr")."""
    stripped = (w.strip(_EDGE_PUNCTUATION).lower() for w in title.split())
    return [w for w in stripped if w]


def _is_fragment(title: str) -> bool:
    if len(title) <= 1 or not any(ch.isalpha() for ch in title):
        return True
    if title.startswith("-") or title.endswith("-") or "--" in title or "\u2013" in title or "\u2014" in title:
        return True  # a dash that breaks a sentence ("JANE--FROM JANE") is no part of a name
    if title.count('"') % 2:
        return True
    depth: list[str] = []
    for ch in title:
        if ch in _BRACKETS:
            depth.append(_BRACKETS[ch])
        elif ch in _BRACKETS.values():
            if not depth or depth.pop() != ch:
                return True
    return bool(depth)


def _quotes_a_word(words: list[str], rules: NoiseRules) -> bool:
    """"ASSERT STATEMENT", "AS PATTERN": the first word is mentioned, not used."""
    return len(words) == 2 and words[1] in rules.mention_heads


def _is_code_literal(words: list[str], entity_type: str, rules: NoiseRules) -> bool:
    return entity_type in rules.code_types and len(words) <= rules.code_literal_max_words


def led_by_plain_verb(title: str, entity_type: str, rules: NoiseRules) -> bool:
    """The title's first word is a plain verb (code literals and quoted words aside)."""
    words = title_words(title)
    return (bool(words) and not _is_code_literal(words, entity_type, rules)
            and words[0] in rules.plain_verbs and not _quotes_a_word(words, rules))


def _person_not_a_name(title: str, rules: NoiseRules) -> bool:
    raw = title.split()
    if len(raw) == 1 and raw[0].strip(_EDGE_PUNCTUATION).lower() in rules.honorifics:
        return True  # "MR.", "LADY": a title, no name
    while len(raw) > 1 and raw[0].strip(_EDGE_PUNCTUATION).lower() in rules.honorifics:
        raw = raw[1:]  # "MISS KING" keeps KING: the last word is the name
    raw = [w for w in raw if w.strip(_EDGE_PUNCTUATION).lower() not in rules.name_particles]
    if not raw or len(raw) > rules.person_max_words:
        return True
    if not all(_PERSON_CHARS.fullmatch(w) for w in raw):
        return True
    words = [w.strip(_EDGE_PUNCTUATION).lower() for w in raw]
    closed = rules.function_words | rules.plain_verbs | rules.vague_adjectives
    if any(w in closed for w in words):
        return True
    return words[0] in rules.common_words  # a given name, surname or honorific comes first


def judge_title(title: str, entity_type: str, rules: NoiseRules) -> str | None:
    """The name of the first noise rule the entity breaks, or None when it is not noise."""
    title = title.strip()
    if _is_fragment(title):
        return "fragment"
    words = title_words(title)
    if _is_code_literal(words, entity_type, rules):
        return None
    quoted = _quotes_a_word(words, rules)
    first, last = words[0], words[-1]
    if not quoted and first in rules.function_words and first not in rules.leading_articles_allowed:
        return "function_word_edge"
    if last in rules.function_words:
        return "function_word_edge"
    if led_by_plain_verb(title, entity_type, rules):
        return "led_by_plain_verb"
    if first in rules.vague_adjectives:
        return "led_by_vague_adjective"
    if entity_type in rules.person_types and _person_not_a_name(title, rules):
        return "person_not_a_name"
    return None


# --------------------------------------------------------------------------- keys


def variant_key(title: str) -> str:
    """Titles equal under this key are variants of one another: case, spaces, hyphens,
    underscores between words and a plural "s" removed (TYPEALIAS / TYPE ALIAS, BUILT-IN TYPES /
    BUILTIN TYPE, NAMED_EXPRESSION / NAMED EXPRESSION). Leading and trailing underscores stay:
    `__len__` is a method, `len` a function, and a graph that keeps them apart is right."""
    key = re.sub(r"[\s-]+|(?<=[^\W_])_+(?=[^\W_])", "", title.casefold())
    return key[:-1] if len(key) > 3 and key.endswith("s") else key


def concept_key(title: str) -> str:
    """The key a gold concept is matched on: the variant key, also without accents and any
    character that is not a letter or digit (STEVEN D'APRANO = STEVEN DAPRANO, @OVERLOAD = OVERLOAD)."""
    decomposed = unicodedata.normalize("NFKD", title.casefold())
    key = "".join(ch for ch in decomposed if ch.isalnum() and not unicodedata.combining(ch))
    return key[:-1] if len(key) > 3 and key.endswith("s") else key


# --------------------------------------------------------------------------- gold files


@dataclass(frozen=True)
class Concept:
    title: str
    variants: tuple[str, ...] = ()
    type: str | None = None
    docs: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        return (self.title, *self.variants)


@dataclass(frozen=True)
class NoiseTitle:
    title: str
    type: str | None = None


@dataclass(frozen=True)
class Gold:
    path: Path
    corpus: Path
    concepts: tuple[Concept, ...]
    noise: tuple[NoiseTitle, ...]
    rules: NoiseRules = field(repr=False)


class _Entry(BaseModel):
    # strict: YAML reads a bare yes, no, on, off or number as no string, and a typo'd key
    # ("variant:") would silently drop what it holds
    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)


class _ConceptEntry(_Entry):
    title: str = Field(min_length=1)
    variants: list[str] = []
    type: str | None = None
    docs: list[str] | str = Field(alias="in")


class _NoiseEntry(_Entry):
    title: str = Field(min_length=1)
    type: str | None = None


class _GoldFile(_Entry):
    corpus: str
    noise_rules: str
    concepts: list[_ConceptEntry] = Field(min_length=1)
    noise: list[str | _NoiseEntry]


def load_gold(path: Path) -> Gold:
    """A gold file (tests/gold/<corpus>.yaml) with the noise rules it names; a malformed one is
    a ValueError that names the file and the entry."""
    try:
        data = _GoldFile.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    except ValidationError as err:
        raise ValueError(f"{path}: {err}") from None
    concepts = tuple(
        Concept(title=c.title, variants=tuple(c.variants), type=c.type,
                docs=(c.docs,) if isinstance(c.docs, str) else tuple(c.docs))
        for c in data.concepts
    )
    noise = tuple(NoiseTitle(title=n) if isinstance(n, str) else NoiseTitle(title=n.title, type=n.type)
                  for n in data.noise)
    return Gold(path=path, corpus=REPO / data.corpus, concepts=concepts, noise=noise,
                rules=load_rules(path.parent / data.noise_rules))


# --------------------------------------------------------------------------- measuring


def _concepts(entities: pd.DataFrame, gold: Gold) -> dict:
    types_by_key: dict[str, set[str]] = defaultdict(set)
    for title, entity_type in zip(entities["title"], entities["type"]):
        types_by_key[concept_key(title)].add(entity_type)
    missing, other_type = [], []
    for concept in gold.concepts:
        types = set().union(*(types_by_key.get(concept_key(n), set()) for n in concept.names))
        if not types:
            missing.append(concept.title)
        elif concept.type and concept.type not in types:
            other_type.append(f"{concept.title} ({', '.join(sorted(types))})")
    found = len(gold.concepts) - len(missing)
    present = [
        n.title + (f" ({n.type})" if n.type else "")
        for n in gold.noise
        if (types := types_by_key.get(concept_key(n.title))) and (n.type is None or n.type in types)
    ]
    return {
        "concepts": len(gold.concepts),
        "concepts_found": found,
        "concepts_found_share": round(found / len(gold.concepts), 3),
        "concepts_missing": missing,
        "concepts_found_with_other_type": other_type,
        "gold_noise": len(gold.noise),
        "gold_noise_present": present,
    }


def _noise(entities: pd.DataFrame, rules: NoiseRules, sample_size: int, seed: int) -> dict:
    rows = sorted(zip(entities["title"], entities["type"]))
    verdicts = [judge_title(title, entity_type, rules) for title, entity_type in rows]
    picked = sorted(random.Random(seed).sample(range(len(rows)), min(sample_size, len(rows))))
    sample_noise = [(rows[i], verdicts[i]) for i in picked if verdicts[i]]
    noisy_all = [v for v in verdicts if v]
    verb_led = [title for title, entity_type in rows if led_by_plain_verb(title, entity_type, rules)]
    return {
        "sample_size": len(picked),
        "sample_noise": len(sample_noise),
        "noise_share": round(len(sample_noise) / len(picked), 3) if picked else 0.0,
        "sample_noise_by_rule": dict(Counter(v for _, v in sample_noise).most_common()),
        "sample_noise_titles": [f"{title} ({entity_type}): {rule}"
                                for (title, entity_type), rule in sample_noise][:MAX_LISTED],
        "noise_share_all_entities": round(len(noisy_all) / len(rows), 3) if rows else 0.0,
        "noise_by_rule_all_entities": dict(Counter(noisy_all).most_common()),
        "verb_led_titles": len(verb_led),
        "verb_led_examples": verb_led[:MAX_LISTED],
    }


def _variant_groups(entities: pd.DataFrame) -> dict:
    groups: dict[str, set[str]] = defaultdict(set)
    for title in entities["title"]:
        groups[variant_key(title)].add(title)
    found = sorted((sorted(g) for g in groups.values() if len(g) > 1), key=lambda g: (-len(g), g))
    return {"variant_groups": len(found), "variant_group_examples": [" / ".join(g) for g in found][:MAX_LISTED]}


def _communities(communities: pd.DataFrame, entities: pd.DataFrame) -> dict:
    """Communities that are one entity with no relationship at all (the graph's isolated
    entities), at level 0 and over all levels, and the biggest community."""
    unlinked = set(entities.loc[entities["degree"] == 0, "id"])
    sizes = communities["entity_ids"].map(len)
    single = sizes == 1
    lone = communities["entity_ids"].map(lambda ids: len(ids) == 1 and ids[0] in unlinked)
    level0 = communities["level"] == 0

    def share(mask) -> float:
        return round(float(lone[mask].sum()) / int(mask.sum()), 3) if mask.any() else 0.0

    return {
        "communities": len(communities),
        "communities_level0": int(level0.sum()),
        "single_entity_communities": int(single.sum()),
        "single_unlinked_entity_communities": int(lone.sum()),
        "single_unlinked_entity_share": share(pd.Series(True, index=communities.index)),
        "single_unlinked_entity_share_level0": share(level0),
        "biggest_community_level0": int(sizes[level0].max()) if level0.any() else 0,
        "biggest_community": int(sizes.max()) if len(sizes) else 0,
    }


def measure(output_dir: Path, gold: Gold | None, rules: NoiseRules, sample_size: int = 200, seed: int = 42) -> dict:
    """Every quality figure of one index's outputs (entities.parquet, communities.parquet)."""
    entities = pd.read_parquet(output_dir / "entities.parquet", columns=["id", "title", "type", "degree"])
    communities = pd.read_parquet(output_dir / "communities.parquet", columns=["level", "entity_ids"])
    result: dict = {"entities": len(entities)}
    if gold is not None:
        result |= _concepts(entities, gold)
    result |= _noise(entities, rules, sample_size, seed)
    result |= _variant_groups(entities)
    result |= _communities(communities, entities)
    checks = {
        "noise_share_max": result["noise_share"] <= GOALS["noise_share_max"],
        "single_unlinked_entity_share_max":
            result["single_unlinked_entity_share"] <= GOALS["single_unlinked_entity_share_max"],
        "variant_groups_max": result["variant_groups"] <= GOALS["variant_groups_max"],
        "verb_led_titles_max": result["verb_led_titles"] <= GOALS["verb_led_titles_max"],
    }
    if gold is not None:
        checks["concepts_found_share_min"] = result["concepts_found_share"] >= GOALS["concepts_found_share_min"]
    result["goals_met"] = checks
    return result
