"""The mention rules: what one sentence names, typed, in rule order (which is also priority
order): markup and code, references, capitalised names, CamelCase and known names, acronyms,
technical noun phrases."""

from __future__ import annotations

import re

from graphrag_flow.stages.extract.rules.patterns import ACRONYM, CAMEL, CAPS_RUN, FOOTNOTE_REF, IDENT, INTERPRETED, LINK, LITERAL, PEP_REF, PY_VERSION, RFC_REF, ROLE, STRONG, URL, EMAIL, WORD
from graphrag_flow.stages.extract.rules.sentences import Mention, Sentence
from graphrag_flow.stages.extract.rules.text import blank, clean, overlaps, word_tokens
from graphrag_flow.stages.extract.rules.vocabulary import UnitWords
from graphrag_flow.stages.extract.rules.words import (
    ACRONYM_EXPANSIONS, ACRONYM_LONG_OK, ACRONYM_STOP, BUILTIN_CLASSES, BUILTIN_FUNCTIONS, COMMON_WORDS, DATE_WORDS, DUNDER_ATTRIBUTES,
    ED_OK, ENGLISH_WORDS, EVALUATIVE, HEADS, HONORIFICS, ING_OK, KNOWN_MODULES, KNOWN_ORGS, LEXICON, LITERAL_STOP, MODIFIER_STOP, NAME_PARTICLES, ORG_WORDS,
    PLACE_NAMES, PLACE_WORDS, PLAIN_VERBS, PROSE_MODULES, QUOTING_HEADS, ROLE_WORDS, SALIENT_KEYWORDS, SOFTWARE, STOP_CAPS, SUBMODULES, TECH_CAPS, TYPING_NAMES,
    WORDLIKE_GIVEN_NAMES,
)

#: common word endings that rule a capitalised word out of a person name.
_NON_NAME_SUFFIX = re.compile(
    r"(?:tion|sion|ment|ness|ity|ance|ence|ism|ing|ings|ics|ical|ial|able|ible|ive|ives|ful|less|ous|ize|ise|ures|ions)$"
)
_SURNAME_PREFIX = re.compile(r"(?:Mc|Mac|De|Di|Da|Du|La|Le|Van|Von|O['’]|D['’]|L['’])[A-Z]")


def code_entities(text: str, role: str | None = None) -> list[tuple[str, str]]:
    """Typed entities for a piece of code (a ``literal``, `interpreted` text or a role body).

    Dotted names also yield their module (``typing.Protocol`` -> typing), which links a class
    or function to its module through the shared sentence.
    """
    s = text.strip()
    if role == "term":
        term = clean(s).lower()
        return [(term, "CONCEPT")] if 2 < len(term) <= 60 else []
    if role in ("pypi",):
        return [(s, "SOFTWARE")] if re.fullmatch(r"[\w.-]{2,60}", s) else []
    if role in ("file", "samp", "ref", "doc", "sup", "sub", "abbr", "kbd", "menuselection", "guilabel"):
        return []
    called = s.endswith(")")
    s = re.sub(r"\(.*\)$", "", s).lstrip("~!").rstrip(".,:;")
    if not 2 <= len(s) <= 80 or not IDENT.fullmatch(s):
        return []
    parts = s.split(".")
    last = parts[-1]
    rkind = (role or "").split(":")[-1]
    if parts[-1] in ("py", "pyi", "pyx", "pyd", "so", "c", "h", "txt", "cfg", "toml", "rst", "md", "json", "in"):
        stem = ".".join(parts[:-1])
        return [(stem, "MODULE")] if parts[-1] in ("py", "pyi") and stem in KNOWN_MODULES else []
    module = _module_prefix(parts)
    found: list[tuple[str, str]] = []
    bare_module = len(parts) == 1 and s in KNOWN_MODULES and not called and rkind in ("", "data")
    if rkind == "mod" or s in SUBMODULES or bare_module:
        return [(s, "MODULE")]
    if rkind in ("class", "exc", "type", "struct", "union", "enum"):
        etype = "CLASS"
    elif rkind in ("func", "meth", "macro", "function", "method", "decorator", "deco"):
        etype = "FUNCTION"
    elif rkind in ("data", "attr", "const", "member", "var", "envvar", "keyword", "option", "opcode", "token"):
        etype = "CODE"
    elif len(parts) == 1 and s.lower() in LITERAL_STOP:
        return []
    elif last.startswith("__") and last.endswith("__") and len(last) > 4:
        etype = "CODE" if last in DUNDER_ATTRIBUTES and not called else "FUNCTION"
    elif last[0].isupper():
        if len(last) <= 3 and len(parts) == 1:
            return []  # T, T1, KT: type-variable names in examples
        if re.sub(r"^_?Py_", "", last).upper() == re.sub(r"^_?Py_", "", last):
            etype = "CODE"  # CONSTANT_NAME, Py_TPFLAGS_MAPPING
        elif last.startswith("Py") and "_" in last:
            etype = "FUNCTION"  # C API
        else:
            etype = "CLASS"
    elif called:
        etype = "FUNCTION"
    elif len(parts) == 1:
        if s in SALIENT_KEYWORDS:
            return [(SALIENT_KEYWORDS[s], "CONCEPT")]
        elif s in BUILTIN_CLASSES:
            etype = "CLASS"
        elif s in BUILTIN_FUNCTIONS:
            etype = "FUNCTION"
        elif "_" in s.strip("_"):
            etype = "CODE"
        else:
            return []  # a plain word in backticks: an example variable, not a subject
    elif module or parts[0] in ("str", "bytes", "list", "dict", "set", "tuple", "int", "object", "type", "frozenset"):
        etype = "CODE"
    else:
        return []  # self.name, db.fetch: example code
    if len(parts) > 1 and not module and last[0].islower() and etype not in ("FUNCTION", "CODE"):
        return []
    found.append((s, etype))
    if module and module != s:
        found.append((module, "MODULE"))
    return found


