"""The last good index always stands: a run builds its generation in output.next and switches it
in at once, so a kill -9 at any point, or a full disk, leaves `output/` exactly as the last
completed run left it (or, once the switch happened, the new run's), and readers never see a
missing or half-updated folder.

The first part drives the generation folders directly (graphrag_flow/storage/generations.py)
with real LanceDB tables and parquet files, killing a subprocess at each named point of the
switch. The second kills real incremental CLI runs against the fake OpenAI server at seeded
random points (request counts, and named points a timer cannot hit), then checks `output/`
file by file, `graphrag-flow status`, and that the run which finally completes equals a fresh
full index of the new folder.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from conftest import REPO, kill_group
from graphrag_flow.outputs import read_manifest, write_manifest
from graphrag_flow.storage.atomic import write_parquet
from graphrag_flow.storage.generations import SEED_FILE, OutputFolders, seed_staging
from graphrag_flow.storage.vectors import VectorTable


# --------------------------------------------------------------------------- small generations


def _generation(folder: Path, label: str, rows: int) -> Path:
    """A served-output-like folder: documents.parquet, a LanceDB table with the same ids, and a
    manifest naming both (what a reader checks one against the other)."""
    ids = [f"{label}-{i:03d}" for i in range(rows)]
    write_parquet(pd.DataFrame({"id": ids, "title": [f"{i}.md" for i in ids]}), folder / "documents.parquet")
    table = VectorTable(folder / "lancedb", "text_unit_text")
    table.prepare(8)
    vectors = np.random.default_rng(rows).random((rows, 8), dtype=np.float32)
    for start in range(0, rows, 10):  # several versions, as batch-by-batch merges leave them
        table.merge(ids[start:start + 10], vectors[start:start + 10], ["sha"] * len(ids[start:start + 10]), "m")
    write_manifest(folder, {"run_id": label, "tables": {"documents": rows}})
    return folder


def _tree(folder: Path) -> dict[str, str]:
    """Every file under `folder`: relative path -> sha256 of its bytes."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _label(folder: Path) -> str:
    return read_manifest(folder)["run_id"]


# --------------------------------------------------------------------------- seeding


@pytest.mark.filterwarnings("ignore:create_scalar_index is deprecated", "ignore:optimize\\(cleanup_older_than=0\\)")
def test_the_served_table_is_unchanged_after_its_staged_copy_is_merged_deleted_and_optimized(tmp_path):
    live = _generation(tmp_path / "output", "A", 45)
    served = VectorTable(live / "lancedb", "text_unit_text")
    served.delete_ids(["A-003"])  # a deletion file, linked into the staging copy
    lancedb_table = served._open()
    lancedb_table.create_scalar_index("id")  # index files under _indices/, linked too
    before_files, before_rows = _tree(live), served.read().sort_by("id")
    before_versions = len(lancedb_table.list_versions())

    staging = tmp_path / "output.next"
    stats = seed_staging(live, staging)
    assert stats.linked_files > 0 and stats.copied_files > 0 and not stats.link_fallback
    linked = [p for p in (staging / "lancedb").rglob("*") if p.is_file() and p.stat().st_nlink > 1]
    assert {p.relative_to(staging / "lancedb").parts[1] for p in linked} >= {"data", "_deletions", "_indices"}

    staged = VectorTable(staging / "lancedb", "text_unit_text")
    rng = np.random.default_rng(7)
    staged.merge([f"A-{i:03d}" for i in range(0, 45, 2)], rng.random((23, 8)), ["new"] * 23, "m")  # update in place
    staged.merge([f"B-{i}" for i in range(30)], rng.random((30, 8)), ["sha"] * 30, "m")
    staged.delete_ids([f"A-{i:03d}" for i in range(1, 45, 4)])
    table = staged._open()
    table.create_scalar_index("id", replace=True)
    table.optimize(cleanup_older_than=dt.timedelta(0), delete_unverified=True)  # compact, drop old versions
    assert len(table.list_versions()) < before_versions  # old versions really were cleaned up
    assert staged.read().num_rows == 44 + 30 - 11  # A-003 deleted before, 30 added, 11 deleted

    assert _tree(live) == before_files, "a file of the served table changed through its staged copy"
    assert served.read().sort_by("id").equals(before_rows)
    assert len(served._open().list_versions()) == before_versions


