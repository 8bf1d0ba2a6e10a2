"""Resume partway, proved with real kill -9: the CLI in its own process group, killed at a point
chosen by watching the fake OpenAI server's counters (or the LanceDB tables offline), then run
again. What a user relies on: a re-run redoes only what was in flight, sends no chat request
whose answer had arrived, and ends with the same tables and vectors as a run that never died.

One Prefect server is shared by every CLI run of this module (PREFECT_API_URL), so a run costs
its imports and its work, not a temporary server's start; the fake server runs in its own
process, so its request log survives every kill.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from conftest import REPO, cli_env, kill_group, make_project
from fake_openai import configure_remote, fetch_stats, reset_remote
from graphrag_flow.hashing import sha256_text
from graphrag_flow.storage.vectors import VectorTable
from graphrag_flow.tables import SCHEMAS, VECTOR_FIELDS, embedding_inputs

MAX_CONCURRENCY = 4
BATCH_SIZE = 8
#: An answer counts as "arrived before the kill" when the server finished writing it this long
#: before the kill: the client still has to read, validate and commit it (a loaded machine).
ARRIVAL_GRACE_S = 0.5
RUN_TIMEOUT_S = 300


# --------------------------------------------------------------------------- processes


class Runner:
    """Runs `graphrag-flow index` against the module's Prefect server and fake server."""

    def __init__(self, prefect_api, base_url: str):
        self.home, self.api_url = prefect_api
        self.base_url = base_url

    def env(self) -> dict[str, str]:
        return cli_env(self.home, PREFECT_API_URL=self.api_url)

    def _start(self, root: Path, *extra: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "graphrag_flow.cli", "index", "--root", str(root), *extra],
            cwd=REPO, env=self.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            start_new_session=True,
        )

    def run(self, root: Path, *extra: str) -> tuple[subprocess.CompletedProcess, dict]:
        """A whole run; returns the CLI result and the server's log of this run only."""
        reset_remote(self.base_url)
        proc = self._start(root, *extra)
        try:
            stdout, stderr = proc.communicate(timeout=RUN_TIMEOUT_S)
        finally:
            kill_group(proc)
        result = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
        assert result.returncode == 0, stdout[-3000:] + stderr[-3000:]
        return result, fetch_stats(self.base_url)

    def run_and_kill(self, root: Path, when, *extra: str, poll_s: float = 0.05) -> tuple[dict, float]:
        """Start a run, SIGKILL its process group as soon as `when(counters)` is true.

        `when` gets the server's counters (no log: polled every 50 ms, the log would cost the
        fake server more than the run). Returns the server's log of this run and the
        server-clock time of the kill.
        """
        reset_remote(self.base_url)
        proc = self._start(root, *extra)
        try:
            deadline = time.monotonic() + RUN_TIMEOUT_S
            while True:
                stats = fetch_stats(self.base_url, with_log=False)
                if when(stats):
                    os.killpg(proc.pid, signal.SIGKILL)
                    kill_t = stats["now_t"]
                    break
                if proc.poll() is not None:
                    out, err = proc.communicate()
                    pytest.fail(f"the run ended (exit {proc.returncode}) before the kill point:\n{out[-2000:]}{err[-2000:]}")
                assert time.monotonic() < deadline, "kill point never reached"
                time.sleep(poll_s)
        finally:
            kill_group(proc)
            proc.communicate()
        time.sleep(0.3)  # requests cut by the kill are logged as they close
        return fetch_stats(self.base_url), kill_t


# --------------------------------------------------------------------------- reading results


def _entries(stats: dict, endpoint: str) -> list[dict]:
    return [e for e in stats["log"] if e["endpoint"] == endpoint]


def _arrived_chat(stats: dict, kill_t: float) -> set[str]:
    return {
        e["body_sha256"] for e in _entries(stats, "chat")
        if e["completed"] and e["status"] == 200 and e["t_end"] <= kill_t - ARRIVAL_GRACE_S
    }


def _embedding_batches(stats: dict) -> list[frozenset[str]]:
    return [frozenset(e["input_sha256s"]) for e in _entries(stats, "embeddings") if e["input_sha256s"]]


