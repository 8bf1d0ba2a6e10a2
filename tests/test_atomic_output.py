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
from graphrag_flow.storage.outputs import read_manifest, write_manifest
from graphrag_flow.storage.atomic import write_parquet
from graphrag_flow.storage.generations import SEED_FILE, OutputFolders, seed_staging
from graphrag_flow.storage.vectors import VectorTable
from graphrag_flow.tables import SCHEMAS, VECTOR_FIELDS


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


def test_a_symlinked_output_folder_is_switched_where_it_points(tmp_path):
    """output/ -> a disk of its own: the generations are built and switched there, and the
    link keeps pointing at the served one (not replaced by a folder on the project's disk)."""
    disk, root = tmp_path / "disk", tmp_path / "project"
    disk.mkdir()
    root.mkdir()
    (root / "output").symlink_to(disk / "index")  # dangling until the first run
    folders = OutputFolders(root)
    for label, how in (("A", "rename"), ("B", "exchange"), ("C", "exchange")):
        _stage(folders, label, 5)
        assert folders.switch_in() == how
    assert (root / "output").is_symlink() and os.readlink(root / "output") == str(disk / "index")
    assert (_label(root / "output"), _label(disk / "index.previous")) == ("C", "B")
    assert sorted(p.name for p in disk.iterdir()) == ["index", "index.previous"]
    assert sorted(p.name for p in root.iterdir()) == ["output"]


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


# --------------------------------------------------------------------------- incremental runs, killed

#: Seeds the kill points; any seed must pass (GRAPHRAG_FLOW_KILL_SEED=N to try another).
KILL_SEED = int(os.environ.get("GRAPHRAG_FLOW_KILL_SEED", "19"))
BEFORE = ("pep-0020.rst", "pep-0257.rst", "pep-0602.rst", "pep-0634.rst")
CHANGED, REMOVED, ADDED = "pep-0257.rst", "pep-0602.rst", "pep-0004.rst"
MAX_CONCURRENCY = 4
BATCH_SIZE = 2
RUN_TIMEOUT_S = 300
#: Points of the switch after which `output/` already holds the new generation.
AFTER_EXCHANGE = ("switch:exchanged", "switch:done")


class Cli:
    """`graphrag-flow` in its own process group, against the session's Prefect server."""

    def __init__(self, prefect_api, base_url: str):
        self.home, self.api_url = prefect_api
        self.base_url = base_url

    def env(self, **extra: str) -> dict[str, str]:
        from conftest import cli_env

        return cli_env(self.home, PREFECT_API_URL=self.api_url, **extra)

    def start(self, command: str, root: Path, **env: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "graphrag_flow.cli", command, "--root", str(root)], cwd=REPO,
                                env=self.env(**env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True, preexec_fn=lambda: os.umask(0o022))

    def run(self, command: str, root: Path, **env: str) -> subprocess.CompletedProcess:
        proc = self.start(command, root, **env)
        try:
            out, err = proc.communicate(timeout=RUN_TIMEOUT_S)
        finally:
            kill_group(proc)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    def index(self, root: Path) -> subprocess.CompletedProcess:
        from fake_openai import reset_remote

        reset_remote(self.base_url)
        result = self.run("index", root)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        return result

    def kill_when(self, root: Path, when, delay_s: float = 0.0) -> dict:
        """Start `index`, SIGKILL its process group `delay_s` after `when(server counters)`
        holds; the server's log of the run."""
        from fake_openai import fetch_stats, reset_remote

        reset_remote(self.base_url)
        proc = self.start("index", root)
        try:
            deadline = time.monotonic() + RUN_TIMEOUT_S
            while not when(fetch_stats(self.base_url, with_log=False)):
                if proc.poll() is not None:
                    out, err = proc.communicate()
                    pytest.fail(f"the run ended (exit {proc.returncode}) before the kill point:\n{out[-2000:]}{err[-2000:]}")
                assert time.monotonic() < deadline, "kill point never reached"
                time.sleep(0.03)
            time.sleep(delay_s)
            os.killpg(proc.pid, 9)
        finally:
            kill_group(proc)
            proc.communicate()
        time.sleep(0.3)  # requests cut by the kill are logged as they close
        return fetch_stats(self.base_url)

    def kill_at(self, root: Path, point: str) -> dict:
        """`index` kills itself at a named point (graphrag_flow/storage/faults.py); the server's log of the run."""
        from fake_openai import fetch_stats, reset_remote

        reset_remote(self.base_url)
        result = self.run("index", root, GRAPHRAG_FLOW_TEST_KILL_AT=point)
        assert result.returncode == -9, f"not killed at {point}: " + result.stdout[-3000:] + result.stderr[-3000:]
        return fetch_stats(self.base_url)


