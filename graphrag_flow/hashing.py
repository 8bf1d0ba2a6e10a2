"""Content hashes: every id and cache key in graphrag-flow is one of these."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

_SEP = "\x1f"  # unit separator: cannot occur in a title or a number, so parts never run together


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def sha256_parts(*parts: object) -> str:
    """sha256 of several values joined unambiguously (ids built from several fields)."""
    return sha256_text(_SEP.join(str(p) for p in parts))


def sha256_json(value: Any) -> str:
    return sha256_text(json.dumps(value, sort_keys=True, separators=(",", ":"), default=str))


def _code_version() -> str:
    """Hash of the domain and Prefect-layer sources: part of every stage cache key.

    Prefect's TASK_SOURCE hashes only a task's own body; a changed helper it calls would
    otherwise serve stale cached results (measured, see stack-notes).
    """
    from graphrag_flow import __version__

    here = Path(__file__).resolve().parent
    digest = hashlib.sha256(__version__.encode())
    for pkg in (here, here.parent / "tasks", here.parent / "flows"):
        if not pkg.is_dir():
            continue
        for path in sorted(pkg.rglob("*")):
            if path.suffix in (".py", ".txt") and "__pycache__" not in path.parts:
                digest.update(path.relative_to(here.parent).as_posix().encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


CODE_VERSION = _code_version()
