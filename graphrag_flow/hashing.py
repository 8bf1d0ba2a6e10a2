"""Content hashes: every id and cache key in graphrag-flow is one of these."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from types import ModuleType
from typing import Any

_SEP = "\x1f"  # unit separator: cannot occur in a title or a number, so parts never run together


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def sha256_parts(*parts: object) -> str:
    """sha256 of several values joined unambiguously (ids built from several fields)."""
    return sha256_text(_SEP.join(str(p) for p in parts))


def sha256_json(value: Any) -> str:
    return sha256_text(json.dumps(value, sort_keys=True, separators=(",", ":"), default=str))


#: The files of a package whose content is its code: sources, and data it reads (prompts, word lists).
CODE_SUFFIXES = (".py", ".txt")


def package_files_sha256(*packages: ModuleType) -> str:
    """sha256 of the packages' code files (CODE_SUFFIXES), each with its path inside its package's
    parent folder, read from where the package was imported."""
    digest = hashlib.sha256()
    for package in packages:
        for base in (Path(p).resolve() for p in package.__path__):
            for path in sorted(base.rglob("*")):
                if path.suffix in CODE_SUFFIXES and "__pycache__" not in path.parts:
                    digest.update(path.relative_to(base.parent).as_posix().encode())
                    digest.update(path.read_bytes())
    return digest.hexdigest()


def code_version(*packages: ModuleType) -> str:
    """Hash of the given packages' files (sources and the data they read), for cache keys.

    A cached result must not outlive the code that made it: Prefect's own `TASK_SOURCE` policy
    hashes only a task's body, so a changed helper it calls would serve stale results
    (docs/stack-notes.md). The caller names the packages (the tasks layer names all three: the
    domain, the tasks and the flows).
    """
    from graphrag_flow import __version__

    return sha256_text(__version__ + package_files_sha256(*packages))[:16]