def _outputs(root: Path) -> dict:
    """Parquet tables and vector tables of output/ (the manifest aside: its run id and time differ)."""
    out = {name: pq.read_table(root / "output" / f"{name}.parquet").sort_by("id") for name in SCHEMAS}
    for field in VECTOR_FIELDS:
        out[f"lancedb/{field}"] = VectorTable(root / "output" / "lancedb", field).read().sort_by("id")
    return out


def _assert_equal_outputs(got: dict, want: dict, what: str) -> None:
    for name in want:
        assert got[name].equals(want[name]), f"{what}: {name} differs ({got[name].num_rows} vs {want[name].num_rows} rows)"


def _served_tree(root: Path) -> dict[str, str]:
    tree = _tree(root / "output")
    tree.pop(SEED_FILE, None)  # left in the new generation by a kill right after the switch
    return tree


@pytest.fixture(scope="module")
def corpora(tmp_path_factory, peps_mini) -> tuple[Path, Path]:
    """Four PEPs, then the same folder with one changed, one removed and one added."""
    from conftest import CORPORA, edit_corpus

    base = tmp_path_factory.mktemp("corpora")
    before, after = base / "before", base / "after"
    before.mkdir()
    for name in BEFORE:
        shutil.copy2(peps_mini / name, before / name)
    shutil.copytree(before, after, copy_function=shutil.copy2)
    edit_corpus(after, CHANGED, REMOVED, CORPORA / "peps-extra" / ADDED)
    return before, after


def _project(root: Path, input_dir: Path, base_url: str) -> Path:
    from conftest import make_project

    llm = {"provider": "openai", "api_base": base_url, "api_key": "sk-atomic-output-test",
           "max_concurrency": MAX_CONCURRENCY, "embedding_batch_size": BATCH_SIZE, "max_retries": 2}
    return make_project(root, input_dir=input_dir, llm=llm)


def _point_input(root: Path, input_dir: Path) -> None:
    import yaml

    path = root / "settings.yaml"
    settings = yaml.safe_load(path.read_text())
    settings["input"]["dir"] = str(input_dir)
    path.write_text(yaml.safe_dump(settings))


@pytest.fixture(scope="module")
def cli(prefect_api, fake) -> Cli:
    return Cli(prefect_api, fake)


@pytest.fixture(scope="module")
def fresh(tmp_path_factory, corpora, cli) -> dict:
    """A fresh full index of the new folder: what the incremental run must end equal to."""
    from fake_openai import configure_remote

    configure_remote(cli.base_url, latency_s=0.0, per_item_latency_s=0.0)
    root = _project(tmp_path_factory.mktemp("fresh") / "project", corpora[1], cli.base_url)
    cli.index(root)
    return _outputs(root)


@pytest.fixture(scope="module")
def killed_chain(tmp_path_factory, corpora, cli, fresh) -> dict:
    """One project: a completed run of the old folder, then the incremental run of the new one
    killed at seeded random points, one after the other (each resuming the last), then completed."""
    from fake_openai import configure_remote

    rng = random.Random(KILL_SEED)
    before, after = corpora
    root = _project(tmp_path_factory.mktemp("chain") / "project", before, cli.base_url)
    configure_remote(cli.base_url, latency_s=0.0, per_item_latency_s=0.0)
    cli.index(root)
    last_good = {"tree": _served_tree(root), "manifest": read_manifest(root / "output")}
    _point_input(root, after)
    kills: list[dict] = []

    def after_kill(point: str, stats: dict | None = None) -> None:
        status = cli.run("status", root)
        kills.append({"point": point, "status": status, "tree": _served_tree(root),
                      "staging": (root / "output.next").is_dir(), "stats": stats,
                      "outputs": _outputs(root) if point in AFTER_EXCHANGE else None})

    # mid-extraction: 0-0.2 s after the 1st-3rd extraction answer of the new text, others in flight
    configure_remote(cli.base_url, latency_s=0.3, per_item_latency_s=0.0)
    n, delay = rng.randint(1, 3), round(rng.uniform(0.0, 0.2), 2)
    stats = cli.kill_when(root, lambda s: s["ok"].get("chat", 0) >= n, delay)
    after_kill(f"mid-extraction ({delay} s after {n} chat answers)", stats)
    # mid-embedding: slow embeddings, 0-0.3 s after the 2nd-6th batch was answered
    configure_remote(cli.base_url, latency_s=0.02, per_item_latency_s=0.15)
    m, delay = rng.randint(2, 6), round(rng.uniform(0.0, 0.3), 2)
    stats = cli.kill_when(root, lambda s: s["ok"].get("embeddings", 0) >= m, delay)
    after_kill(f"mid-embedding ({delay} s after {m} embedding answers)", stats)
    configure_remote(cli.base_url, latency_s=0.0, per_item_latency_s=0.0)
    # named points a timer cannot hit: after the embedding, during the write, during the switch
    for point in ("after-embedding", f"write:{rng.choice(list(SCHEMAS))}", "write:manifest",
                  rng.choice(["switch:start", "switch:previous-removed"]), rng.choice(AFTER_EXCHANGE)):
        stats = cli.kill_at(root, point)
        after_kill(point, stats)
    final = cli.index(root)
    return {"root": root, "last_good": last_good, "kills": kills, "final": final,
            "status": cli.run("status", root)}


