"""Resume after kill -9: index peps-mini against the fake OpenAI server (100 ms per request), kill
the CLI's process group at 25 %, 50 % and 75 % of the clean run's embedding requests, run it
again, and print JSON: requests of a clean run, requests each resume repeated (embedding batches
and chat answers that had arrived before the kill), and whether the outputs matched the clean run's.

Goal: repeated embedding batches <= llm.max_concurrency, repeated chat requests = 0.

    .venv/bin/python benchmarks/resume.py [--corpus DIR] [--latency 0.1] [--max-concurrency 16]

One Prefect server is started for all runs (PREFECT_API_URL), so a run's time is its own.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from graphrag_flow.storage.vectors import VectorTable  # noqa: E402
from graphrag_flow.tables import SCHEMAS, VECTOR_FIELDS  # noqa: E402
from corpus import PEPS_MINI  # noqa: E402  (benchmarks/corpus.py)
from tests.processes import free_port, kill_group, start_prefect_server  # noqa: E402
from tests.fake_openai import (  # noqa: E402
    fetch_stats, reset_remote, start_fake_server_process, stop_fake_server_process,
)

DEFAULT_CORPUS = PEPS_MINI
#: An answer had "arrived" when the server finished writing it this long before the kill (the
#: client still reads, validates and commits it); answers re-sent inside that window are counted
#: apart, with the age of the oldest one.
ARRIVAL_GRACE_S = 0.5


def _env(home: Path, api_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GRAPHRAG_FLOW_", "PREFECT_"))}
    env.update(PREFECT_HOME=str(home), PREFECT_API_URL=api_url, PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_LOGGING_LEVEL="WARNING", COLUMNS="200")
    return env


def _start_prefect(home: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = _env(home, f"http://127.0.0.1:{port}/api") | {"PREFECT_SERVER_API_PORT": str(port)}
    return start_prefect_server(env, port, timeout_s=180)


class Bench:
    def __init__(self, base_url: str, env: dict[str, str], corpus: Path, workdir: Path, max_concurrency: int):
        self.base_url, self.env, self.corpus, self.workdir = base_url, env, corpus, workdir
        self.max_concurrency = max_concurrency

    def project(self, name: str) -> Path:
        root = self.workdir / name
        root.mkdir(parents=True)
        settings = {"input": {"dir": str(self.corpus)},
                    "llm": {"provider": "openai", "api_base": self.base_url, "api_key": "sk-bench",
                            "max_concurrency": self.max_concurrency}}
        (root / "settings.yaml").write_text(yaml.safe_dump(settings))
        return root

    def _start(self, root: Path) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "graphrag_flow.cli", "index", "--root", str(root)], cwd=REPO,
                                env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)

    def run(self, root: Path) -> tuple[dict, float]:
        reset_remote(self.base_url)
        start = time.monotonic()
        proc = self._start(root)
        out, err = proc.communicate()
        kill_group(proc)
        if proc.returncode != 0:
            raise SystemExit(f"index of {root} failed ({proc.returncode}):\n{out[-2000:]}{err[-2000:]}")
        return fetch_stats(self.base_url), time.monotonic() - start

    def run_and_kill(self, root: Path, embeddings_done: int) -> tuple[dict, float]:
        reset_remote(self.base_url)
        proc = self._start(root)
        try:
            while True:
                stats = fetch_stats(self.base_url, with_log=False)
                if stats["ok"].get("embeddings", 0) >= embeddings_done:
                    os.killpg(proc.pid, signal.SIGKILL)
                    kill_t = stats["now_t"]
                    break
                if proc.poll() is not None:
                    raise SystemExit(f"the run finished before {embeddings_done} embedding requests")
                time.sleep(0.02)
        finally:
            kill_group(proc)
            proc.communicate()
        time.sleep(0.3)
        return fetch_stats(self.base_url), kill_t


def _entries(stats: dict, endpoint: str) -> list[dict]:
    return [e for e in stats["log"] if e["endpoint"] == endpoint]


def _batches(stats: dict) -> list[frozenset[str]]:
    return [frozenset(e["input_sha256s"]) for e in _entries(stats, "embeddings") if e["input_sha256s"]]


def _outputs(root: Path) -> tuple[dict, dict]:
    tables = {n: pq.read_table(root / "output" / f"{n}.parquet") for n in SCHEMAS}
    vectors = {f: VectorTable(root / "output" / "lancedb", f).read().sort_by("id") for f in VECTOR_FIELDS}
    return tables, vectors


def _same(a: tuple[dict, dict], b: tuple[dict, dict]) -> bool:
    tables_a, vectors_a = a
    tables_b, vectors_b = b
    for name in SCHEMAS:
        ids = tables_a[name].column("id").to_pylist()
        if len(ids) != len(set(ids)) or not tables_a[name].equals(tables_b[name]):
            return False
    for field in VECTOR_FIELDS:
        ids = vectors_a[field].column("id").to_pylist()
        if len(ids) != len(set(ids)):
            return False
        for col in ("id", "content_sha256", "model", "vector"):
            if not vectors_a[field].column(col).equals(vectors_b[field].column(col)):
                return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--latency", type=float, default=0.1, help="fake server seconds per request")
    parser.add_argument("--max-concurrency", type=int, default=16)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="resume-bench-"))
    corpus = workdir / "corpus"
    shutil.copytree(args.corpus, corpus, copy_function=shutil.copy2)
    fake, base_url = start_fake_server_process(latency_s=args.latency)
    prefect, api_url = _start_prefect(workdir / "prefect-home")
    try:
        bench = Bench(base_url, _env(workdir / "prefect-home", api_url), corpus, workdir, args.max_concurrency)
        clean_root = bench.project("clean")
        clean, clean_s = bench.run(clean_root)
        clean_out = _outputs(clean_root)
        n_embed = clean["ok"].get("embeddings", 0)
        result = {
            "corpus": str(args.corpus), "latency_s": args.latency, "max_concurrency": args.max_concurrency,
            "clean_run": {"seconds": round(clean_s, 1), "chat_requests": clean["requests"].get("chat", 0),
                          "embedding_requests": clean["requests"].get("embeddings", 0)},
            "resumes": [],
        }
        for fraction in (0.25, 0.5, 0.75):
            root = bench.project(f"kill-{int(fraction * 100)}")
            killed, kill_t = bench.run_and_kill(root, max(1, round(n_embed * fraction)))
            resumed, resume_s = bench.run(root)
            resent = set().union(*_batches(resumed)) if _batches(resumed) else set()
            repeated_batches = sum(1 for b in set(_batches(killed)) if b & resent)
            arrived = {e["body_sha256"] for e in _entries(killed, "chat")
                       if e["completed"] and e["status"] == 200 and e["t_end"] <= kill_t - ARRIVAL_GRACE_S}
            all_answered = {e["body_sha256"] for e in _entries(killed, "chat") if e["completed"] and e["status"] == 200}
            resumed_chat = {e["body_sha256"] for e in _entries(resumed, "chat")}
            answered_at = {e["body_sha256"]: e["t_end"] for e in _entries(killed, "chat")
                           if e["completed"] and e["status"] == 200}
            resent_ages = [kill_t - answered_at[b] for b in resumed_chat if b in answered_at]
            result["resumes"].append({
                "kill_at_embedding_fraction": fraction,
                "killed_run": {"chat_answered": len(all_answered),
                               "embedding_batches_sent": len(_batches(killed)),
                               "embedding_batches_answered": killed["ok"].get("embeddings", 0)},
                "resume": {"seconds": round(resume_s, 1), "chat_requests": resumed["requests"].get("chat", 0),
                           "embedding_requests": resumed["requests"].get("embeddings", 0)},
                "repeated_embedding_batches": repeated_batches,
                "repeated_chat_requests": len(arrived & resumed_chat),
                "repeated_chat_answered_within_grace": len((all_answered - arrived) & resumed_chat),
                "oldest_repeated_answer_age_s": round(max(resent_ages), 3) if resent_ages else None,
                "outputs_match_clean_run": _same(_outputs(root), clean_out),
            })
        result["goal_met"] = all(
            r["repeated_embedding_batches"] <= args.max_concurrency and r["repeated_chat_requests"] == 0
            and r["outputs_match_clean_run"] for r in result["resumes"]
        )
        print(json.dumps(result, indent=2))
    finally:
        kill_group(prefect)
        stop_fake_server_process(fake)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
