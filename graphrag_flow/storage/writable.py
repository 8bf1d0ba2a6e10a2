"""The project's folders are writable, checked at the start of `index` and by `check`.

A read-only `output/` failed only after extraction, summaries and reports, with a raw LanceDB
error. What a run writes: the project folder itself (where `output/` and the staging folders
beside it are made and renamed), `output/` and `cache/`. Each folder that exists is checked by
creating and removing a file in it (permission bits say nothing for root or on a read-only
mount); one that does not exist yet by the same in its nearest existing parent.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from graphrag_flow.errors import NotWritableError


def require_writable(folders: Iterable[Path]) -> None:
    """NotWritableError naming the first folder a file cannot be created in."""
    for folder in folders:
        target = Path(folder)
        while not target.exists() and target.parent != target:
            target = target.parent
        if not target.is_dir():
            raise NotWritableError(f"{target} is not a folder: an index run writes {folder} there")
        try:
            fd, probe = tempfile.mkstemp(prefix=".graphrag-flow-write-check-", dir=target)
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            what = "" if target == Path(folder) else f" (where {folder} is to be made)"
            raise NotWritableError(
                f"{target}{what} is not writable: {exc.strerror or type(exc).__name__}; an index run writes its "
                "outputs and caches there"
            ) from None