def _completed(stats: dict, endpoint: str, schema: str | None = None) -> int:
    return sum(
        1 for e in stats["log"]
        if e["endpoint"] == endpoint and e["completed"] and (schema is None or e["schema"] == schema)
    )


def _tables(root: Path) -> dict:
    return {name: pq.read_table(root / "output" / f"{name}.parquet") for name in SCHEMAS}


def _vectors(root: Path, out: str = "output") -> dict:
    return {f: VectorTable(root / out / "lancedb", f).read().sort_by("id") for f in VECTOR_FIELDS}


def _assert_same_outputs(root: Path, reference: Path) -> None:
    """Tables and vectors equal an uninterrupted run's: ids, texts, vectors; no duplicate ids."""
    got, want = _tables(root), _tables(reference)
    for name in SCHEMAS:
        ids = got[name].column("id").to_pylist()
        assert len(ids) == len(set(ids)), f"{name}: duplicate ids"
        assert got[name].equals(want[name]), f"{name} differs from the uninterrupted run's"
    vgot, vwant = _vectors(root), _vectors(reference)
    for field in VECTOR_FIELDS:
        ids = vgot[field].column("id").to_pylist()
        assert len(ids) == len(set(ids)), f"lancedb/{field}: duplicate ids"
        for col in ("id", "content_sha256", "model", "vector"):
            assert vgot[field].column(col).equals(vwant[field].column(col)), f"lancedb/{field}.{col} differs"


def _summary_rows(stdout: str) -> dict[str, list[str]]:
    rows = {}
    for m in re.finditer(r"^│\s*([\w-]+)\s*│.*$", stdout, re.M):
        rows[m.group(1)] = [c.strip() for c in m.group(0).strip("│").split("│")]
    return rows


def _all_embedding_rows(root: Path) -> dict[str, set[tuple[str, str]]]:
    """(id, sha256 of the embedded text) per field, from the output tables."""
    tables = {n: t.to_pandas() for n, t in _tables(root).items()}
    out = {}
    for field, table in VECTOR_FIELDS.items():
        inputs = embedding_inputs(field, tables[table])
        out[field] = {(i, sha256_text(t)) for i, t in zip(inputs["id"], inputs["text"])}
    return out


# --------------------------------------------------------------------------- the openai scenario


def _project(root: Path, input_dir: Path, base_url: str, **llm) -> Path:
    return make_project(
        root, input_dir=input_dir,
        llm={"provider": "openai", "api_base": base_url, "api_key": "sk-resume-test",
             "max_concurrency": MAX_CONCURRENCY, "embedding_batch_size": BATCH_SIZE, "max_retries": 2, **llm},
    )


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, peps_mini) -> Path:
    """A copy of peps-mini (mtimes kept, so creation dates match across projects)."""
    target = tmp_path_factory.mktemp("corpus") / "peps-mini"
    shutil.copytree(peps_mini, target, copy_function=shutil.copy2)
    return target


@pytest.fixture(scope="module")
def runner(prefect_api, fake) -> Runner:
    return Runner(prefect_api, fake)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, corpus, runner):
    """One uninterrupted run: what every resumed run must end equal to."""
    configure_remote(runner.base_url, latency_s=0.0, per_item_latency_s=0.0)
    root = _project(tmp_path_factory.mktemp("reference") / "project", corpus, runner.base_url)
    result, stats = runner.run(root)
    return root, stats


