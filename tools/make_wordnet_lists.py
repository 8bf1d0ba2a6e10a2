"""Write the offline rules' WordNet-derived word lists (graphrag_flow/stages/extract/rules/words/)
from WordNet 3.0 (Debian package `wordnet-base`): general English, the same for every corpus.

- plain_verbs.txt: words English uses as verbs far more than as nouns or adjectives, so that a
  noun phrase cannot start with one ("represent function", "hold lock" are clause fragments). A
  lemma WordNet lists as a verb is one when it has no noun or adjective entry, or when SemCor
  (cntlist.rev: how often each sense was seen in running text) tagged its verb senses at least
  VERB_DOMINANCE times as often as its noun and adjective senses (and MIN_VERB_COUNT times).
  Third-person forms and WordNet's irregular forms (verb.exc: held, made, took) come with it;
  regular -ed and -ing forms are told by their ending in the rules.
- common_words.txt: lemmas SemCor saw at least COMMON_COUNT times (any part of speech): words
  too ordinary to be a subject on their own ("time", "way", "value"), which a one-word entity
  must not be.
- not_nouns.txt: lemmas WordNet lists as verbs, adjectives or adverbs and never as nouns
  ("quickly", "maximal", "ensure"): a one-word entity must be a noun.
- verb_forms.txt: WordNet's irregular verb forms (verb.exc: "drew", "spoke", "sent"): a word
  the unit uses as one is no term of its own.
- english_words.txt: every one-word lower-case lemma of WordNet (any part of speech): a
  capitalised word that is none of them ("Darcy", "Longbourn") may be a name.
- place_names.txt: one-word capitalised lemmas of WordNet's noun.location synsets ("London",
  "Kent", "Virginia"): a capitalised word that is one is a place (GEO).

The source is the Debian package `wordnet-base` (WordNet 3.0 database files, fetched with the
ordinary apt client when the lists are remade, never at run time):
    apt-get download wordnet-base && dpkg-deb -x wordnet-base_*.deb wn
    python tools/make_wordnet_lists.py wn/usr/share/wordnet
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path

WORDS = Path(__file__).resolve().parents[1] / "graphrag_flow/stages/extract/rules/words"
VERB_DOMINANCE = 3
MIN_VERB_COUNT = 3
COMMON_COUNT = 6
WORD = re.compile(r"[a-z]{3,}")
#: ss_type digits of a sense key: 1 noun, 2 verb, 3 adjective, 4 adverb, 5 adjective satellite.
POS = {"1": "n", "2": "v", "3": "a", "5": "a", "4": "r"}
NOTICE = ("# Made by tools/make_wordnet_lists.py from WordNet 3.0. WordNet 3.0 Copyright 2006 by\n"
          "# Princeton University. All rights reserved. Used under the WordNet 3.0 licence\n"
          "# (words/WORDNET-LICENSE).\n")
HEADERS = {
    "plain_verbs": "# Plain verbs: words English uses as verbs far more than as nouns or adjectives; they end\n"
                   "# the modifiers of a noun phrase (\"represent function\" gives no entity).\n",
    "common_words": "# Words too ordinary to be an entity on their own (\"time\", \"way\", \"value\"): lemmas\n"
                    "# SemCor tagged at least {common} times.\n",
    "not_nouns": "# Lemmas WordNet lists as verbs, adjectives or adverbs and never as nouns: a one-word\n"
                 "# entity must be a noun.\n",
    "verb_forms": "# Irregular verb forms (WordNet's verb.exc): a word used as one is no term of its own.\n",
    "english_words": "# Every one-word lower-case lemma of WordNet: a capitalised word that is none of them\n"
                     "# may be a name.\n",
    "place_names": "# One-word capitalised lemmas of WordNet's noun.location synsets: a capitalised word\n"
                   "# that is one names a place.\n",
}


def third_person(verb: str) -> str:
    if verb.endswith(("s", "x", "z", "ch", "sh", "o")):
        return verb + "es"
    if verb.endswith("y") and verb[-2] not in "aeiou":
        return verb[:-1] + "ies"
    return verb + "s"


def lemmas(path: Path) -> set[str]:
    return {line.split(" ", 1)[0] for line in path.read_text(encoding="latin-1").splitlines()
            if not line.startswith(" ") and WORD.fullmatch(line.split(" ", 1)[0])}


def write(name: str, words: set[str]) -> None:
    header = HEADERS[name].format(common=COMMON_COUNT) + NOTICE
    (WORDS / f"{name}.txt").write_text(header + "\n".join(sorted(words)) + "\n", encoding="utf-8")
    print(f"{name}: {len(words)} words")


def main(wordnet: Path) -> None:
    nouns = lemmas(wordnet / "index.noun")
    verbs = lemmas(wordnet / "index.verb")
    adjectives = lemmas(wordnet / "index.adj")
    adverbs = lemmas(wordnet / "index.adv")
    counts: Counter = Counter()
    for line in (wordnet / "cntlist.rev").read_text(encoding="latin-1").splitlines():
        key, _sense, count = line.split()
        lemma, _, rest = key.partition("%")
        counts[lemma, POS[rest[0]]] += int(count)
    plain = set()
    for verb in verbs:
        v, other = counts[verb, "v"], counts[verb, "n"] + counts[verb, "a"]
        if verb not in nouns | adjectives or (v >= MIN_VERB_COUNT and v >= VERB_DOMINANCE * other):
            plain.add(verb)
    forms = plain | {third_person(v) for v in plain}
    for line in (wordnet / "verb.exc").read_text(encoding="latin-1").splitlines():
        inflected, *bases = line.split()
        if WORD.fullmatch(inflected) and any(b in plain for b in bases) and inflected not in nouns | adjectives:
            forms.add(inflected)
    write("plain_verbs", forms)
    write("verb_forms", {line.split()[0] for line in (wordnet / "verb.exc").read_text(encoding="latin-1").splitlines()
                         if WORD.fullmatch(line.split()[0])})
    totals: Counter = Counter()
    for (lemma, _pos), count in counts.items():
        totals[lemma] += count
    write("common_words", {w for w, n in totals.items() if n >= COMMON_COUNT and WORD.fullmatch(w)})
    write("not_nouns", (verbs | adjectives | adverbs) - nouns)
    lower, places = set(), set()
    for pos in ("noun", "verb", "adj", "adv"):
        for lexfile, word in synset_words(wordnet / f"data.{pos}"):
            if WORD.fullmatch(word):
                lower.add(word)  # the data files keep case: "london" is not here, "London" is
            elif pos == "noun" and lexfile == "15" and re.fullmatch(r"[A-Z][a-z]{2,}", word):
                places.add(word)  # lexicographer file 15: noun.location
    write("english_words", lower)
    write("place_names", places)


def synset_words(data: Path):
    """(lexicographer file, word) of every synset of a WordNet data file, case kept."""
    for line in data.read_text(encoding="latin-1").splitlines():
        if line.startswith(" "):
            continue
        fields = line.split()
        for k in range(int(fields[3], 16)):
            yield fields[1], re.sub(r"\(.*\)$", "", fields[4 + 2 * k])


if __name__ == "__main__":
    main(Path(sys.argv[1]))
