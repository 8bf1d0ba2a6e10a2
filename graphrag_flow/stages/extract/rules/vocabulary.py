"""What a whole text unit says about its single words: which lower-case words are its own terms,
and which capitalised words are names.

A single word is an entity only with evidence from the unit itself, measured against general
English (WordNet-derived lists in words/, tools/make_wordnet_lists.py), never against a list of
one corpus's words:

- a **term** ("docstring", "decorator", "metaclass") is a noun that general English rarely uses
  (not among the words SemCor saw often, not only a verb or adjective) that the unit uses at
  least `MIN_TERM_COUNT` times, singular and plural counted together;
- a **compound** ("stub file", "forward reference", "thread safety") is two words, a modifier
  and a noun, that the unit writes together at least `MIN_COMPOUND_COUNT` times, neither a
  function word, a plain verb, a vague adjective nor an adverb;
- a **name** ("Darcy", "Longbourn", "London") is a capitalised word the unit never writes in
  lower case and general English does not know in lower case; it is a place (GEO) when WordNet
  knows it as one, or when most of its uses follow a preposition of place, and a person
  otherwise. A name WordNet does not know must appear at least twice away from a sentence start.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from graphrag_flow.stages.extract.rules.words import (
    COMMON_WORDS, DATE_WORDS, ED_OK, ENGLISH_WORDS, EVALUATIVE, HONORIFICS, ING_OK, LEXICON,
    MODIFIER_STOP, NOT_NOUNS, ORG_WORDS, PLACE_NAMES, PLACE_WORDS, PLAIN_VERBS, STOP_CAPS, TECH_CAPS, VERB_FORMS,
)

#: uses of a rare noun in one text unit that make it a term of the unit.
MIN_TERM_COUNT = 2
#: uses of the same two-word compound in one text unit that make it a term of the unit.
MIN_COMPOUND_COUNT = 3
#: uses away from a sentence start that make an unknown capitalised word a name.
MIN_NAME_COUNT = 2
_TERM = re.compile(r"(?<![\w'’-])[a-z]{4,}(?![\w'’-])")
_PAIR = re.compile(r"(?<![\w'’-])(?=([a-z]{3,}) ([a-z]{3,})(?![\w'’-]))")
_NAME = re.compile(r"(?<![\w.'’-])([A-Z][a-z]{2,})\b(?![’'-]\w|\.\w)")
_PLACE_BEFORE = re.compile(r"\b(?:in|at|to|from|near|into|through|towards|toward|reach|reached|left|visit|visited)\s+$")
_SENTENCE_START = re.compile(r"(?:^|[!?:;\"“”(]\s*|(?<!\b(?:Mr|Dr|Ms|St))(?<!\bMrs)\.\s*|\n\s*\n\s*)$")


@dataclass(frozen=True)
class UnitWords:
    """A text unit's vocabulary, for the mention rules of each of its sentences."""

    lower: frozenset[str] = frozenset()  # every lower-case word the unit writes
    terms: dict[str, str] = field(default_factory=dict)  # lower-case form -> the term (singular)
    names: dict[str, str] = field(default_factory=dict)  # capitalised word -> PERSON or GEO
    compounds: dict[tuple[str, str], str] = field(default_factory=dict)  # (word, word) -> the compound


def _rare_noun(word: str) -> bool:
    return not (
        word in COMMON_WORDS or word in NOT_NOUNS or word in PLAIN_VERBS or word in MODIFIER_STOP
        or word in EVALUATIVE or word in LEXICON or word in VERB_FORMS or word.endswith("ly")
        or (word.endswith("est") and len(word) > 6 and _verb_stem(word[:-3]))  # "dearest", "eldest"
        or (word.endswith("ing") and word not in ING_OK and _verb_stem(word[:-3]))
        or (word.endswith("ed") and word not in ED_OK and _verb_stem(word[:-2]))
    )  # fmt: skip