def test_seeding_across_filesystems_copies_and_says_so(tmp_path):
    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("needs a second filesystem (/dev/shm) beside the test's temporary folder")
    other = shm / f"graphrag-flow-test-{os.getpid()}-{time.time_ns()}"
    try:
        live = _generation(other / "output", "A", 12)
        stats = seed_staging(live, tmp_path / "output.next")
    finally:
        shutil.rmtree(other, ignore_errors=True)
    assert stats.link_fallback and stats.linked_files == 0 and stats.copied_files > 0
    assert "hard links not possible here: copied" in stats.line()
    assert VectorTable(tmp_path / "output.next" / "lancedb", "text_unit_text").read().num_rows == 12


# --------------------------------------------------------------------------- the switch, killed


_SWITCH = r"""
import sys
from pathlib import Path
from graphrag_flow.storage import generations
if sys.argv[2] == "two renames":
    generations._exchange = lambda a, b: False  # as on a system without renameat2(RENAME_EXCHANGE)
print(generations.OutputFolders(Path(sys.argv[1])).switch_in(), flush=True)
"""

#: (how the switch runs, the named point it is killed at, which generation `output/` must hold after)
SWITCH_KILLS = [
    ("exchange", "switch:start", "A"),
    ("exchange", "switch:previous-removed", "A"),
    ("exchange", "switch:exchanged", "B"),
    ("exchange", "switch:done", "B"),
    ("two renames", "switch:previous-removed", "A"),
    ("two renames", "switch:between-renames", "A"),  # no output/ until the next run puts A back
    ("two renames", "switch:done", "B"),
]


def _stage(folders: OutputFolders, label: str, rows: int = 0, source: Path | None = None) -> None:
    """A run's staging folder, seeded as a run seeds it, then holding generation `label` as the
    run leaves it before the switch (made anew, or hard-linked from `source`)."""
    folders.prepare_staging(full=False)
    shutil.rmtree(folders.staging / "lancedb", ignore_errors=True)
    if source is None:
        _generation(folders.staging, label, rows)
    else:
        shutil.copytree(source, folders.staging, dirs_exist_ok=True, copy_function=os.link)


def _project_mid_run(root: Path) -> OutputFolders:
    """Served A, the generation before it (Z) kept, and a finished run's B in output.next."""
    folders = OutputFolders(root)
    _generation(folders.previous, "Z", 5)
    _generation(folders.live, "A", 20)
    _stage(folders, "B", 30)
    return folders