@pytest.fixture(scope="module")
def chain(tmp_path_factory, corpus, runner, reference):
    """One project killed three times (mid-extraction, mid-report, mid-embedding), then finished."""
    ref_root, ref_stats = reference
    ref_chat = {e["body_sha256"] for e in _entries(ref_stats, "chat")}
    root = _project(tmp_path_factory.mktemp("chain") / "project", corpus, runner.base_url)
    runs: dict[str, dict] = {}
    # 1: mid-extraction (slow embeddings, 0.45 s a batch: text units are embedded in the slots
    # extraction leaves free, so at the kill their batches are in flight or not yet started)
    configure_remote(runner.base_url, latency_s=0.05, per_item_latency_s=0.05)
    # (every chat answer before the extraction stage ends is a graph extraction)
    stats, kill_t = runner.run_and_kill(root, lambda s: s["ok"].get("chat", 0) >= 20)
    runs["mid_extraction"] = {"stats": stats, "kill_t": kill_t}
    status = subprocess.run(
        [sys.executable, "-m", "graphrag_flow.cli", "status", "--root", str(root)],
        cwd=REPO, env=runner.env(), capture_output=True, text=True, timeout=120,
    )
    runs["status_after_kill"] = status

    # 2: mid-report (entity descriptions are being embedded alongside)
    configure_remote(runner.base_url, latency_s=0.05, per_item_latency_s=0.01)
    stats, kill_t = runner.run_and_kill(root, lambda s: s["chat_schemas"].get("community_report", 0) >= 44)
    runs["mid_report"] = {"stats": stats, "kill_t": kill_t}

    # 3: mid-embedding, after the last chat answer: community reports are being embedded
    configure_remote(runner.base_url, latency_s=0.05, per_item_latency_s=0.04)
    answered = {e["body_sha256"] for r in ("mid_extraction", "mid_report") for e in _entries(runs[r]["stats"], "chat")
                if e["completed"] and e["status"] == 200}

    def all_chat_done_and_embedding(counters: dict) -> bool:
        in_flight = counters["requests"].get("chat", 0) - counters["ok"].get("chat", 0)
        if len(answered) + counters["ok"].get("chat", 0) < len(ref_chat) or in_flight:
            return False
        s = fetch_stats(runner.base_url)
        chats = _entries(s, "chat")
        done = answered | {e["body_sha256"] for e in chats if e["completed"] and e["status"] == 200}
        if not ref_chat <= done or any(e["t_end"] is None for e in chats):
            return False
        last_chat = max((e["t_end"] for e in chats), default=0.0)
        return sum(1 for e in _entries(s, "embeddings") if e["completed"] and e["t_start"] > last_chat) >= 3

    stats, kill_t = runner.run_and_kill(root, all_chat_done_and_embedding)
    runs["mid_embedding"] = {"stats": stats, "kill_t": kill_t}

    # 4: the run that finishes; 5: a second run of the finished index
    configure_remote(runner.base_url, latency_s=0.0, per_item_latency_s=0.0)
    result, stats = runner.run(root)
    runs["final"] = {"stats": stats, "result": result}
    result, stats = runner.run(root)
    runs["again"] = {"stats": stats, "result": result}
    return root, runs


def _resent_chat(earlier: dict, later_stats: dict) -> set[str]:
    arrived = _arrived_chat(earlier["stats"], earlier["kill_t"])
    return arrived & {e["body_sha256"] for e in _entries(later_stats, "chat")}


def test_killed_mid_extraction_the_rerun_resends_no_arrived_answer(chain):
    _, runs = chain
    killed = runs["mid_extraction"]
    assert _completed(killed["stats"], "chat", "graph_extraction") >= 20
    assert not _resent_chat(killed, runs["mid_report"]["stats"]), "chat answers received before the kill were asked again"


def test_killed_mid_report_the_rerun_resends_no_arrived_answer(chain):
    _, runs = chain
    killed = runs["mid_report"]
    assert _completed(killed["stats"], "chat", "community_report") >= 40
    assert not _resent_chat(killed, runs["mid_embedding"]["stats"])
    # and nothing that arrived in the first killed run either
    assert not _resent_chat(runs["mid_extraction"], runs["mid_embedding"]["stats"])


def _repeated_batches(killed_stats: dict, rerun_stats: dict) -> int:
    resent = set().union(*_embedding_batches(rerun_stats)) if _embedding_batches(rerun_stats) else set()
    return sum(1 for batch in set(_embedding_batches(killed_stats)) if batch & resent)


@pytest.mark.parametrize("killed,rerun", [("mid_extraction", "mid_report"), ("mid_report", "mid_embedding"),
                                          ("mid_embedding", "final")])