def _module_prefix(parts: list[str]) -> str | None:
    for n in range(len(parts) - 1, 0, -1):
        prefix = ".".join(parts[:n])
        if prefix in SUBMODULES or (n == 1 and prefix in KNOWN_MODULES):
            return prefix
    return None



#: words after which an -ing word modifies a noun rather than heads a clause ("the trailing
#: comma"; but "using type hints").
_DETERMINERS = frozenset("the a an this that these those its their our your his her each every no any some".split())


def noun_phrases(
    prose: str, covered: list[tuple[int, int]], tokens: list[tuple[str, int, int]] | None = None,
    terms: dict[str, str] | None = None,
) -> list[str]:
    """Technical noun phrases: up to two modifiers plus a run of head nouns, lower case.

    A phrase ends at the last of consecutive head nouns ("type checker", "global interpreter
    lock") and its last word is singularised, so "type checkers" and "Type Checker" are one
    entity. Modifiers stop at determiners, verbs and vague adjectives, so "the valid type" and
    "represent function" give nothing; a plain verb right before a construct's head is the
    construct's keyword ("match statement") and stays, and an -ing word right after a
    determiner modifies ("the trailing comma"). The unit's own terms (`terms`) are heads too.
    """
    heads = HEADS if not terms else {**HEADS, **{t: t for t in terms.values()}}
    toks = word_tokens(prose) if tokens is None else tokens
    lows = [t[0].lower() for t in toks]
    out: list[str] = []
    n = len(toks)
    i = 0
    while i < n:
        if lows[i] not in heads:
            i += 1
            continue
        j = i  # extend over following heads joined by a single space
        while j + 1 < n and lows[j + 1] in heads and toks[j + 1][1] == toks[j][2] + 1 and prose[toks[j][2]] == " ":
            j += 1
        mods: list[str] = []
        k = i - 1
        while k >= 0 and len(mods) < 2 and toks[k][2] + 1 == toks[k + 1][1] and prose[toks[k][2]] == " ":
            raw, w = toks[k][0], lows[k]
            if w in PLAIN_VERBS and (mods or i != j or heads[lows[j]] not in QUOTING_HEADS):
                break  # "represent function" is a clause; "match statement" quotes a keyword
            participle = w.endswith("ing") and w not in ING_OK
            if participle and not mods and k > 0 and lows[k - 1] in _DETERMINERS and w.isalpha() and w not in MODIFIER_STOP:
                mods.insert(0, w)  # "the trailing comma": nothing may come before it
                k -= 1
                break
            if (
                w in MODIFIER_STOP
                or w in EVALUATIVE
                or raw[0].isupper()
                or w.endswith("ly")
                or (w.endswith("ing") and w not in ING_OK)
                or (w.endswith("ed") and w not in ED_OK)
                or len(w) < 3
                or not w.replace("-", "").isalpha()
            ):
                break
            mods.insert(0, w)
            k -= 1
        run_raw = [toks[x][0] for x in range(i, j + 1)]
        run = lows[i : j + 1]
        span = (toks[k + 1][1], toks[j][2])
        i = j + 1
        if not mods and any(w[0].isupper() for w in run_raw):
            continue  # "Type Hints" heading words alone
        phrase_words = mods + run[:-1] + [heads[run[-1]]]
        if len(phrase_words) < 2 or overlaps(span, covered):
            continue
        if len(set(phrase_words)) < len(phrase_words):
            continue  # "type object type"
        phrase = " ".join(phrase_words[-4:])
        phrase = ACRONYM_EXPANSIONS.get(phrase, phrase)
        if phrase not in out:
            out.append(phrase)
    return out


