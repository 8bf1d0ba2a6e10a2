"""Atomic file writes: write to a temporary name beside the target, fsync, rename."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from graphrag_flow.storage.faults import disk_full_point


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Run `write(tmp)` then rename tmp over `path`: readers see the old file or the new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _sweep_leftovers(path)
    tmp = _new_temporary(path)
    try:
        write(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        disk_full_point(f"write:{path.parent.name}/{path.name}", tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _new_temporary(path: Path) -> Path:
    """An empty file beside `path`, created with the mode the umask gives (0644 under 022).

    Not tempfile.mkstemp: it creates files 0600, and the rename would carry that mode to the
    output, unreadable by another user (the one running `graphrag query`) whatever the umask.
    """
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(8)}.tmp"
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue


def _sweep_leftovers(path: Path) -> None:
    """Remove temporary files a killed earlier write of `path` left (one writer per project)."""
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        stale.unlink(missing_ok=True)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_parquet(frame: pd.DataFrame, path: Path, schema: pa.Schema | None = None) -> None:
    table = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
    atomic_write(path, lambda tmp: pq.write_table(table, tmp))


def write_json(value: Any, path: Path) -> None:
    text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)
    atomic_write(path, lambda tmp: tmp.write_text(text + "\n", encoding="utf-8"))


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))
