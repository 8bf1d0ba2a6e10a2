"""The openai provider through the whole flow, against the fake server's faults (issue 4).

Each test drives what a user runs (`graphrag-flow index` / `check` in a subprocess, or the
`index` flow itself in a subprocess for the event-loop heartbeat) against the real fake
HTTP server (tests/fake_openai.py, its own process), and checks what the user relies on:
every vector in LanceDB is the server's vector for its text, the run finishes in bounded
time, the concurrency limit holds across stages, a failed batch fails the run by name and
finished batches stay saved, a bad key or model stops in seconds, and the key is written
nowhere.

CLI runs are few (each starts a temporary Prefect server): one fault-free baseline shared
by several tests, one fault run, one lost-batch run plus its resumption, one heartbeat run.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import lancedb
import numpy as np
import psutil
import pyarrow.parquet as pq
import pytest

from conftest import REPO, cli_env, make_project

try:
    from tests.fake_openai import (configure_remote, fake_embedding, fetch_stats, reset_remote,
                                   start_fake_server_process, stop_fake_server_process)
except ImportError:  # plain `pytest` puts tests/ itself on sys.path
    from fake_openai import (configure_remote, fake_embedding, fetch_stats, reset_remote,  # type: ignore[no-redef]
                             start_fake_server_process, stop_fake_server_process)

KEY = "sk-test-DO-NOT-LEAK-1234"
EMBED_MODEL = "text-embedding-3-small"
DIM = 64  # the fake server's dimension when the request names none
#: A small slice of peps-mini for the runs that test a failure, not throughput.
SUBSET = ("pep-0020.rst", "pep-0257.rst", "pep-0602.rst")
#: A code line of pep-0257 (no capitalised word, so no entity description quotes it):
#: only the text unit holding it is sent with it, in one embedding batch.
POISON = "if _kos_root: return _kos_root"
#: The CLI's temporary Prefect server can take over 20 s (its default limit) on a busy machine.
SLOW_START = {"PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120"}
ERROR_NOISE = ("client has been closed", "Server disconnected", "Traceback", "RemoteProtocolError")


# --------------------------------------------------------------------------- helpers


@contextmanager
def fake_server(**knobs) -> Iterator[str]:
    proc, url = start_fake_server_process(**knobs)
    try:
        yield url
    finally:
        stop_fake_server_process(proc)


def llm_section(url: str, **overrides) -> dict:
    llm = dict(provider="openai", api_base=url, api_key=KEY, max_concurrency=8, request_timeout_s=5.0, max_retries=6)
    llm.update(overrides)
    return llm


def corpus_copy(src: Path, dst: Path, names: tuple[str, ...] | None = None) -> Path:
    dst.mkdir(parents=True)
    for path in sorted(src.iterdir()):
        if names is None or path.name in names:
            shutil.copy2(path, dst / path.name)
    return dst


@dataclass
class CliRun:
    returncode: int
    stdout: str
    stderr: str
    wall_s: float
    exited_t: float  # time.monotonic() at exit: the same clock as the fake server's (one host)
    peak_threads: int
    leftovers: list[str] = field(default_factory=list)  # processes of its session still alive after exit

    @property
    def output(self) -> str:
        return " ".join((self.stdout + "\n" + self.stderr).split())  # rich wraps long lines


def run_cli_watched(args: list[str], prefect_home: Path, timeout: float = 400) -> CliRun:
    """The CLI in its own session; samples its thread count; lists what it left running."""
    start = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "graphrag_flow.cli", *args], cwd=REPO, env=cli_env(prefect_home, **SLOW_START),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    peak = [0]
    stop = threading.Event()

    def sample() -> None:
        try:
            p = psutil.Process(proc.pid)
            while not stop.is_set():
                peak[0] = max(peak[0], p.num_threads())
                stop.wait(0.25)
        except psutil.Error:
            pass

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        stdout, stderr = proc.communicate()
        raise AssertionError(f"CLI {args} did not finish in {timeout}s:\n{stdout[-3000:]}\n{stderr[-3000:]}")
    exited = time.monotonic()
    stop.set()
    sampler.join()
    time.sleep(0.5)
    leftovers = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        try:
            if p.pid != proc.pid and os.getsid(p.pid) == proc.pid:
                leftovers.append(" ".join(p.info["cmdline"] or [])[:200])
                p.kill()
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return CliRun(proc.returncode, stdout, stderr, exited - start, exited, peak[0], leftovers)


def assert_ok(run: CliRun) -> None:
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-6000:]
    assert not run.leftovers, f"processes left running after the CLI exited: {run.leftovers}"


def vector_texts(root: Path) -> dict[str, dict[str, str]]:
    """Per vector table, id -> the text a user expects embedded there (GraphRAG's fields)."""
    out = root / "output"
    units = pq.read_table(out / "text_units.parquet").to_pandas()
    entities = pq.read_table(out / "entities.parquet").to_pandas()
    reports = pq.read_table(out / "community_reports.parquet").to_pandas()
    return {
        "text_unit_text": dict(zip(units["id"], units["text"])),
        "entity_description": dict(zip(entities["id"], entities["title"] + ":" + entities["description"])),
        "community_full_content": dict(zip(reports["id"], reports["full_content"])),
    }


def read_vectors(root: Path, table: str, folder: str = "output") -> dict[str, np.ndarray]:
    arrow = lancedb.connect(str(root / folder / "lancedb")).open_table(table).to_arrow()
    ids = arrow.column("id").to_pylist()
    assert len(ids) == len(set(ids)), f"{table}: duplicate ids"
    vectors = np.asarray(arrow.column("vector").to_pylist(), dtype=np.float32)
    return dict(zip(ids, vectors))


def assert_vectors_are_the_servers(root: Path) -> int:
    """Every source row has exactly one vector, and it is the fake server's vector for its text."""
    n = 0
    for table, texts in vector_texts(root).items():
        stored = read_vectors(root, table)
        assert set(stored) == set(texts), (
            f"{table}: {len(set(texts) - set(stored))} missing, {len(set(stored) - set(texts))} extra")
        for id_, text in texts.items():
            expected = np.asarray(fake_embedding(EMBED_MODEL, text, DIM), dtype=np.float32)
            assert np.allclose(stored[id_], expected, atol=1e-6), f"{table} {id_}: not the server's vector for its text"
            n += 1
    return n


def max_overlap(entries: list[dict]) -> int:
    """Most requests in flight at once, from the server log's receive/finish times."""
    events = []
    for e in entries:
        events.append((e["t_start"], 1))
        events.append((e["t_end"] if e["t_end"] is not None else float("inf"), -1))
    events.sort(key=lambda ev: (ev[0], ev[1]))  # a finish before a start at the same instant
    now = peak = 0
    for _, d in events:
        now += d
        peak = max(peak, now)
    return peak


def api_log(stats: dict) -> list[dict]:
    return [e for e in stats["log"] if e["endpoint"] in ("chat", "embeddings")]


def split_by_who_ended(log: list[dict]) -> tuple[list[dict], list[dict]]:
    """(requests whose end the server decided: answers and its own disconnects; requests the
    client cut: hangs and slow answers its deadline gave up on). The server counts a cut
    request until it notices the close or finishes its latency, which on a busy machine is
    after the client's next request went out, so only the first kind shows the client's limit."""
    decided = [e for e in log if e["completed"] or e["status"] == "disconnect"]
    cut = [e for e in log if not e["completed"] and e["status"] != "disconnect"]
    return decided, cut


def llm_window(stats: dict) -> float:
    """First chat/embedding request to last response, on the server's clock (the preflight's
    GET /models comes before Prefect's start-up and is left out)."""
    log = api_log(stats)
    return max(e["t_end"] for e in log if e["t_end"] is not None) - min(e["t_start"] for e in log)


# --------------------------------------------------------------------------- fault-free baseline


@pytest.fixture(scope="module")
def baseline(tmp_path_factory, peps_mini, prefect_home):
    """peps-mini, no faults, a recognisable key the server insists on, max_concurrency 8."""
    with fake_server(latency_s=0.05, capacity=64, api_key=KEY) as url:
        root = make_project(tmp_path_factory.mktemp("baseline") / "project", input_dir=peps_mini,
                            llm=llm_section(url))
        run = run_cli_watched(["index", "--root", str(root)], prefect_home)
        stats = fetch_stats(url)
    assert_ok(run)
    return root, run, stats


def test_stages_reuse_the_runs_connections(baseline):
    """Every stage opens its own client, but the sockets are the run's: a stage's first round
    does not open max_concurrency new connections (TLS handshakes, against a real provider).
    Six LLM stages on fresh pools opened 50; the preflight check's own client adds two (its
    chat and embedding requests go out together)."""
    _, _, stats = baseline
    assert not stats["faults"], stats["faults"]  # no disconnects: nothing needed a new socket
    assert 8 <= stats["connections"] <= 8 + 2, stats["connections"]


def test_concurrency_limit_is_reached_and_never_exceeded_across_stages(baseline):
    _, run, stats = baseline
    log = api_log(stats)
    decided, abandoned = split_by_who_ended(log)
    assert stats["max_in_flight"] <= 8 + len(abandoned), stats["max_in_flight"]
    assert max_overlap(decided) == 8
    if not abandoned:
        assert stats["max_in_flight"] == 8
    # The limit is shared: embedding text units runs alongside extraction, and the chat and
    # embedding requests in flight together never exceed it either.
    extraction = [e for e in log if e["schema"] == "graph_extraction"]
    first_chat, last_extract = min(e["t_start"] for e in extraction), max(e["t_end"] for e in extraction)
    overlapping = [e for e in log if e["endpoint"] == "embeddings" and e["t_start"] < last_extract
                   and e["t_end"] > first_chat]
    assert overlapping, "no embedding request ran while the extraction stage ran"
    assert max_overlap([e for e in log if e["t_start"] < last_extract and e["completed"]]) == 8
    assert set(stats["chat_schemas"]) == {"graph_extraction", "entity_summary", "community_report"}


def test_baseline_vectors_are_the_servers_vectors(baseline):
    root, run, _ = baseline
    assert assert_vectors_are_the_servers(root) > 700
    assert "(verified)" in run.output


@pytest.mark.parametrize("field", ["community_full_content", "entity_description"])
def test_streamed_texts_are_embedded_once_each(baseline, field):
    """Report and entity texts go to their embeddings as each report or summary arrives (the
    run's row streams), where they take the request slots the chat stages leave free; the
    full pass afterwards must find the streamed rows, not embed a text twice or skip one.
    (When they go out depends on the free slots: benchmarks/llm_throughput.py measures it.)"""
    root, _, stats = baseline
    log = api_log(stats)
    shas = {hashlib.sha256(t.encode()).hexdigest() for t in vector_texts(root)[field].values()}
    sent = [sha for e in log if e["endpoint"] == "embeddings" and e["completed"]
            for sha in e["input_sha256s"] if sha in shas]
    assert len(shas) > 100
    assert sorted(sent) == sorted(shas)  # every text, once


def test_api_key_is_written_nowhere(baseline, prefect_home):
    root, run, stats = baseline
    assert stats["status_counts"].get("401", 0) == 0  # the key was sent (the server insists on it)
    needle = KEY.encode()
    assert needle not in (run.stdout + run.stderr).encode()
    searched = 0
    for base in (root, prefect_home):
        for path in base.rglob("*"):
            if not path.is_file() or path == root / "settings.yaml":
                continue
            searched += 1
            assert needle not in path.read_bytes(), f"the API key is in {path}"
    assert (root / "cache" / "llm_answers.sqlite").exists() and any((root / "cache" / "prefect-results").iterdir())
    assert any(p.name.endswith(".db") for p in prefect_home.rglob("*")), "Prefect's database was not searched"
    assert searched > 20


# --------------------------------------------------------------------------- disconnects and hangs


@pytest.fixture(scope="module")
def faulty(tmp_path_factory, peps_mini, prefect_home):
    """peps-mini with 10% of requests dropped without an answer and 2% never answered."""
    timeout_s = 5.0
    with fake_server(latency_s=0.05, capacity=64, p_disconnect=0.10, p_hang=0.02, seed=4) as url:
        root = make_project(tmp_path_factory.mktemp("faulty") / "project", input_dir=peps_mini,
                            llm=llm_section(url, request_timeout_s=timeout_s))
        run = run_cli_watched(["index", "--root", str(root)], prefect_home)
        stats = fetch_stats(url)
    return root, run, stats, timeout_s


def test_disconnects_lose_no_vector_and_show_no_client_error(faulty):
    root, run, stats, _ = faulty
    assert_ok(run)
    assert stats["faults"].get("disconnect", 0) >= 20, stats["faults"]
    assert any(e["status"] == "disconnect" and e["endpoint"] == "embeddings" for e in stats["log"])
    assert any(e["status"] == "disconnect" and e["endpoint"] == "chat" for e in stats["log"])
    assert assert_vectors_are_the_servers(root) > 700
    for noise in ERROR_NOISE:
        assert noise not in run.output, f"{noise!r} reached the output:\n{run.stderr[-4000:]}"
    assert "(verified)" in run.output
    # Retries take slots like any request (hangs here are cut while the machine is loaded).
    decided, cut_by_client = split_by_who_ended(api_log(stats))
    assert max_overlap(decided) <= 8
    assert stats["max_in_flight"] <= 8 + len(cut_by_client), stats["max_in_flight"]


def test_hangs_are_cut_by_the_timeout_and_the_run_stays_bounded(faulty, baseline):
    root, run, stats, timeout_s = faulty
    assert_ok(run)
    hangs = [e for e in stats["log"] if e["status"] == "hang"]
    assert len(hangs) >= 5, stats["faults"]
    last_response = stats["last_response_t"]
    for e in hangs:
        # The client gave up on each hung request itself, within the hard cap, during the run
        # (not when its process exited and the OS closed the socket).
        assert e["t_end"] - e["t_start"] <= timeout_s + 1.5, e
        assert e["t_end"] < last_response, e
    # Hung requests wait in parallel with the others, not one after the other.
    extra = llm_window(stats) - llm_window(baseline[2])
    serialized = len(hangs) * timeout_s
    assert extra < 0.5 * serialized, f"hangs cost {extra:.1f}s; {len(hangs)} hangs serialized would be {serialized:.0f}s"
    # No thread or event loop per request or per hang: the process stays small and exits promptly.
    assert run.peak_threads < 60, run.peak_threads
    assert run.exited_t - last_response < 30, "the CLI lingered after its last response"


# --------------------------------------------------------------------------- a batch lost for good


def test_a_batch_that_fails_for_good_fails_the_run_and_finished_batches_stay(tmp_path, peps_mini, prefect_home):
    corpus = corpus_copy(peps_mini, tmp_path / "corpus", SUBSET)
    with fake_server(latency_s=0.02, capacity=64, fail_inputs=[POISON]) as url:
        root = make_project(tmp_path / "project", input_dir=corpus,
                            llm=llm_section(url, embedding_batch_size=2, max_retries=1, request_timeout_s=3.0))
        failed = run_cli_watched(["index", "--root", str(root)], prefect_home)
        first = fetch_stats(url)
        status = subprocess.run([sys.executable, "-m", "graphrag_flow.cli", "status", "--root", str(root)], cwd=REPO,
                                env=cli_env(prefect_home), capture_output=True, text=True, timeout=120)

        assert failed.returncode != 0, failed.stdout[-3000:]
        assert not failed.leftovers, failed.leftovers
        msg = failed.output
        assert re.search(r"stage embed-text_unit_text: 1 item\(s\) failed: text_unit_text batch \d+", msg), msg[-3000:]
        assert "server error 500" in msg and "gave up after 2 attempt(s)" in msg
        assert KEY not in msg
        # said once, plainly: Prefect's engine logs keep their tracebacks in the UI, not on the console
        assert "Traceback" not in msg, msg[-3000:]
        assert re.search(r"embed-text_unit_text\s.*\s(\d+)/(\d+)", msg)
        done, total = map(int, re.search(r"embed-text_unit_text\s.*?\s(\d+)/(\d+)", msg).groups())
        assert done < total, "a failed stage's progress bar must stop short of its total"
        # Never reported as a verified or complete index.
        assert "(verified)" not in msg
        assert not (root / "output" / "_manifest.json").exists()
        assert status.returncode != 0, status.stdout
        # Finished batches were saved as they arrived: every text unit but the failed batch's.
        failed_inputs = {s for e in first["log"] if e["endpoint"] == "embeddings" and e["status"] == 500
                         for s in e["input_sha256s"]}
        assert len(failed_inputs) == 2
        # (in the failed run's staging folder, which the re-run resumes; output/ is not written)
        saved = read_vectors(root, "text_unit_text", "output.next")
        assert saved, "finished batches were not kept"

        # The provider recovers: the re-run embeds only the failed batch's two inputs again.
        configure_remote(url, fail_inputs=[])
        reset_remote(url)
        resumed = run_cli_watched(["index", "--root", str(root)], prefect_home)
        second = fetch_stats(url)
    assert_ok(resumed)
    assert assert_vectors_are_the_servers(root) > 0
    units = pq.read_table(root / "output" / "text_units.parquet").to_pandas()
    assert len(saved) == len(units) - 2
    embedded_again = [s for e in second["log"] if e["endpoint"] == "embeddings" and e["completed"]
                      for s in e["input_sha256s"]]
    assert failed_inputs <= set(embedded_again)
    unit_shas = {hashlib.sha256(t.encode()).hexdigest() for t in units["text"]}
    assert set(embedded_again) & unit_shas == failed_inputs, "the re-run re-embedded finished text units"


# --------------------------------------------------------------------------- 401 / 404 stop at once


@pytest.mark.parametrize("command", ["index", "check"])
def test_wrong_key_or_model_stops_in_seconds_naming_the_setting(command, tmp_path, peps_mini, prefect_home):
    corpus = corpus_copy(peps_mini, tmp_path / "corpus", SUBSET[:1])
    with fake_server(api_key="sk-the-right-key") as url:
        cases = {
            "wrong key": (llm_section(url), "API key rejected by " + url + "; set llm.api_key, llm.api_key_secret or OPENAI_API_KEY"),
            "wrong model": (llm_section(url, api_key="sk-the-right-key", chat_model="gpt-does-not-exist"),
                            "model 'gpt-does-not-exist' (setting llm.chat_model) is not served by " + url),
            "wrong URL": (llm_section(url.removesuffix("/v1"), api_key="sk-the-right-key"),
                          "answered 404 to GET /models: check the setting llm.api_base"),
        }
        for case, (llm, expected) in cases.items():
            root = make_project(tmp_path / case.replace(" ", "-"), input_dir=corpus, llm=llm)
            run = run_cli_watched([command, "--root", str(root)], prefect_home, timeout=60)
            assert run.returncode != 0, (case, run.stdout)
            assert expected in run.output, (case, run.output)
            assert run.wall_s < 5.0, f"{command} with a {case} took {run.wall_s:.1f}s"
            assert KEY not in run.output and "sk-the-right-key" not in run.output
            assert "Traceback" not in run.output
            assert not (root / "output" / "_manifest.json").exists()
        stats = fetch_stats(url)
    assert stats["requests"].get("chat", 0) == stats["requests"].get("embeddings", 0) == 0  # stopped before real work


# --------------------------------------------------------------------------- the serving loop stays responsive

HEARTBEAT_RUNNER = r'''
import asyncio, json, sys, threading, time, traceback
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.testing.utilities import prefect_test_harness
from flows.index import index

INTERVAL = 0.01
last_beat = [time.monotonic()]
stalls = []  # (wall time, stale seconds, the loop thread's stack): what held the loop


def watchdog(loop_thread: int, stop: threading.Event) -> None:
    while not stop.wait(0.01):
        stale = time.monotonic() - last_beat[0]
        frame = sys._current_frames().get(loop_thread)
        if stale > 0.05 and frame is not None:
            stalls.append((time.time(), stale, "".join(traceback.format_stack(frame)[-8:])))
            stop.wait(0.04)


async def main(root):
    beats = []  # (wall time at the start of the sleep, lag beyond INTERVAL)
    llm_tasks = set()
    done = asyncio.Event()

    async def heartbeat():
        while not done.is_set():
            t0, m0 = time.time(), time.monotonic()
            await asyncio.sleep(INTERVAL)
            last_beat[0] = time.monotonic()
            beats.append((t0, last_beat[0] - m0 - INTERVAL))
            for t in asyncio.all_tasks():  # the LLM requests run on this very loop
                name = getattr(t.get_coro(), "__qualname__", "")
                # (summarize_descriptions runs its items in for_each_bounded's workers)
                if name.startswith(("_embed_rows", "run_extraction", "for_each_bounded", "build_reports")):
                    llm_tasks.add(name.split(".")[0])

    stop = threading.Event()
    threading.Thread(target=watchdog, args=(threading.get_ident(), stop), daemon=True).start()
    beat = asyncio.create_task(heartbeat())
    await asyncio.sleep(0.05)
    try:
        summary = await index(root=root)
    finally:
        done.set()
        await beat
        stop.set()
    run_id = json.loads(open(root + "/output/_manifest.json").read())["run_id"]
    async with get_client() as client:
        for _ in range(60):  # task runs arrive as events: wait for every one to be final
            runs = await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])))
            if runs and all(r.end_time is not None for r in runs):
                break
            await asyncio.sleep(0.5)
    windows = {r.name: [r.start_time.timestamp(), r.end_time.timestamp()] for r in runs if r.start_time and r.end_time}
    print("HEARTBEAT " + json.dumps({"beats": beats, "windows": windows, "llm_tasks": sorted(llm_tasks),
                                     "stalls": stalls, "tables": summary["tables"]}))

with prefect_test_harness(server_startup_timeout=120):
    asyncio.run(main(sys.argv[1]))
'''


def test_serving_loop_never_lags_while_graph_leiden_and_writing_run(tmp_path, peps_mini, prefect_home):
    with fake_server(latency_s=0.05, capacity=64) as url:
        root = make_project(tmp_path / "project", input_dir=peps_mini, llm=llm_section(url))
        proc = subprocess.run([sys.executable, "-c", HEARTBEAT_RUNNER, str(root)], cwd=REPO,
                              env=cli_env(prefect_home), capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    line = next(l for l in proc.stdout.splitlines() if l.startswith("HEARTBEAT "))
    result = json.loads(line[len("HEARTBEAT "):])
    assert result["tables"]["entities"] > 100
    # LLM work shared the heartbeat's loop (so a stall there would stall requests too).
    assert {"_embed_rows", "run_extraction", "for_each_bounded", "build_reports"} <= set(result["llm_tasks"])
    beats, windows = result["beats"], result["windows"]
    for prefix in ("summarize", "communities", "write"):
        name = next((n for n in windows if n.startswith(prefix)), None)
        assert name, f"no task run {prefix}: {sorted(windows)}"
        start, end = windows[name]
        during = [lag for t, lag in beats if start <= t <= end]
        assert during, f"no heartbeat during {name}"
        worst = max(during)
        held = [stack for t, stale, stack in result["stalls"] if start <= t <= end + 1]
        assert worst < 0.100, f"the loop stalled {worst * 1000:.0f} ms during {name}; loop stacks:\n" + "\n".join(held[-3:])