def test_a_rerun_repeats_at_most_max_concurrency_embedding_batches(chain, killed, rerun):
    _, runs = chain
    repeated = _repeated_batches(runs[killed]["stats"], runs[rerun]["stats"])
    assert repeated <= MAX_CONCURRENCY, f"{repeated} embedding batches of the killed run were sent again"
    # Inputs sent by any earlier run and sent again: at most the batches in flight at one kill.
    order = ["mid_extraction", "mid_report", "mid_embedding", "final"]
    earlier = set().union(*(set().union(*_embedding_batches(runs[r]["stats"])) for r in order[: order.index(rerun)]))
    again = [b & earlier for b in _embedding_batches(runs[rerun]["stats"])]
    assert sum(len(b) for b in again) <= MAX_CONCURRENCY * BATCH_SIZE


def test_killed_mid_embedding_the_rerun_sends_no_chat_and_embeds_the_rest(chain):
    _, runs = chain
    final = runs["final"]["stats"]
    assert final["requests"].get("chat", 0) == 0
    assert final["requests"].get("embeddings", 0) > 0, "the kill came after embedding had finished"


def test_every_resumed_run_ends_equal_to_an_uninterrupted_run(chain, reference):
    root, _ = chain
    _assert_same_outputs(root, reference[0])


def test_a_second_run_of_a_finished_index_sends_no_request(chain):
    _, runs = chain
    again = runs["again"]
    requests = again["stats"]["requests"]
    assert requests.get("chat", 0) == 0 and requests.get("embeddings", 0) == 0, requests
    assert requests.get("models", 0) <= 1  # the preflight's GET /models only
    rows = _summary_rows(again["result"].stdout)
    for stage in ("extract", "summarize", "reports", *(f"embed-{f}" for f in VECTOR_FIELDS)):
        assert rows[stage][3] == "0", f"{stage} recomputed {rows[stage][3]} items"


def test_status_of_a_killed_run_shows_partial_progress_not_verified(chain):
    _, runs = chain
    status = runs["status_after_kill"]
    assert status.returncode != 0, status.stdout
    assert "NOT verified" in status.stdout or "no completed run" in status.stdout
    lines = {m.group(1): m.group(0)
             for m in re.finditer(r"^│\s*((?:stage|vectors) [\w-]+(?: \(unfinished run\))?)\s*│.*$", status.stdout, re.M)}
    assert "stage chunk" in lines and "stage extract" in lines, status.stdout
    progress = {}
    for item, line in lines.items():
        cells = [c.strip() for c in line.strip("│").split("│")]
        progress[item] = cells
    assert progress["stage chunk"][2] == "yes"
    # the text units whose extraction answers were stored before the kill count as done
    done, total = progress["stage extract"][1].split("/")
    assert 0 < int(done) < int(total), progress["stage extract"]
    assert progress["stage extract"][2] == "no"
    # the killed run's vectors are in its staging folder, output.next, which a rerun resumes
    vectors = progress["vectors text_unit_text (unfinished run)"]
    done, total = vectors[1].split("/")
    assert int(done) < int(total), vectors
    assert vectors[2] == "no"


def test_status_of_a_finished_index_is_verified_per_stage_and_field(chain):
    from graphrag_flow.config import load_settings
    from graphrag_flow.status import project_status

    root, _ = chain
    report = project_status(root, load_settings(root))
    assert report.verified, [(r.item, r.progress, r.notes) for r in report.rows if not r.verified]
    rows = {r.item: r for r in report.rows}
    for stage in ("load", "chunk", "extract", "summarize", "communities", "reports"):
        done, total = rows[f"stage {stage}"].progress.split("/")
        assert done == total and int(total) > 0, rows[f"stage {stage}"]
    for field in VECTOR_FIELDS:
        done, total = rows[f"vectors {field}"].progress.split("/")
        assert done == total and int(total) > 0, rows[f"vectors {field}"]


@pytest.fixture(scope="module")
def full_killed(chain, runner):
    """A finished index, then `--full` killed midway, then `--full` again."""
    root, _ = chain
    before_tables, before_vectors = _tables(root), _vectors(root)
    configure_remote(runner.base_url, latency_s=0.05, per_item_latency_s=0.01)
    stats, _ = runner.run_and_kill(root, lambda s: s["ok"].get("embeddings", 0) >= 8, "--full")
    readable = (_tables(root), _vectors(root))
    configure_remote(runner.base_url, latency_s=0.0, per_item_latency_s=0.0)
    result, rerun = runner.run(root, "--full")
    return root, before_tables, before_vectors, readable, stats


