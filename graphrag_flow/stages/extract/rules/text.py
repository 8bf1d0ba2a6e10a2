"""Text helpers of the offline rules: markup-free text for names and descriptions, and spans."""

from __future__ import annotations

import re

from graphrag_flow.stages.extract.rules.patterns import EMAIL, FOOTNOTE_REF, LINK, REF_UNDERSCORE, ROLE, STRONG, TOKEN, URL

MAX_DESCRIPTION = 300


def clean(text: str) -> str:
    """Markup-free, whitespace-collapsed text for names and descriptions."""
    # Each substitution only runs when its trigger character is present: most sentences have
    # no URL, email or emphasis, and the guards halve the extractor's run time.
    if "://" in text or "www." in text:
        text = URL.sub("", text)
    if "`" in text:
        text = ROLE.sub(lambda m: role_display(m.group(1), m.group(2)), text)
        text = LINK.sub(lambda m: m.group(1) if m.group(1) is not None else m.group(2), text)
        if "]_" in text:
            text = FOOTNOTE_REF.sub("", text)
        text = text.replace("``", "").replace("`", "")
    elif "]_" in text:
        text = FOOTNOTE_REF.sub("", text)
    if "*" in text:
        text = STRONG.sub(lambda m: m.group(1) or m.group(2), text)
    if "_" in text:
        text = REF_UNDERSCORE.sub("", text)
    if "@" in text:
        text = EMAIL.sub("", text)
    return " ".join(text.split())


def cap_description(text: str) -> str:
    """Clean and cap a description at MAX_DESCRIPTION characters, on a word boundary."""
    text = clean(text)
    if len(text) <= MAX_DESCRIPTION:
        return text
    cut = text[: MAX_DESCRIPTION - 1]
    if " " in cut[MAX_DESCRIPTION // 2 :]:
        cut = cut.rsplit(" ", 1)[0]
    return cut + "\u2026"


def role_display(role: str, body: str) -> str:
    body = body.strip()
    if role in ("pep", "rfc"):
        num = re.search(r"\d+", body)
        label = body.split("<", 1)[0].strip() if "<" in body else ""
        ref = f"{role.upper()} {int(num.group())}" if num else body
        return label if label and not label.isdigit() else ref
    if "<" in body and body.endswith(">"):
        return body.split("<", 1)[0].strip()
    body = body.lstrip("~!")
    return body



def blank(text: str, spans: list[tuple[int, int]]) -> str:
    """`text` with the spans replaced by separators, so later rules cannot match across them."""
    if not spans:
        return text
    chars = list(text)
    for a, b in spans:
        for k in range(a, b):
            chars[k] = "|"
    return "".join(chars)


def overlaps(span: tuple[int, int], covered: list[tuple[int, int]]) -> bool:
    a, b = span
    return any(a < d and c < b for c, d in covered)


def word_tokens(prose: str) -> list[tuple[str, int, int]]:
    """Words (letters, digits, ``_`` and ``-``) with their spans; one pass shared by the rules."""
    return [(m.group(), m.start(), m.end()) for m in TOKEN.finditer(prose)]

