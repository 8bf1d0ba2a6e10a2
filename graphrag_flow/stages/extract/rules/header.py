"""The field header a PEP (or a front-matter document) starts with: the PEP, its title, authors,
delegates, related PEPs and Python version, as entities and relationships."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from graphrag_flow.stages.extract.rules.mentions import noun_phrases
from graphrag_flow.stages.extract.rules.patterns import EMAIL, OBFUSCATED_EMAIL
from graphrag_flow.stages.extract.rules.text import clean
from graphrag_flow.stages.extract.rules.words import NAME_PARTICLES, STOP_CAPS, WORDLIKE_GIVEN_NAMES

MAX_HEADER_LINES = 60


@dataclass
class Header:
    pep: str | None = None
    title: str = ""
    people: list[tuple[str, str]] = field(default_factory=list)  # (name, field)
    related: list[tuple[str, str]] = field(default_factory=list)  # (field, PEP n)
    python_version: str | None = None
    fields: dict[str, str] = field(default_factory=dict)
    start: int = 0  # the field block's first line (a document title may come before it)
    end: int = 0


_FIELD = re.compile(r"^:?([A-Za-z][A-Za-z-]{0,30}):\s*(.*)$")
_PEOPLE_FIELDS = ("author", "authors", "bdfl-delegate", "pep-delegate", "sponsor", "editor", "editors")


def person_names(value: str) -> list[str]:
    """Names from an Author-style field: "A <a@x>, B", "a@x (A)", "A and B"."""
    value = re.sub(r"\S+@\S+\s*\(([^)]*)\)", r"\1", value)  # old style: email (Name)
    value = OBFUSCATED_EMAIL.sub("", EMAIL.sub("", value))
    value = re.sub(r"<[^>]*>", "", value)  # "Sam Gross <colesbury at gmail.com>"
    value = re.sub(r"\([^)]*\)", "", value)
    names = []
    for part in re.split(r",|;|\band\b|&", value):
        name = " ".join(part.split()).strip(" .,<>\"'")
        words = name.split()
        if not (1 <= len(words) <= 5) or len(name) > 60:
            continue
        capitalised = all(w[0].isupper() or w in NAME_PARTICLES for w in words) and words[0][0].isupper()
        if capitalised and not any(w in STOP_CAPS and w not in WORDLIKE_GIVEN_NAMES for w in words):
            names.append(name)
    return names


#: a byline near the top of a document: "By Jane Austen", "Written by ...", "Author: ...".
_BYLINE = re.compile(r"^\W{0,3}(?:(?:[Ww]ritten |[Ee]dited )?[Bb]y|BY|[Aa]uthors?:)\s+(.{3,80}?)\W{0,3}$")
#: a dateline: a name, a comma, then a date ("Abraham Lincoln, November 19, 1863, at ...").
_DATELINE = re.compile(r"^([A-Z][\w.'’-]+(?: [A-Z][\w.'’-]+){1,3}), (?:[A-Z][a-z]+ \d{1,2}, )?\d{3,4}\b")
#: lines at the top of a document searched for a title before the field block, or a byline.
TOP_LINES = 8


def parse_header(lines: list[str]) -> Header:
    """The RFC-822-style field block a PEP (or front-matter document) starts with, after at most
    a title; else the authors of a byline or dateline near the top ("By Jane Austen")."""
    header = _field_block(lines, 0)
    if header.fields:
        return header
    first_blank = next((i for i, line in enumerate(lines[:TOP_LINES]) if not line.strip()), None)
    if first_blank:
        start = next((i for i in range(first_blank, min(len(lines), TOP_LINES)) if lines[i].strip()), None)
        header = _field_block(lines, start) if start is not None else Header()
        if header.fields:
            header.title = header.title or document_title(lines[:start], True)
            return header
    header = Header()
    top = [line.strip() for line in lines[:TOP_LINES] if line.strip()]
    byline = False
    for line in top[:5]:
        m = _BYLINE.match(line) or _DATELINE.match(line)
        if m:
            header.people += [(n, "author") for n in person_names(m.group(1))]
            byline = True
            break
    header.title = document_title(lines[:TOP_LINES], byline)
    return header


def document_title(lines: list[str], byline: bool) -> str:
    """A document's own title: its first line, when that is one (a markdown ``# `` heading, all
    capitals, or a byline or field block below it: a text unit cut from the middle of a document
    may start with a section heading, which is no title); the part after " -- " when there is
    one ("PEP 20 -- The Zen of Python"), without a trailing parenthesis."""
    rest = [line.strip() for line in lines]
    first = next((i for i, line in enumerate(rest) if line), None)
    if first is None or first > 2:
        return ""
    line = rest[first]
    shouting = line.isupper() and len(line.split()) > 1
    heading = (line.startswith("# ") or byline or shouting) and re.match(r"#?\s*[A-Z]", line) is not None
    title = re.sub(r"\s*\([^)]*\)$", "", line.lstrip("#").strip()).split(" -- ")[-1].strip()
    if not heading or not title or len(title.split()) > 12 or re.search(r"[.:,;!?]$|,|--", title):
        return ""
    return clean(title)


def _field_block(lines: list[str], start: int) -> Header:
    header = Header(start=start, end=start)
    last = None
    seen_field = False
    for i, line in enumerate(lines[start : start + MAX_HEADER_LINES], start):
        stripped = line.strip()
        if not stripped:
            if seen_field:
                header.end = i
                break
            continue
        if stripped == "---" and not seen_field:  # YAML front matter fence
            continue
        if line[:1] in (" ", "\t") and last:
            header.fields[last] += " " + stripped
            header.end = i + 1
            continue
        m = _FIELD.match(stripped)
        if not m:
            break
        last = m.group(1).lower()
        header.fields[last] = m.group(2).strip()
        seen_field = True
        header.end = i + 1
    if not (set(header.fields) & {"pep", "title", *_PEOPLE_FIELDS}):
        return Header()
    f = header.fields
    if re.fullmatch(r"\d{1,4}", f.get("pep", "")):
        header.pep = f"PEP {int(f['pep'])}"
    header.title = clean(f.get("title", ""))
    for key in _PEOPLE_FIELDS:
        if key in f:
            header.people += [(n, key) for n in person_names(f[key])]
    for key in ("requires", "replaces", "superseded-by"):
        for num in re.findall(r"\d{1,4}", f.get(key, "")):
            header.related.append((key, f"PEP {int(num)}"))
    version = re.search(r"\b([23]\.\d{1,2})", f.get("python-version", ""))
    if version:
        header.python_version = f"Python {version.group(1)}"
    return header


def header_graph(header: Header) -> tuple[list[tuple[str, str, str]], list[tuple[str, str, str]]]:
    """(name, type, description) entities and (a, b, description) relationships of a header."""
    entities: list[tuple[str, str, str]] = []
    rels: list[tuple[str, str, str]] = []
    pep = header.pep
    f = header.fields
    if pep:
        bits = [f'{pep} ("{header.title}")' if header.title else pep]
        kind = clean(f.get("type", ""))
        bits.append(f"is a {kind} Python Enhancement Proposal" if kind else "is a Python Enhancement Proposal")
        if f.get("status"):
            bits.append(f"(status: {clean(f['status'])}),")
        if f.get("created"):
            bits.append(f"created {clean(f['created'])},")
        if header.python_version:
            bits.append(f"for {header.python_version},")
        authors = [n for n, role in header.people if role.startswith("author")]
        if authors:
            bits.append("by " + ", ".join(authors))
        entities.append((pep, "PEP", " ".join(bits).rstrip(",") + "."))
    subject = pep or (f'"{header.title}"' if header.title else "the document")  # fmt: skip
    roles = {"bdfl-delegate": "BDFL-Delegate", "pep-delegate": "PEP-Delegate"}
    for name, role in header.people:
        what = "an author" if role.startswith("author") else f"the {roles.get(role, role)}"
        desc = f"{name} is {what} of {subject}."
        entities.append((name, "PERSON", desc))
        if pep:
            rels.append((name, pep, desc))
    verbs = {"requires": "requires", "replaces": "replaces", "superseded-by": "is superseded by"}
    for key, other in header.related:
        if other == pep:
            continue
        desc = f"{subject} {verbs[key]} {other}."
        entities.append((other, "PEP", desc))
        if pep:
            rels.append((pep, other, desc))
    if header.python_version:
        desc = f"{subject} targets {header.python_version}."
        entities.append((header.python_version, "SOFTWARE", desc))
        if pep:
            rels.append((pep, header.python_version, desc))
    if header.title and not pep:
        desc = f'"{header.title}" is a document' + (f" by {', '.join(n for n, _ in header.people)}." if header.people else ".")
        entities.append((header.title, "DOCUMENT", desc))
        for name, _role in header.people:
            rels.append((name, header.title, f"{name} is an author of \"{header.title}\"."))
    if pep and header.title:
        for name in noun_phrases(header.title.lower(), [])[:3]:
            desc = f'{pep} is titled "{header.title}".'
            entities.append((name, "CONCEPT", desc))
            rels.append((pep, name, desc))
    return entities, rels

