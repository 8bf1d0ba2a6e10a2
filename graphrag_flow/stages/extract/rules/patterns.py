"""The regular expressions the offline rules match text with: markup (reST roles, literals,
links, emphasis), references, identifiers, sentence ends and the shapes of lines."""

from __future__ import annotations

import re

from graphrag_flow.stages.extract.rules.words import NAME_PARTICLES

EMAIL = re.compile(r"<[^<>\s@]*@[^<>\s]*>|[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
OBFUSCATED_EMAIL = re.compile(r"\S+ at \S+ dot \S+")  # headers only: too costly for all prose
URL = re.compile(r"<?\b(?:https?|ftp|mailto|file)://[^\s<>`]+>?|\bwww\.[^\s<>`]+")
ROLE = re.compile(r":((?:[a-z]+:)?[a-z]+):`([^`]*)`")
LITERAL = re.compile(r"``([^`]+?)``")
LINK = re.compile(r"`([^`<]*?)\s*<[^`>]*>`__?|`([^`]+)`__?")
INTERPRETED = re.compile(r"(?<![`\w])`([^`\s][^`]{0,80}?)`(?![`_\w])")
FOOTNOTE_REF = re.compile(r"\s*\[(?:\d+|#\w*|\*|[A-Za-z][\w-]*)\]_")
STRONG = re.compile(r"\*\*([^*]+)\*\*|(?<![\w*])\*([^*\s][^*]*?)\*(?![\w*])")
REF_UNDERSCORE = re.compile(r"(?<=[A-Za-z0-9])_(?=[\s,.;:)]|$)")
SENTENCE_END = re.compile(
    r"(?<=[.!?])(?<!\b[A-Z]\.)(?<!\be\.g\.)(?<!\bi\.e\.)(?<!\betc\.)(?<!\bvs\.)(?<!\bMr\.)(?<!\bDr\.)(?<!\bMrs\.)(?<!\bMs\.)"
    r"(?<!\bcf\.)(?<!\bSt\.)[\"')\]]*\s+(?=[\"'(\[*`]*[A-Z0-9:])"
)
PEP_REF = re.compile(r"\bPEPs?[ \t-]?(\d{1,4})\b")
RFC_REF = re.compile(r"\bRFC[ \t-]?(\d{1,5})\b")
PY_VERSION = re.compile(r"\b(?:C?Python|Py)[ \t]?([23](?:\.\d{1,2})?)(?![\d.]*\d)")
WORD = re.compile(r"[^\W\d_](?:[\w'’-]*[^\W_])?")
CAMEL = re.compile(r"\b(?:[A-Z][a-z0-9]+(?:[A-Z][a-z0-9]*)+|[a-z]+[A-Z]\w*|Py[A-Z_]\w+|[A-Z]{2,}[a-z]+[A-Z]\w*)\b")
ACRONYM = re.compile(r"\b([A-Z][A-Z0-9]{1,5})(s?)\b")
IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
UNDERLINE = re.compile(r"([=\-~^\"'`#*+.:_])\1{2,}")
TABLE_BORDER = re.compile(r"[=\-+| ]{3,}")
CODE_LINE = re.compile(
    r"^(?:def |class |import |from \S+ import |return\b|raise\b|async def |await |@\w|#|//|\$ |"
    r"if .*:$|for .*:$|while .*:$|with .*:$|try:$|except\b.*:$|else:$|elif .*:$)|"
    r"[;{}]$|^\w[\w.]*\s*(?:=|\+=|-=|:=)\s|^\w[\w.]*\(.*\)$|^[\])}]"
)
THIS_PEP = re.compile(r"\b[Tt]his (?:PEP|proposal|document)\b")
_UPPER = "A-Z" + "".join(c for c in map(chr, range(0xC0, 0x250)) if c.isupper())
_CAP_WORD = rf"[{_UPPER}](?:\.|\w*(?:-\w+)*(?:['’][A-Za-z]\w*(?:-\w+)*)?)"  # "--" ends a word
CAPS_RUN = re.compile(
    rf"(?<![\w.'’-]){_CAP_WORD}(?:[ \t]+(?:(?:{'|'.join(sorted(NAME_PARTICLES))})[ \t]+)*{_CAP_WORD})*"
)
TOKEN = re.compile(r"[^\W\d]\w*(?:-\w+)*")  # "--" ends a word