@pytest.mark.parametrize("how,point,served", SWITCH_KILLS)
def test_a_kill_at_any_point_of_the_switch_leaves_a_whole_generation_and_the_next_run_cleans_up(
        tmp_path, how, point, served):
    folders = _project_mid_run(tmp_path / "project")
    trees = {"A": _tree(folders.live), "B": _tree(folders.staging)}
    trees["B"].pop(SEED_FILE)
    env = dict(os.environ, GRAPHRAG_FLOW_TEST_KILL_AT=point)
    proc = subprocess.run([sys.executable, "-c", _SWITCH, str(folders.root), how], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stdout + proc.stderr  # killed at the point, not before

    folders.recover()  # what the next run does first, under the project lock
    live = _tree(folders.live)
    live.pop(SEED_FILE, None)
    assert live == trees[served], f"output/ after a kill at {point} is not generation {served} whole"
    # the next run: reuses the unfinished staging only if it was seeded from what is served now
    stats = folders.prepare_staging(full=False)
    assert stats.reused == (served == "A"), stats
    assert _label(folders.live) == served
    assert folders.switch_in() in ("exchange", "two renames")
    assert sorted(p.name for p in folders.root.iterdir()) == ["output", "output.previous"]
    assert _label(folders.previous) == served


def test_a_completed_switch_keeps_the_replaced_generation_until_the_next(tmp_path):
    folders = _project_mid_run(tmp_path / "project")
    assert folders.switch_in() == "exchange"
    assert (_label(folders.live), _label(folders.previous)) == ("B", "A")
    assert not folders.staging.exists() and not (folders.live / SEED_FILE).exists()
    _stage(folders, "C", 3)
    assert folders.switch_in() == "exchange"
    assert (_label(folders.live), _label(folders.previous)) == ("C", "B")
    assert sorted(p.name for p in folders.root.iterdir()) == ["output", "output.previous"]
    first = OutputFolders(tmp_path / "first")  # a first run: nothing served yet, a plain rename
    _stage(first, "D", 3)
    assert first.switch_in() == "rename" and _label(first.live) == "D"


def test_a_staging_folder_from_another_generation_or_half_seeded_is_discarded(tmp_path):
    folders = _project_mid_run(tmp_path / "project")
    assert folders.prepare_staging(full=False).reused
    _generation(folders.root / "other", "C", 4)
    os.replace(folders.root / "other" / "_manifest.json", folders.live / "_manifest.json")  # another run served
    stats = folders.prepare_staging(full=False)
    assert not stats.reused and not (folders.staging / "_manifest.json").exists()
    (folders.staging / SEED_FILE).unlink()  # as a kill during seeding leaves it
    assert not folders.prepare_staging(full=False).reused
    assert not folders.prepare_staging(full=True).reused  # --full: always an empty folder
    assert sorted(p.name for p in folders.staging.iterdir()) == [SEED_FILE]
    assert not folders.prepare_staging(full=False).reused  # a --full's folder is not a plain run's


# --------------------------------------------------------------------------- readers during switches


_READER = r"""
import json, os, sys
import lancedb, pyarrow.parquet as pq
root, stop = sys.argv[1], sys.argv[2]
out = os.path.join(root, "output")
iterations = straddled = missing = 0
problems = []
while not os.path.exists(stop):
    try:
        fd = os.open(out, os.O_RDONLY | os.O_DIRECTORY)  # one generation for the whole read
    except FileNotFoundError:
        missing += 1
        continue
    try:
        inode = os.fstat(fd).st_ino
        base = f"/proc/self/fd/{fd}"
        manifest = json.load(open(f"{base}/_manifest.json"))
        label, rows = manifest["run_id"], manifest["tables"]["documents"]
        docs = pq.read_table(f"{base}/documents.parquet").column("id").to_pylist()
        vectors = lancedb.connect(f"{base}/lancedb").open_table("text_unit_text").to_arrow()
        vector_ids = sorted(vectors.column("id").to_pylist())
        if not (len(docs) == rows == len(vector_ids) and sorted(docs) == vector_ids
                and all(i.startswith(label + "-") for i in docs)):
            problems.append(f"mixed: manifest {label}/{rows}, {len(docs)} documents, {len(vector_ids)} vectors")
        iterations += 1
        straddled += os.stat(out).st_ino != inode
    except Exception as exc:
        problems.append(f"{type(exc).__name__}: {exc}"[:300])
    finally:
        os.close(fd)
    if iterations == 1:
        print("ready", flush=True)
print(json.dumps({"iterations": iterations, "straddled": straddled, "missing": missing, "problems": problems[:5]}))
"""

#: Resolves output/ as fast as it can: the moment between two renames is microseconds long.
_PROBE = r"""
import os, sys
out, stop = os.path.join(sys.argv[1], "output"), sys.argv[2]
probes = missing = 0
print("ready", flush=True)
while not os.path.exists(stop):
    for _ in range(1000):
        probes += 1
        try:
            os.stat(out)
        except FileNotFoundError:
            missing += 1
print(probes, missing)
"""


def test_a_reader_in_a_tight_loop_never_sees_a_missing_or_mixed_output_while_runs_switch(tmp_path):
    folders = OutputFolders(tmp_path / "project")
    sources = {"A": _generation(tmp_path / "gen-A", "A", 40), "B": _generation(tmp_path / "gen-B", "B", 25)}
    _stage(folders, "A", source=sources["A"])
    folders.switch_in()
    stop = tmp_path / "stop"
    reader, probe = (subprocess.Popen([sys.executable, "-c", script, str(folders.root), str(stop)], cwd=REPO,
                                      stdout=subprocess.PIPE, text=True) for script in (_READER, _PROBE))
    switches = 0
    try:
        for proc in (reader, probe):
            assert proc.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 8.0
        while time.monotonic() < deadline:
            label = "B" if _label(folders.live) == "A" else "A"
            _stage(folders, label, source=sources[label])
            folders.switch_in()
            switches += 1
            # A reader must finish a generation before the switch after next removes it: nightly,
            # that is a day; here a few reads' time.
            time.sleep(0.25)
        stop.touch()
        out, _ = reader.communicate(timeout=60)
        probes, probes_missing = map(int, probe.communicate(timeout=60)[0].split())
    finally:
        stop.touch()
        for proc in (reader, probe):
            if proc.poll() is None:
                proc.kill()
    result = json.loads(out)
    print(f"\n{switches} switches; reader: {result}; {probes} probes of output/, {probes_missing} found none")
    assert switches >= 10
    assert result["problems"] == [] and result["missing"] == 0 and probes_missing == 0, result
    assert result["straddled"] > 0, f"no read overlapped a switch in {result['iterations']} reads: the test proved nothing"
