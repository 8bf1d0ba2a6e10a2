"""Offline extraction: typed entities and relationships from one text unit, by deterministic rules.

This package owns the `provider: offline` answer to the graph-extraction step: the same
`GraphExtraction` an LLM returns, made from rules so that the default provider runs with
nothing downloaded and indexes millions of tokens in seconds. A statistical tagger would not
fit: it is too slow for the budget, and keyphrase tools return untyped phrases
(docs/stack-notes.md, "Offline extraction").

The rules target what technical prose and reST/PEP documents carry:

- a field header at the top of a document (``PEP:``, ``Title:``, ``Author:`` with names and
  emails, ``Requires:``, ``Python-Version:`` ...): the PEP, its authors and delegates (PERSON),
  the PEPs it requires/replaces, the Python version it targets;
- references: ``PEP 484`` / ``:pep:`484``` (PEP), ``RFC 2822`` (DOCUMENT);
- code: ``literal`` and `interpreted` text and reST roles (``:mod:``, ``:class:``, ``:func:``,
  ``:term:`` ...), typed MODULE / CLASS / FUNCTION / CODE / CONCEPT from the role or the
  identifier's shape and a fixed list of standard-library modules;
- capitalised multi-word names (PERSON, ORGANIZATION, GEO), filtered against sentence-initial
  capitals, section headings, dates and words the same unit also uses in lower case;
- CamelCase identifiers (CLASS), known software and languages (SOFTWARE), acronyms (CONCEPT);
- technical noun phrases ending in a known head noun ("static type checker", "global
  interpreter lock") or in one of the unit's own terms, with stop-lists for determiners, plain
  verbs ("represent function") and vague adjectives ("maximal compatibility") (CONCEPT);
- what the whole unit shows (vocabulary.py): its own one-word terms ("docstring", a rare noun
  used at least twice), its repeated two-word compounds ("stub file"), and single capitalised
  words it never writes in lower case and English does not know ("Darcy", "Longbourn": PERSON,
  or GEO after prepositions of place or when WordNet knows the place);
- names led by a title ("Mr. Bennet", "Lady Catherine de Bourgh") and, for a document with no
  field header, its title and the author of its byline or dateline ("By Jane Austen").

"General English" is word lists made from WordNet 3.0 (tools/make_wordnet_lists.py), never a
list of one corpus's words.

Relationships join entities mentioned in the same sentence (or the header); strength is the
number of sentences of the unit in which the pair co-occurs, the description is the first such
sentence. Everything is a pure function of the text: no randomness, no network, no set
iteration order, so the same text gives an identical answer, order included.

Where each part lives: header.py (the field header), sentences.py (prose sentences and
headings), mentions.py (what one sentence names, rule by rule), patterns.py and text.py (the
regular expressions and text helpers they share), words.py with words/*.txt (the word lists,
as data files), and `extract_offline` below (a unit's entities and relationships from those).
tests/test_extract_offline.py pins what the rules find; benchmarks/offline_quality.py measures it.
"""

from __future__ import annotations

import re

from graphrag_flow.llm import ExtractedEntity, ExtractedRelationship, GraphExtraction
from graphrag_flow.stages.extract.rules.header import header_graph, parse_header
from graphrag_flow.stages.extract.rules.mentions import find_mentions
from graphrag_flow.stages.extract.rules.patterns import THIS_PEP
from graphrag_flow.stages.extract.rules.sentences import Mention, split_sentences
from graphrag_flow.stages.extract.rules.vocabulary import UnitWords, unit_words
from graphrag_flow.stages.extract.rules.text import MAX_DESCRIPTION, cap_description, overlaps
from graphrag_flow.stages.extract.rules.words import NAME_PARTICLES, STOP_CAPS, TECH_CAPS

__all__ = ["ENTITY_TYPES", "MAX_DESCRIPTION", "MAX_ENTITIES_PER_SENTENCE", "extract_offline"]

#: relationships are made between the first N distinct entities of a sentence: a long
#: enumeration would otherwise add N² edges that say nothing.
MAX_ENTITIES_PER_SENTENCE = 8

ENTITY_TYPES = (
    "PERSON", "ORGANIZATION", "GEO", "PEP", "DOCUMENT", "MODULE", "CLASS", "FUNCTION", "CODE",
    "SOFTWARE", "CONCEPT",
)  # fmt: skip


