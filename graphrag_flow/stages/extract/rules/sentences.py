"""The prose sentences of a text unit: what the mention rules read (literal blocks, code, tables,
comments and link targets are left out; headings are marked)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from graphrag_flow.stages.extract.rules.patterns import CODE_LINE, SENTENCE_END, TABLE_BORDER, UNDERLINE
from graphrag_flow.stages.extract.rules.words import TITLE_SMALL_WORDS

#: sentences (and run-on lines) are cut into windows of this size before matching.
MAX_SENTENCE_CHARS = 2000


@dataclass
class Mention:
    name: str
    type: str


@dataclass
class Sentence:
    raw: str  # with markup, for entity rules
    heading: bool = False
    mentions: list[Mention] = field(default_factory=list)
    prose: str = ""  # markup spans blanked out
    covered: list[tuple[int, int]] = field(default_factory=list)



_SKIP_DIRECTIVES = ("code-block", "code", "sourcecode", "highlight", "literalinclude", "math", "raw",
                    "productionlist", "image", "figure", "include", "toctree", "contents", "csv-table",
                    "list-table", "table", "testcode", "doctest", "graphviz", "only", "index")  # fmt: skip


def split_sentences(lines: list[str]) -> list[Sentence]:
    """Prose sentences of reST/markdown/plain text.

    Literal blocks (after ``::``), code directives, doctest lines, code-looking indented lines,
    comments and link targets are skipped: they hold identifiers that are examples, not
    subjects. A one-line paragraph over a section underline is marked as a heading.
    """
    out: list[Sentence] = []
    paragraph: list[str] = []
    skip_indent: int | None = None  # skip lines indented deeper than this
    expect_literal = False
    in_fence = False

    def flush(heading: bool = False) -> None:
        nonlocal expect_literal
        if not paragraph:
            return
        text = " ".join(paragraph)
        paragraph.clear()
        expect_literal = text.endswith("::")
        if heading:
            out.append(Sentence(raw=text[:MAX_SENTENCE_CHARS], heading=True))
            return
        for sentence in SENTENCE_END.split(text):
            sentence = sentence.strip()
            while sentence:
                # a run-on "sentence" (a table, a 100k-char line) is cut at a blank near the limit
                cut = len(sentence)
                if cut > MAX_SENTENCE_CHARS:
                    cut = sentence.rfind(" ", MAX_SENTENCE_CHARS // 2, MAX_SENTENCE_CHARS)
                    cut = MAX_SENTENCE_CHARS if cut < 0 else cut
                piece, sentence = sentence[:cut].strip(), sentence[cut:].strip()
                if len(piece) > 3:
                    out.append(Sentence(raw=piece))

    for line in lines:
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if stripped.startswith(("```", "~~~")):
            flush()
            in_fence = not in_fence
            continue
        if in_fence:
            continue
        if skip_indent is not None:
            if not stripped or indent > skip_indent:
                continue
            skip_indent = None
        if not stripped:
            flush()
            continue
        if expect_literal and not paragraph and indent > 0:
            skip_indent = indent - 1
            expect_literal = False
            continue
        expect_literal = False
        if UNDERLINE.fullmatch(stripped):
            flush(heading=len(paragraph) == 1)
            continue
        if TABLE_BORDER.fullmatch(stripped) or stripped.startswith((">>>", "... ", "+--", "|")):
            flush()
            continue
        if stripped.startswith(".."):
            flush()
            directive = re.match(r"\.\.\s+([\w:-]+)::", stripped)
            footnote = re.match(r"\.\.\s+\[[^\]]+\]\s+(.*)", stripped)
            if footnote:
                paragraph.append(footnote.group(1))
            elif directive is None or directive.group(1) in _SKIP_DIRECTIVES:
                skip_indent = indent  # comment, link target or code directive: skip its body
            continue
        if stripped.startswith("#") and not paragraph and re.match(r"#{1,6}\s", stripped):
            flush()
            paragraph.append(stripped.lstrip("#").strip())  # markdown heading
            flush(heading=True)
            continue
        if indent >= 2 and CODE_LINE.search(stripped):
            flush()
            continue
        if len(paragraph) == 1 and _is_title_line(paragraph[0]):
            flush(heading=True)  # plain-text title line directly above its first paragraph
        paragraph.append(stripped)
    flush()
    return out


def _is_title_line(line: str) -> bool:
    """A short title-case line without closing punctuation ("The Gettysburg Address")."""
    if len(line) > 70 or line[-1:] in ".,;:!?)-" or line.endswith("::"):
        return False
    words = line.split()
    return 1 <= len(words) <= 10 and all(w[:1].isupper() or w in TITLE_SMALL_WORDS for w in words)