def _is_person(words: list[str], lower_vocab: frozenset[str]) -> bool:
    """Whether a capitalised run reads as a person's name.

    Besides shape, uses the unit itself: a surname the text also writes in lower case ("Blank
    Lines", "Container Thread") is an ordinary word, not a name.
    """
    core = [w for w in words if w not in NAME_PARTICLES]
    if not 2 <= len(core) <= 4 or len(core) != len([w for w in words if w[0].isupper()]):
        return False
    for idx, w in enumerate(core):
        bare = w.rstrip(".")
        if len(bare) == 1:
            if not w.endswith("."):
                return False  # "C APIs"
            continue  # an initial
        if sum(ch.isupper() for ch in bare) > 1 and not _SURNAME_PREFIX.match(bare):
            return False  # "HotSpot", "APIs": identifiers, not names
        if not (bare[0].isupper() and bare[1:].replace("-", "").replace("'", "").replace("’", "").isalpha()):
            return False
        if bare.isupper() or bare in DATE_WORDS or bare in TECH_CAPS or bare in ORG_WORDS:
            return False
        suffix = _NON_NAME_SUFFIX.search(bare.lower())
        if suffix and len(bare) > 5 and not (idx == len(core) - 1 and suffix.group() == "ing"):
            return False  # "Scoping Behavior"; a final -ing may be a surname (Turing, Fleming)
        if bare.lower() in lower_vocab and (idx > 0 or bare not in WORDLIKE_GIVEN_NAMES):
            return False
        if idx == 0 and bare.lower() in COMMON_WORDS and bare not in WORDLIKE_GIVEN_NAMES:
            return False  # "Deep Learning", "General Public License": an ordinary word leads
    return True


def _caps_runs(prose: str) -> list[tuple[list[str], int, int]]:
    """Runs of capitalised words (with name particles and initials) joined by blanks."""
    return [(m.group().split(), m.start(), m.end()) for m in CAPS_RUN.finditer(prose)]


_HONORIFIC_NAME = re.compile(
    r"(?<![\w.])(" + "|".join(sorted(HONORIFICS, key=len, reverse=True)) + r")(\.?)[ \t]+"
    r"([A-Z][a-z]\w*(?:['’-]\w+)?(?:[ \t]+(?:(?:" + "|".join(sorted(NAME_PARTICLES)) + r")[ \t]+)*[A-Z][a-z]\w*(?:['’-]\w+)?){0,2})"
)
#: honorifics that are never an ordinary word before a capital: any name may follow them.
_PLAIN_HONORIFICS = frozenset({"Mr", "Mrs", "Ms", "Mx", "Dr", "Miss", "Mme", "Mlle", "Rev", "Capt", "Col", "Lt", "Sgt"})


def honorific_names(prose: str) -> list[tuple[str, int, int]]:
    """Names led by a title ("Mr. Bennet", "Lady Catherine de Bourgh", "Colonel Forster").

    After a title that is also an ordinary word ("General", "Major", "King"), the next word must
    not be an English word ("General Public License" is no person); after Mr., Mrs. or Miss any
    capitalised word is a name ("Mrs. Long").
    """
    found = []
    for m in _HONORIFIC_NAME.finditer(prose):
        title, dot, rest = m.group(1), m.group(2), m.group(3).split()
        while rest and (rest[-1] in STOP_CAPS or rest[-1] in DATE_WORDS or rest[-1] in TECH_CAPS):
            rest = rest[:-1]
        if not rest or rest[0] in STOP_CAPS or rest[0] in HONORIFICS:
            continue
        if title not in _PLAIN_HONORIFICS and rest[0].lower() in ENGLISH_WORDS:
            continue
        rest[-1] = re.sub(r"['’]s?$", "", rest[-1])  # "Mr. Bingley's" is Mr. Bingley
        name = f"{title}{dot} {' '.join(rest)}"
        found.append((name, m.start(), m.start() + len(name) + (len(m.group()) - len(m.group().rstrip()))))
    return found