def test_a_killed_full_rebuild_leaves_the_previous_outputs_readable_and_a_rerun_completes(full_killed, reference):
    root, before_tables, before_vectors, (tables, vectors), killed = full_killed
    assert _completed(killed, "embeddings") >= 8
    for name in SCHEMAS:
        assert tables[name].equals(before_tables[name]), name
    for field in VECTOR_FIELDS:
        assert vectors[field].equals(before_vectors[field]), field
    _assert_same_outputs(root, reference[0])
    # the rebuild's staging folder was switched in; the generation it replaced is kept beside
    # it until the next switch (a reader that opened it finishes reading it)
    assert not (root / "output.next").exists()
    kept = {name: pq.read_table(root / "output.previous" / f"{name}.parquet") for name in SCHEMAS}
    for name in SCHEMAS:
        assert kept[name].equals(before_tables[name]), name


def _set_settings(root: Path, **llm) -> None:
    path = root / "settings.yaml"
    settings = yaml.safe_load(path.read_text())
    settings["llm"].update(llm)
    path.write_text(yaml.safe_dump(settings))


def test_a_changed_text_reembeds_only_its_rows_and_a_changed_model_every_row(full_killed, runner, tmp_path):
    root = full_killed[0]
    before = _all_embedding_rows(root)
    edited = tmp_path / "edited"
    corpus = Path(yaml.safe_load((root / "settings.yaml").read_text())["input"]["dir"])
    shutil.copytree(corpus, edited, copy_function=shutil.copy2)
    doc = edited / "pep-0020.rst"
    doc.write_text(doc.read_text() + "\n\nAddendum: Guido van Rossum approved the Zen of Python.\n")
    settings = yaml.safe_load((root / "settings.yaml").read_text())
    settings["input"]["dir"] = str(edited)
    (root / "settings.yaml").write_text(yaml.safe_dump(settings))

    _, stats = runner.run(root)
    after = _all_embedding_rows(root)
    new_rows = {f: after[f] - before[f] for f in VECTOR_FIELDS}
    assert new_rows["text_unit_text"], "the edit changed no text unit"
    sent = [s for b in _embedding_batches(stats) for s in b]
    assert set(sent) == {sha for f in VECTOR_FIELDS for _i, sha in new_rows[f]}
    assert len(sent) == sum(len(r) for r in new_rows.values()), "a row was embedded twice"
    vectors = _vectors(root)
    for field in VECTOR_FIELDS:
        arrow = vectors[field]
        assert set(zip(arrow.column("id").to_pylist(), arrow.column("content_sha256").to_pylist())) == after[field]

    _set_settings(root, embedding_model="text-embedding-3-large")
    configure_remote(runner.base_url, models=["gpt-4.1-mini", "text-embedding-3-small", "text-embedding-3-large"])
    try:
        _, stats = runner.run(root)
    finally:
        configure_remote(runner.base_url, models=["gpt-4.1-mini", "text-embedding-3-small"])
    assert stats["requests"].get("chat", 0) == 0
    sent = [s for b in _embedding_batches(stats) for s in b]
    assert sorted(sent) == sorted(sha for f in VECTOR_FIELDS for _i, sha in after[f])
    for field, arrow in _vectors(root).items():
        assert set(arrow.column("model").to_pylist()) == {"text-embedding-3-large"}, field
        assert arrow.num_rows == len(after[field])



# --------------------------------------------------------------------------- crash-safe parquet


_WRITER = """
import sys, itertools
import pandas as pd
from graphrag_flow.storage.atomic import write_parquet
target = sys.argv[1]
frames = [pd.DataFrame({"id": [f"{v}-{i}" for i in range(200_000)], "v": [v] * 200_000}) for v in ("a", "b")]
print("ready", flush=True)
for frame in itertools.cycle(frames):
    write_parquet(frame, target)
"""


