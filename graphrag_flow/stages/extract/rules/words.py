"""The word lists the offline rules use, read once per process from the data files in words/.

Each file says in its comment lines (`#`) what its words do; the words are whitespace-separated,
one list a file (`<name>.txt`), or `key: value` lines for a mapping. Lists are data rather than
code so that changing what the rules recognise is an edit to a word file; the files are package
data, part of the rules' version (offline.py `offline_version`), so a changed list never serves
an answer the old one made.
"""

from __future__ import annotations

from importlib.resources import files


def _lines(name: str) -> list[str]:
    text = files(__package__).joinpath("words", f"{name}.txt").read_text(encoding="utf-8")
    return [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def word_list(name: str) -> list[str]:
    """The words of `words/<name>.txt`, in order."""
    return [word for line in _lines(name) for word in line.split()]


def words(name: str) -> frozenset[str]:
    return frozenset(word_list(name))


def mapping(name: str) -> dict[str, str]:
    """The `key: value` lines of `words/<name>.txt`, in order."""
    pairs = (line.partition(":") for line in _lines(name))
    return {key.strip(): value.strip() for key, _, value in pairs}


def _plural(word: str) -> str:
    if word.endswith(("s", "x", "ch", "sh")):
        return word + "es"
    if word.endswith("y") and word[-2:-1] not in ("a", "e", "o", "u"):
        return word[:-1] + "ies"
    return word + "s"


STDLIB_MODULES = words("stdlib_modules")
THIRD_PARTY_MODULES = words("third_party_modules")
KNOWN_MODULES = STDLIB_MODULES | THIRD_PARTY_MODULES
SUBMODULES = words("submodules")
PROSE_MODULES = words("prose_modules")
#: lower case -> the canonical spelling.
SOFTWARE = {w.lower(): w for w in word_list("software")}
KNOWN_ORGS = {w.lower(): w for w in word_list("known_orgs")}
TYPING_NAMES = words("typing_names")
SALIENT_KEYWORDS = mapping("salient_keywords")
BUILTIN_CLASSES = words("builtin_classes")
BUILTIN_FUNCTIONS = words("builtin_functions")
DUNDER_ATTRIBUTES = words("dunder_attributes")
LITERAL_STOP = words("literal_stop")
STOP_CAPS = words("stop_caps")
DATE_WORDS = words("date_words")
ORG_WORDS = words("org_words")
ROLE_WORDS = words("role_words")
PLACE_WORDS = words("place_words")
TECH_CAPS = words("tech_caps")
WORDLIKE_GIVEN_NAMES = words("wordlike_given_names")
NAME_PARTICLES = words("name_particles")
HEAD_SINGULARS = words("head_singulars")
#: a head noun, singular or plural -> its singular.
HEADS = {w: w for w in HEAD_SINGULARS} | {_plural(w): w for w in HEAD_SINGULARS} | {"semantics": "semantics"}
MODIFIER_STOP = words("modifier_stop")
ED_OK = words("ed_ok")
ACRONYM_EXPANSIONS = mapping("acronym_expansions")
ING_OK = words("ing_ok")
#: lower-case words that name software, an organisation, a typing form or a module.
LEXICON = frozenset(SOFTWARE) | frozenset(KNOWN_ORGS) | {w.lower() for w in TYPING_NAMES} | KNOWN_MODULES
ACRONYM_STOP = words("acronym_stop")
ACRONYM_LONG_OK = words("acronym_long_ok")
TITLE_SMALL_WORDS = words("title_small_words")
#: WordNet-derived lists (tools/make_wordnet_lists.py, from WordNet 3.0).
PLAIN_VERBS = words("plain_verbs")
COMMON_WORDS = words("common_words")
NOT_NOUNS = words("not_nouns")
ENGLISH_WORDS = words("english_words")
PLACE_NAMES = words("place_names")
VERB_FORMS = words("verb_forms")
HONORIFICS = words("honorifics")
QUOTING_HEADS = words("quoting_heads")
EVALUATIVE = words("evaluative_adjectives")
