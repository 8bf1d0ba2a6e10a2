"""Write common-english-words.txt from SCOWL's word lists (Debian package `scowl`).

The list is the judge's idea of "an ordinary English word that is not also a name": the
lowercase words of SCOWL's sizes 10, 20 and 35 (its "small" dictionary, about the 35,000
most common words with their inflections; spelling categories english, american and british),
less every word that SCOWL also lists capitalised (its upper-case and proper-name lists at any
size: Mark, Long, Hill, Snow, Rose ...). A person's name made only of such words is unlikely.

    apt-get download scowl && dpkg-deb -x scowl_*.deb scowl
    python tests/gold/make_common_words.py scowl/usr/share/dict/scowl
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SIZES = (10, 20, 35)
CATEGORIES = ("english", "american", "british")
WORD = re.compile(r"[a-z]+(-[a-z]+)*")
HEADER = """\
# Ordinary English words that are not also names: the offline-quality judge's word list
# (tests/gold/noise_rules.yaml, rule person_not_a_name). One lowercase word a line.
# Made by tests/gold/make_common_words.py from SCOWL 2020.12.07 (Debian package scowl):
# sizes {sizes} of the {categories} word lists, less every word SCOWL lists capitalised.
# Copyright 2000-2018 by Kevin Atkinson, and the sources named in
# common-english-words.COPYRIGHT (SCOWL's full notice), under whose terms this list is
# distributed: "Permission to use, copy, modify, distribute and sell these word lists, the
# associated scripts, the output created from the scripts, and its documentation for any
# purpose is hereby granted without fee, provided that the above copyright notice appears in
# all copies and that both that copyright notice and this permission notice appear in
# supporting documentation."
"""


def read(path: Path) -> set[str]:
    return {line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines()}


def main(scowl: Path) -> None:
    words: set[str] = set()
    for category in CATEGORIES:
        for size in SIZES:
            path = scowl / f"{category}-words.{size}"
            if path.exists():
                words |= read(path)
    names: set[str] = set()
    for path in [*scowl.glob("*-upper.*"), *scowl.glob("*-proper-names.*")]:
        names |= {name.lower() for name in read(path)}
    common = sorted(w for w in words if WORD.fullmatch(w) and w not in names)
    header = HEADER.format(sizes=", ".join(map(str, SIZES)), categories=", ".join(CATEGORIES))
    (HERE / "common-english-words.txt").write_text(header + "\n".join(common) + "\n", encoding="utf-8")
    print(f"{len(common)} words")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
