"""Stage checkpoints under cache/stages/: what a finished run prunes, and what it must leave."""

from __future__ import annotations

import os
import time

import pandas as pd

from graphrag_flow.storage.stages import StageStore


def _save(store: StageStore, stage: str, key: str, rows: int = 3):
    return store.save(stage, key, {"frame": pd.DataFrame({"x": list(range(rows))})})


def test_prune_removes_earlier_checkpoints_and_keeps_this_runs_and_newer_ones(tmp_path):
    store = StageStore(tmp_path / "cache" / "stages")
    old = [_save(store, "extract", "old-1"), _save(store, "summarize", "old-2")]
    kept = _save(store, "extract", "current")
    an_hour_ago = time.time() - 3600
    for ref in old + [kept]:
        for path in store.dir(ref.stage, ref.key).iterdir():
            os.utime(path, (an_hour_ago, an_hour_ago))
    started = time.time() - 60
    newer = _save(store, "summarize", "another-run-in-progress")  # written after this run started

    removed, freed = store.prune({("extract", "current")}, started)

    assert removed == 2 and freed > 0
    assert not store.dir("extract", "old-1").exists() and not store.dir("summarize", "old-2").exists()
    assert store.is_complete("extract", "current")
    assert store.is_complete("summarize", "another-run-in-progress")
    assert store.load(newer, "frame")["x"].tolist() == [0, 1, 2]


def test_prune_of_a_project_without_checkpoints_does_nothing(tmp_path):
    assert StageStore(tmp_path / "cache" / "stages").prune(set(), time.time()) == (0, 0)
