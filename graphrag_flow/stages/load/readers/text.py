"""Plain text: a byte-order mark decides the encoding, else strict UTF-8."""

from __future__ import annotations

import codecs

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def decode_text(data: bytes) -> tuple[str | None, str | None]:
    """(text, None) or (None, why not). A BOM decides the encoding, else strict UTF-8."""
    encoding = "utf-8"
    for bom, name in _BOMS:
        if data.startswith(bom):
            encoding = name
            break
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        return None, f"not valid {encoding.upper()} text (byte {exc.start}); skipped"
    if encoding == "utf-8" and "\x00" in text and data.count(b"\x00") * 4 >= len(data):
        return None, "binary file (mostly NUL bytes); skipped"
    return text, None