def find_mentions(s: Sentence, unit: UnitWords) -> None:
    """Fill `s.mentions` (in rule order, which is also priority order) and `s.prose`."""
    lower_vocab = unit.lower
    raw = s.raw
    if "://" in raw or "www." in raw:
        raw = URL.sub(lambda m: " " * len(m.group()), raw)
    if "@" in raw:
        raw = EMAIL.sub(lambda m: " " * len(m.group()), raw)
    found: dict[str, Mention] = {}
    covered: list[tuple[int, int]] = []

    def add(name: str, etype: str) -> None:
        name = " ".join(name.split())
        if name and name.upper() not in found:
            found[name.upper()] = Mention(name, etype)

    # 1. markup: roles, literals, interpreted text -- typed from the role or the code's shape;
    # hyperlinks keep their text (`Guido van Rossum <url>`_ is still a name)
    if "`_" in raw:
        raw = LINK.sub(lambda m: m.group(1) if m.group(1) is not None else m.group(2), raw)
    for m in ROLE.finditer(raw):
        role, body = m.group(1), m.group(2)
        covered.append(m.span())
        if role in ("pep", "rfc"):
            num = re.search(r"\d+", body.split("<")[-1])
            if num:
                add(f"{role.upper()} {int(num.group())}", "PEP" if role == "pep" else "DOCUMENT")
            continue
        target = body[body.index("<") + 1 : -1] if "<" in body and body.endswith(">") else body
        for name, etype in code_entities(target, role):
            add(name, etype)
    raw_blanked = blank(raw, covered)
    for regex in (LITERAL, INTERPRETED):
        for m in regex.finditer(raw_blanked):
            if overlaps(m.span(), covered):
                continue
            covered.append(m.span())
            for name, etype in code_entities(m.group(1)):
                add(name, etype)
        raw_blanked = blank(raw, covered)
    prose = raw_blanked
    if "]_" in prose:
        prose = FOOTNOTE_REF.sub(lambda m: " " * len(m.group()), prose)
    if "*" in prose:
        prose = STRONG.sub(lambda m: " " + (m.group(1) or m.group(2)) + " ", prose)
    covered = []

    # 2. references
    for regex, kind, etype in ((PEP_REF, "PEP", "PEP"), (RFC_REF, "RFC", "DOCUMENT")):
        for m in regex.finditer(prose):
            add(f"{kind} {int(m.group(1))}", etype)
            covered.append(m.span())
    for m in PY_VERSION.finditer(prose):
        add(f"Python {m.group(1)}", "SOFTWARE")
        covered.append(m.span())

    # 3. capitalised names: led by a title, multi-word, or a single word the unit shows is a name
    if not s.heading:
        for name, start, end in honorific_names(prose):
            if not overlaps((start, end), covered):
                add(name, "PERSON")
                covered.append((start, end))
    first_word = WORD.search(prose)
    for words, start, end in _caps_runs(prose):
        if overlaps((start, end), covered):
            continue
        lead = 0
        while lead < len(words) and (words[lead] in STOP_CAPS or words[lead] in DATE_WORDS):
            lead += 1
        words = words[lead:]
        if len(words) == 1 and words[0] in unit.names and not s.heading:
            add(words[0], unit.names[words[0]])
            covered.append((end - len(words[0]), end))
            continue
        if len(words) < 2:
            continue
        # split at inner stop words ("Guido and Tim" is not one name)
        if any(w in STOP_CAPS or w in DATE_WORDS for w in words):
            continue
        name = " ".join(words)
        if sum(1 for w in words if w.isupper() and len(w) > 1) == len(words):
            continue  # SHOUTING or a row of acronyms
        if s.heading:
            continue  # "Blank Lines", "Group Patterns": section titles, not names
        if any(w in ORG_WORDS for w in words):
            while len(words) > 2 and words[-1] in ROLE_WORDS:
                words = words[:-1]  # "Python Software Foundation Director" -> the foundation
            add(" ".join(words), "ORGANIZATION")
        elif words[-1] in PLACE_WORDS and (words[-1] != "States" or "United" in words):
            add(name, "GEO")
        elif _is_person(words, lower_vocab):
            add(name, "PERSON")
        else:
            continue  # title-case prose ("Garbage Collection"): the noun-phrase rule may take it
        covered.append((start, end))

    # 4. CamelCase identifiers, software names, typing names in prose
    for m in CAMEL.finditer(prose):
        if overlaps(m.span(), covered):
            continue
        w = m.group()
        if w.lower() in SOFTWARE:
            add(SOFTWARE[w.lower()], "SOFTWARE")
        elif w.lower() in KNOWN_ORGS:
            add(KNOWN_ORGS[w.lower()], "ORGANIZATION")
        elif w.startswith("Py") and "_" in w:
            add(w, "CODE" if w[3:].upper() == w[3:] else "FUNCTION")
        elif w.endswith("s") and w[:-1] in TYPING_NAMES:
            add(w[:-1], "CLASS")
        elif re.fullmatch(r"(?:Mc|Mac|De|Di|Da|La|Le|Van|Von|O)[A-Z][a-z]+", w):
            continue  # a surname ("DeVito") outside a full name; surname pass handles it
        else:
            if w.endswith("s") and not w.endswith("ss") and CAMEL.fullmatch(w[:-1]):
                w = w[:-1]  # "PyObjects" -> PyObject
            add(w, "CLASS")
        covered.append(m.span())
    tokens = word_tokens(prose)
    for w, start, end in tokens:
        low = w.lower()
        if low not in LEXICON or (start and prose[start - 1] == ".") or overlaps((start, end), covered):
            continue
        if low in SOFTWARE and (w == SOFTWARE[low] or SOFTWARE[low].islower()):
            add(SOFTWARE[low], "SOFTWARE")
        elif low in KNOWN_ORGS and w == KNOWN_ORGS[low]:
            add(w, "ORGANIZATION")
        elif w in TYPING_NAMES and start > (first_word.start() if first_word else 0):  # "Any" starts sentences
            add(w, "CLASS")
        elif w in PROSE_MODULES or (
            low == w and w in KNOWN_MODULES and len(w) > 2 and _module_context(prose, start, end)
        ):
            add(w, "MODULE")
            nxt = re.match(r"\s+(modules?|packages?)\b", prose[end:])
            covered.append((start, end + (nxt.end() if nxt else 0)))
            continue
        else:
            continue
        covered.append((start, end))

    # 5. acronyms
    for m in ACRONYM.finditer(prose):
        acro = m.group(1)
        if overlaps(m.span(), covered) or acro in ACRONYM_STOP or acro.isdigit():
            continue
        if len(acro) > 4 and acro not in ACRONYM_LONG_OK:
            continue
        if not any(ch.isalpha() for ch in acro[1:]):
            continue
        if acro.lower() in SOFTWARE:
            add(SOFTWARE[acro.lower()], "SOFTWARE")
        else:
            add(acro, "CONCEPT")
        covered.append(m.span())

    # 6. technical noun phrases
    for phrase in noun_phrases(prose, covered, tokens, unit.terms):
        add(phrase, "CONCEPT")

    # 7. the unit's own compounds ("stub file") and one-word terms ("docstring", "metaclass")
    if unit.compounds:
        for (a, sa, ea), (b, sb, eb) in zip(tokens, tokens[1:]):
            compound = unit.compounds.get((a, b))
            if compound and sb == ea + 1 and not overlaps((sa, eb), covered):
                add(compound, "CONCEPT")
    if unit.terms:
        for w, start, end in tokens:
            term = unit.terms.get(w.lower())
            if term and w.islower() and not overlaps((start, end), covered):
                add(term, "CONCEPT")

    s.mentions = list(found.values())
    s.prose = prose
    s.covered = covered


def _module_context(prose: str, start: int, end: int) -> bool:
    """`import typing`, `from typing import`, `the typing module`."""
    before = prose[max(0, start - 12) : start]
    after = prose[end : end + 12]
    return bool(re.search(r"\b(?:import|from)\s+$", before) or re.match(r"\s+(?:modules?|packages?|library)\b", after))