def test_after_every_kill_output_is_the_last_completed_run_exactly_and_verifies(killed_chain, fresh):
    chain = killed_chain
    for kill in chain["kills"]:
        what = f"kill at {kill['point']} (seed {KILL_SEED})"
        assert kill["status"].returncode == 0, what + ": status says output/ does not verify\n" + kill["status"].stdout
        if kill["point"] in AFTER_EXCHANGE:
            # the switch had happened: output/ is the new run's, whole
            _assert_equal_outputs(kill["outputs"], fresh, what)
        else:
            assert kill["tree"] == chain["last_good"]["tree"], what + ": output/ changed"
            assert kill["staging"], what + ": the unfinished run's checkpoint (output.next) is gone"
    points = [k["point"] for k in chain["kills"]]
    assert any(p.startswith("mid-extraction") for p in points) and any(p.startswith("mid-embedding") for p in points)


def test_status_after_a_kill_names_the_unfinished_run_beside_the_verified_output(killed_chain):
    kill = next(k for k in killed_chain["kills"] if k["point"] == "after-embedding")
    out = kill["status"].stdout
    run_id = killed_chain["last_good"]["manifest"]["run_id"]
    assert f"last completed run {run_id}" in " ".join(out.split()) and "verified" in out, out
    assert "unfinished" in out and "output.next" in " ".join(out.split()), out


def test_the_run_after_the_kills_completes_equal_to_a_fresh_full_index(killed_chain, fresh):
    root = killed_chain["root"]
    _assert_equal_outputs(_outputs(root), fresh, "incremental run after kills vs fresh full index")
    assert killed_chain["status"].returncode == 0, killed_chain["status"].stdout
    assert sorted(p.name for p in root.iterdir() if p.name.startswith("output")) == ["output", "output.previous"]
    # written under umask 022: another user (the one running `graphrag query`) can read every file
    modes = {str(p.relative_to(root)): oct(p.stat().st_mode & 0o777) for p in (root / "output").rglob("*")}
    assert modes and all(m == ("0o755" if (root / name).is_dir() else "0o644") for name, m in modes.items()), modes


def _embedding_batches(stats: dict) -> list[frozenset[str]]:
    return [frozenset(e["input_sha256s"]) for e in stats["log"] if e["endpoint"] == "embeddings" and e["input_sha256s"]]


def test_a_run_resumed_after_a_kill_mid_embedding_redoes_only_the_batches_in_flight(killed_chain):
    """The staging folder is the run's checkpoint: the run after the kill (the one killed
    after its embedding) sends again at most the batches the kill cut short."""
    kills = killed_chain["kills"]
    at = next(i for i, k in enumerate(kills) if k["point"].startswith("mid-embedding"))
    killed, resumed = kills[at]["stats"], kills[at + 1]["stats"]
    assert kills[at + 1]["point"] == "after-embedding"
    answered = set(_embedding_batches(killed))
    assert answered, "the kill came before any embedding was sent"
    sent_again = set().union(*_embedding_batches(resumed)) if _embedding_batches(resumed) else set()
    repeated = sum(1 for batch in answered if batch & sent_again)
    assert repeated <= MAX_CONCURRENCY, f"{repeated} embedding batches of the killed run were sent again"
    assert _embedding_batches(resumed), "nothing was left to embed after the kill: the kill came too late"


# --------------------------------------------------------------------------- a full disk during the write

