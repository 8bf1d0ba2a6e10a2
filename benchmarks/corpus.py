"""The corpora the benchmarks index, all inside the repository (a fresh clone needs nothing beside it)."""

from __future__ import annotations

import tarfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PEPS_MINI = REPO / "tests" / "corpora" / "peps-mini"
_ARCHIVE = REPO / "benchmarks" / "corpora" / "peps.tar.gz"


def peps() -> Path:
    """The 688-PEP corpus, unpacked from its archive on first use (and again if it is incomplete)."""
    target = _ARCHIVE.parent / "peps"
    done = _ARCHIVE.parent / ".peps-unpacked"
    if not done.exists():
        with tarfile.open(_ARCHIVE) as archive:
            archive.extractall(_ARCHIVE.parent, filter="data")
        done.write_text(str(len(list(target.glob("*.rst")))))
    return target