def _verb_stem(stem: str) -> bool:
    """Whether an -ing/-ed word's stem is an English word ("checking", "named"; not "docstring")."""
    candidates = (stem, stem + "e", stem[:-1] if stem[-1:] == stem[-2:-1] else stem,
                  stem[:-1] + "y" if stem.endswith("i") else stem)  # "cried"
    return any(c in ENGLISH_WORDS for c in candidates)


#: plural endings and their singular, tried in order against the unit's words and English.
_PLURALS = (("ies", "y"), ("men", "man"), ("es", ""), ("s", ""))


def _singular(word: str, seen: set[str]) -> str:
    for cut, tail in _PLURALS:
        if word.endswith(cut) and not word.endswith("ss"):
            stem = word[: -len(cut)] + tail
            if stem in seen or stem in ENGLISH_WORDS:
                return stem
    return word


def unit_words(prose: str) -> UnitWords:
    """The unit's terms and names, from its prose (markup and code already left out)."""
    lower = frozenset(re.findall(r"\b[a-z][a-z'-]+\b", prose))
    counts: dict[str, int] = {}
    for m in _TERM.finditer(prose):
        word = m.group().lower()
        counts[word] = counts.get(word, 0) + 1
    seen = set(counts)
    term_counts: dict[str, int] = {}
    for word, n in counts.items():
        single = _singular(word, seen)
        term_counts[single] = term_counts.get(single, 0) + n
    terms = {}
    for word in sorted(counts):
        single = _singular(word, seen)
        if term_counts[single] >= MIN_TERM_COUNT and _rare_noun(single) and _rare_noun(word):
            terms[word] = single

    pairs: dict[tuple[str, str], int] = {}
    for m in _PAIR.finditer(prose):
        pair = (m.group(1), m.group(2))
        pairs[pair] = pairs.get(pair, 0) + 1
    seen_words = seen | {w for pair in pairs for w in pair}
    compound_counts: dict[tuple[str, str], int] = {}
    for (a, b), n in pairs.items():
        key = (a, _singular(b, seen_words))
        compound_counts[key] = compound_counts.get(key, 0) + n
    compounds = {}
    for (a, b), n in sorted(pairs.items()):
        single = _singular(b, seen_words)
        if compound_counts[(a, single)] >= MIN_COMPOUND_COUNT and _modifier(a) and _noun(single) and _noun(b):
            compounds[(a, b)] = f"{a} {single}"

    uses: dict[str, list[bool]] = {}  # name -> after a preposition of place, per use mid-sentence
    for m in _NAME.finditer(prose):
        word = m.group(1)
        before = prose[max(0, m.start() - 14) : m.start()]
        if _SENTENCE_START.search(before):
            continue
        uses.setdefault(word, []).append(bool(_PLACE_BEFORE.search(before)))
    names = {}
    for word in sorted(uses):
        low = word.lower()
        if low in lower or low in ENGLISH_WORDS or low in LEXICON:
            continue
        if word in STOP_CAPS or word in DATE_WORDS or word in TECH_CAPS or word in HONORIFICS:
            continue
        if word in ORG_WORDS or word in PLACE_WORDS:
            continue
        after_place = uses[word]
        if word in PLACE_NAMES:
            names[word] = "GEO"
        elif len(after_place) >= MIN_NAME_COUNT:
            names[word] = "GEO" if 2 * sum(after_place) > len(after_place) else "PERSON"
    return UnitWords(lower=lower, terms=terms, names=names, compounds=compounds)


def _modifier(word: str) -> bool:
    return not (
        word in MODIFIER_STOP or word in EVALUATIVE or word in PLAIN_VERBS or word.endswith("ly")
        or (word.endswith("ing") and word not in ING_OK) or (word.endswith("ed") and word not in ED_OK)
    )  # fmt: skip


def _noun(word: str) -> bool:
    return not (word in NOT_NOUNS or word in PLAIN_VERBS or word in MODIFIER_STOP or word in EVALUATIVE
                or word.endswith("ly") or (word.endswith("ing") and word not in ING_OK and _verb_stem(word[:-3]))
                or (word.endswith("ed") and _verb_stem(word[:-2])))