@pytest.mark.parametrize("delay_s", [0.3, 0.9])
def test_a_kill_while_parquet_is_written_leaves_the_old_or_the_new_file_whole(tmp_path, delay_s):
    target = tmp_path / "entities.parquet"
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(target)], cwd=REPO, stdout=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 60
        while not target.exists():
            assert time.monotonic() < deadline and proc.poll() is None, "the writer never wrote"
            time.sleep(0.05)
        time.sleep(delay_s)
    finally:
        kill_group(proc)
        proc.stdout.close()
    frame = pq.read_table(target).to_pandas()
    assert len(frame) == 200_000 and frame["v"].nunique() == 1
    assert frame["id"].is_unique
    # the temporary file the kill left behind is swept by the next write of that table
    from graphrag_flow.storage.atomic import write_parquet

    write_parquet(frame, target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["entities.parquet"]


# --------------------------------------------------------------------------- offline provider


#: ~14 text units and ~240 entity descriptions: four batches of the local model, so a kill after
#: the first leaves work to resume, and the test stays cheap.
OFFLINE_FILES = ("pep-0526.rst", "pep-0602.rst", "pep-0634.rst")


def test_offline_killed_mid_embedding_keeps_finished_batches(tmp_path, peps_mini, runner):
    """The local transformer's finished batches are not recomputed: the rows saved before the kill are
    untouched by the re-run, which embeds exactly the rest (its summary says how many)."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name in OFFLINE_FILES:
        shutil.copy2(peps_mini / name, corpus / name)
    # the transformer: the static model embeds a field in one batch of milliseconds, too fast
    # to kill between batches; the checkpoint (each batch merged as it comes) is the same code
    root = make_project(tmp_path / "offline", input_dir=corpus, embed={"offline_model": "minilm"})
    # a run's vector tables are its checkpoint, in the staging folder it switches in at its end
    table = VectorTable(root / "output.next" / "lancedb", "entity_description")
    proc = runner._start(root)
    try:
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while True:
            try:
                saved_rows = table.state().rows if table.exists() else 0
            except (OSError, ValueError, RuntimeError):
                saved_rows = 0  # the table is being created
            if saved_rows >= 64:
                os.killpg(proc.pid, signal.SIGKILL)
                break
            assert proc.poll() is None, "the run ended before a batch of entity descriptions was saved"
            assert time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        kill_group(proc)
        proc.communicate()
    saved = table.read().sort_by("id")
    assert saved.num_rows % 64 == 0, "a table holds whole batches only"

    result = subprocess.run(
        [sys.executable, "-m", "graphrag_flow.cli", "index", "--root", str(root)], cwd=REPO, env=runner.env(),
        capture_output=True, text=True, timeout=RUN_TIMEOUT_S,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert not (root / "output.next").exists()
    final = VectorTable(root / "output" / "lancedb", "entity_description").read().sort_by("id")
    assert final.num_rows > saved.num_rows, "the kill came after the last batch"
    ids = final.column("id").to_pylist()
    assert len(ids) == len(set(ids))
    row = _summary_rows(result.stdout)["embed-entity_description"]
    assert int(row[1]) == final.num_rows and int(row[2]) == saved.num_rows
    assert int(row[3]) == final.num_rows - saved.num_rows, row
    # the saved rows are exactly as the killed run left them
    kept = {i: v for i, v in zip(final.column("id").to_pylist(), final.column("vector").to_pylist())}
    for i, v in zip(saved.column("id").to_pylist(), saved.column("vector").to_pylist()):
        assert kept[i] == v, i
    # and the vectors are what the model gives for each row's text, as in an uninterrupted run
    # (checked on a sample of both kinds of row: the model costs ~0.1 s a text here)
    from graphrag_flow.stages.embed.offline_model import get_offline_embedder

    entities = pq.read_table(root / "output" / "entities.parquet").to_pandas()
    inputs = embedding_inputs("entity_description", entities)
    assert inputs["id"].tolist() == ids
    saved_ids = set(saved.column("id").to_pylist())
    sample = [k for k, i in enumerate(ids) if i in saved_ids][:12] + [k for k, i in enumerate(ids) if i not in saved_ids][:12]
    want = get_offline_embedder("truncate").embed([inputs["text"].iat[k] for k in sample])
    got = np.asarray(final.column("vector").combine_chunks().flatten()).reshape(len(ids), -1)[sample]
    assert np.allclose(got, want, atol=1e-5)