def extract_offline(text: str) -> GraphExtraction:
    """Entities and relationships of one text unit; the same text gives the same answer.

    Entities keep the first surface form the unit uses (case variants map to it, since the
    flow merges titles case-insensitively) and the first sentence mentioning them as their
    description. Pairs of entities in one sentence become relationships whose strength is
    the number of sentences the pair shares.
    """
    if not text or not text.strip():
        return GraphExtraction(entities=[], relationships=[])
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", " ")
    lines = text.split("\n")
    header = parse_header(lines)
    sentences = split_sentences(lines[: header.start] + lines[header.end :])
    unit = unit_words("\n\n".join(s.raw for s in sentences if not s.heading))
    lower_vocab = frozenset(re.findall(r"\b[a-z][a-z'-]+\b", text))
    unit = UnitWords(lower=lower_vocab, terms=unit.terms, names=unit.names, compounds=unit.compounds)

    entities: dict[str, tuple[str, str, str]] = {}  # NAME -> (name, type, description)
    pairs: dict[tuple[str, str], list] = {}  # (a, b) -> [count, description]

    def entity(name: str, etype: str, description: str) -> str:
        key = name.upper()
        if key not in entities:
            entities[key] = (name, etype, cap_description(description))
        return entities[key][0]

    def relate(a: str, b: str, description: str) -> None:
        if a.upper() == b.upper():
            return
        key = (a, b) if a < b else (b, a)
        entry = pairs.setdefault(key, [0, description])
        entry[0] += 1

    header_entities, header_rels = header_graph(header)
    for name, etype, desc in header_entities:
        entity(name, etype, desc)
    for a, b, desc in header_rels:
        relate(entities[a.upper()][0], entities[b.upper()][0], cap_description(desc))

    for s in sentences:
        find_mentions(s, unit)

    # Persons named in full somewhere in the unit are also recognised by surname ("van Rossum",
    # "DeVito") or, away from a sentence start, by a distinctive given name ("Guido").
    persons = [v[0] for v in entities.values() if v[1] == "PERSON"]
    persons += [m.name for s in sentences for m in s.mentions if m.type == "PERSON"]
    short: dict[str, str | None] = {}
    for full in dict.fromkeys(persons):
        words = [w for w in full.split() if w not in NAME_PARTICLES and len(w.rstrip(".")) > 1]
        for idx, w in enumerate(words[-1:] + words[:1]):
            if len(w) < 3 or w in STOP_CAPS or w in TECH_CAPS or w.lower() in lower_vocab:
                continue
            if idx == 1 and len(w) < 4:
                continue
            short[w] = full if short.get(w, full) == full else None
    short = {k: v for k, v in short.items() if v}
    if short:
        pattern = re.compile(r"\b(" + "|".join(re.escape(k) for k in sorted(short)) + r")\b")
        for s in sentences:
            if s.heading:
                continue
            have = {m.name.upper() for m in s.mentions}
            for m in pattern.finditer(s.prose):
                full = short[m.group(1)]
                if overlaps(m.span(), s.covered) or full.upper() in have or m.start() == 0:
                    continue
                s.mentions.append(Mention(full, "PERSON"))
                have.add(full.upper())
            s.mentions = [mm for mm in s.mentions if not (mm.type == "CLASS" and mm.name in short)]

    for s in sentences:
        mentions = list(s.mentions)
        if header.pep and THIS_PEP.search(s.prose) and not s.heading:
            mentions.insert(0, Mention(header.pep, "PEP"))
        names: list[str] = []
        for mention in mentions:
            name = entity(mention.name, mention.type, s.raw)
            if name not in names:
                names.append(name)
        names = names[:MAX_ENTITIES_PER_SENTENCE]
        if len(names) < 2:
            continue
        description = None  # cleaned only when the sentence introduces a new pair
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                key = (a, b) if a < b else (b, a)
                entry = pairs.get(key)
                if entry is None:
                    description = description or cap_description(s.raw)
                    pairs[key] = [1, description]
                else:
                    entry[0] += 1

    return GraphExtraction(
        entities=[ExtractedEntity(name=n, type=t, description=d) for n, t, d in entities.values()],
        relationships=[
            ExtractedRelationship(source=a, target=b, description=desc, strength=float(count))
            for (a, b), (count, desc) in pairs.items()
        ],
    )
