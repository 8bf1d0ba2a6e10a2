"""Stage checkpoints under `cache/stages/<stage>/<key>/`: the frames each stage made, saved.

A stage task returns a small `StageRef` (its key, its frames' row counts, its statistics), not
dataframes, so Prefect's persisted results stay tiny and a stage's output can be opened with
pandas for inspection. A stage directory is complete only when its `_done.json` exists (written
last). The stages running beside it in one run get its frames in memory (graphrag_flow/channels.py);
these files serve the stages of later runs, the write stage, and a stage Prefect served from cache.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
from pydantic import BaseModel, Field

from graphrag_flow.errors import GraphragFlowError
from graphrag_flow.storage.atomic import read_json, write_json, write_parquet

DONE_FILE = "_done.json"


class StageRef(BaseModel):
    """What a stage made: its content key, its frames' row counts and its run statistics."""

    stage: str
    key: str
    rows: dict[str, int]
    stats: dict[str, Any] = Field(default_factory=dict)


class StageStore:
    """Stage checkpoints under `root` (a project's ProjectPaths.stages)."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def dir(self, stage: str, key: str) -> Path:
        return self.root / stage / key

    def is_complete(self, stage: str, key: str) -> bool:
        return (self.dir(stage, key) / DONE_FILE).exists()

    def save(self, stage: str, key: str, frames: dict[str, pd.DataFrame], stats: dict[str, Any] | None = None) -> StageRef:
        target = self.dir(stage, key)
        for name, frame in frames.items():
            write_parquet(frame, target / f"{name}.parquet")
        ref = StageRef(stage=stage, key=key, rows={n: len(f) for n, f in frames.items()}, stats=stats or {})
        write_json(ref.model_dump(mode="json"), target / DONE_FILE)
        return ref

    def load(self, ref: StageRef, name: str) -> pd.DataFrame:
        path = self.dir(ref.stage, ref.key) / f"{name}.parquet"
        if not path.exists():
            raise GraphragFlowError(
                f"stage output {path} is missing (was cache/ cleaned while a cached result remained?); "
                "run `graphrag-flow index --full`"
            )
        return pq.read_table(path).to_pandas()

    def prune(self, keep: set[tuple[str, str]], written_before: float) -> tuple[int, int]:
        """Delete the stage outputs not in `keep` (stage, key) whose files were all written
        before `written_before` (a Unix time): (directories removed, bytes freed).

        A nightly run on changing input leaves a new directory per stage each night; only the
        finished run's are read again (the answer cache, not these, makes reruns cheap). Newer
        files belong to a run that started after the one pruning, and are left alone.
        """
        removed = freed = 0
        if not self.root.is_dir():
            return 0, 0
        for stage_dir in sorted(p for p in self.root.iterdir() if p.is_dir()):
            for key_dir in sorted(p for p in stage_dir.iterdir() if p.is_dir()):
                if (stage_dir.name, key_dir.name) in keep:
                    continue
                try:
                    files = [p for p in key_dir.rglob("*") if p.is_file()]
                    stats = [p.stat() for p in files]
                    if any(st.st_mtime >= written_before for st in stats):
                        continue
                except OSError:  # vanished meanwhile
                    continue
                shutil.rmtree(key_dir, ignore_errors=True)
                removed += 1
                freed += sum(st.st_size for st in stats)
        return removed, freed

    def load_ref(self, stage: str, key: str) -> StageRef | None:
        path = self.dir(stage, key) / DONE_FILE
        return StageRef.model_validate(read_json(path)) if path.exists() else None