_DISK_FULL = r"""
import json, os, shutil, subprocess, sys
from pathlib import Path
sys.path.insert(0, "tests")
from conftest import cli_env, make_project
import yaml

a = json.loads(sys.argv[1])
root, results = Path(a["root"]), Path(a["results"])
if a["variant"] == "tmpfs":  # in a mount namespace of our own: a small filesystem just for the project
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(root)], check=True)
make_project(root, input_dir=Path(a["before"]), llm=a["llm"])
env = cli_env(Path(a["prefect_home"]), PREFECT_API_URL=a["api_url"])

def cli(command, **extra):
    p = subprocess.run([sys.executable, "-m", "graphrag_flow.cli", command, "--root", str(root)], env=dict(env, **extra),
                       capture_output=True, text=True, timeout=300)
    return {"rc": p.returncode, "out": (p.stdout + p.stderr)[-4000:]}

def tree():
    out = root / "output"
    return {str(p.relative_to(out)): p.read_bytes().hex() for p in sorted(out.rglob("*")) if p.is_file()}

r = {"first": cli("index")}
before = tree()
settings = yaml.safe_load((root / "settings.yaml").read_text())
settings["input"]["dir"] = a["after"]
(root / "settings.yaml").write_text(yaml.safe_dump(settings))
r["killed_after_embedding"] = cli("index", GRAPHRAG_FLOW_TEST_KILL_AT="after-embedding")
ballast = root / "ballast"
extra = {}
if a["variant"] == "tmpfs":
    st = os.statvfs(root)
    free = st.f_bavail * st.f_frsize
    parquet = sum(p.stat().st_size for p in (root / "output").glob("*.parquet"))
    r["free_left"] = parquet // 3
    with open(ballast, "wb") as fh:  # the disk fills up: a third of the tables' size is left
        fh.truncate(0)
        os.posix_fallocate(fh.fileno(), 0, free - r["free_left"])
else:
    extra[a["enospc_env"]] = "write:output.next/entities.parquet"
r["disk_full"] = cli("index", **extra)
r["status_after"] = cli("status")
r["unchanged"] = tree() == before
ballast.unlink(missing_ok=True)
r["freed"] = cli("index")
r["status_final"] = cli("status")
shutil.copytree(root / "output", results / "output")
print("RESULT " + json.dumps(r))
"""


def _user_namespaces_mount() -> bool:
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /mnt 2>/dev/null || "
                            "mount -t tmpfs -o size=1m tmpfs \"$TMPDIR\""], capture_output=True,
                           env=dict(os.environ, TMPDIR=os.environ.get("TMPDIR", "/tmp")))
    return probe.returncode == 0


@pytest.mark.parametrize("variant", ["tmpfs", "injected"])
def test_a_full_disk_during_the_write_leaves_the_served_output_intact(variant, tmp_path, corpora, cli, fresh):
    """`tmpfs`: the project on a small filesystem that really fills up (a tmpfs in a user and
    mount namespace: no root needed where the kernel allows them); `injected`: the flush of a
    parquet file fails with ENOSPC (graphrag_flow/storage/faults.py), where namespaces are not allowed."""
    from fake_openai import configure_remote

    from graphrag_flow.storage.faults import ENOSPC_AT_ENV

    command = [sys.executable, "-c", _DISK_FULL]
    if variant == "tmpfs":
        if shutil.which("unshare") is None or not _user_namespaces_mount():
            pytest.skip("no user and mount namespaces here (unshare -rm): the injected variant covers this")
        command = ["unshare", "-rm", *command]
    configure_remote(cli.base_url, latency_s=0.0, per_item_latency_s=0.0)
    root, results = tmp_path / "project", tmp_path / "results"
    root.mkdir()
    results.mkdir()
    args = {"variant": variant, "root": str(root), "results": str(results), "before": str(corpora[0]),
            "after": str(corpora[1]), "prefect_home": str(cli.home), "api_url": cli.api_url,
            "enospc_env": ENOSPC_AT_ENV,
            "llm": {"provider": "openai", "api_base": cli.base_url, "api_key": "sk-disk-full-test",
                    "max_concurrency": MAX_CONCURRENCY, "embedding_batch_size": BATCH_SIZE}}
    proc = subprocess.run([*command, json.dumps(args)], cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))[7:])
    assert r["first"]["rc"] == 0 and r["killed_after_embedding"]["rc"] == -9, r
    failed = r["disk_full"]
    assert failed["rc"] == 1, failed["out"]
    message = " ".join(failed["out"].split())
    assert "writing the outputs failed at" in message and "No space left on device" in message, message
    assert "Traceback" not in failed["out"]
    assert r["status_after"]["rc"] == 0 and r["unchanged"], r["status_after"]["out"]
    assert r["freed"]["rc"] == 0 and r["status_final"]["rc"] == 0, r["freed"]["out"]
    got = {name: pq.read_table(results / "output" / f"{name}.parquet").sort_by("id") for name in SCHEMAS}
    for field in VECTOR_FIELDS:
        got[f"lancedb/{field}"] = VectorTable(results / "output" / "lancedb", field).read().sort_by("id")
    _assert_equal_outputs(got, fresh, f"the run after the full disk ({variant})")
