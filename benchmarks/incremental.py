"""Incremental nightly indexing: what one or ten changed documents cost next to a full index.

Indexes the 688-PEP corpus (benchmarks/corpora/peps.tar.gz) from scratch, then changes 1 document (one line in
its middle gets a few words appended) and indexes again, then changes 10 others and indexes
again. Each run is a separate process, as a nightly run would be. Prints JSON: per run the
wall seconds, the documents delta the run reported, per stage items reused vs recomputed,
and the requests that reached the API (fake server: chat + embeddings, from its /stats) or,
offline, the model calls (text units extracted, rows embedded, reports written).

Goal: one changed document costs <= 5% of the full run's requests.

    .venv/bin/python benchmarks/incremental.py --provider fake      # fake OpenAI server, latency 0
    .venv/bin/python benchmarks/incremental.py --provider offline   # offline provider (many minutes)
    .venv/bin/python benchmarks/incremental.py --provider both --corpus DIR --keep DIR
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import corpus  # noqa: E402  (benchmarks/corpus.py: this script's folder is on sys.path)
from tests.processes import kill_group, run_flow_subprocess, start_prefect_server  # noqa: E402
from tests.fake_openai import fetch_stats, reset_remote, start_fake_server_process, stop_fake_server_process  # noqa: E402

RUNNER = r"""
import asyncio, json, sys
from flows.index import index
summary = asyncio.run(index(root=sys.argv[1]))
print("SUMMARY " + json.dumps({"stages": summary["stages"], "tables": summary["tables"],
                              "changes": summary.get("changes")}))
"""
LLM_STAGES = ("extract", "summarize", "reports")


def change_document(path: Path, tag: str) -> None:
    """Append a few words to the line in the middle of the file, keeping its mtime."""
    stat = path.stat()
    path.chmod(0o644)
    lines = path.read_text(encoding="utf-8").split("\n")
    middle = len(lines) // 2
    lines[middle] = lines[middle] + f" (revised in {tag})"
    path.write_text("\n".join(lines), encoding="utf-8")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


@contextmanager
def prefect_server(home: Path, port: int = 4297) -> Iterator[str]:
    """One Prefect server for all runs, as a nightly deployment has: the runs' seconds then
    measure indexing, not a temporary server's start (13-27 s on a busy machine)."""
    home.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    log = open(home / "server.log", "wb")
    try:
        proc, api = start_prefect_server(env, port, timeout_s=180, log=log)
    except RuntimeError as exc:
        raise SystemExit(f"{exc}; see {home / 'server.log'}") from None
    try:
        yield api
    finally:
        kill_group(proc)
        log.close()


def index_once(root: Path, base_url: str | None) -> dict:
    if base_url:
        reset_remote(base_url)
    summary, wall = run_flow_subprocess(RUNNER, root)
    rows = {r["stage"]: r for r in summary["stages"]}
    result = {
        "seconds": round(wall, 1),
        "documents": (summary.get("changes") or {}).get("documents"),
        "communities": (summary.get("changes") or {}).get("communities"),
        "stages": {
            s: {"items": r["items"], "reused": r["reused"], "recomputed": r["recomputed"], "seconds": r["seconds"]}
            for s, r in rows.items()
        },
        "model_calls": sum(rows[s]["recomputed"] for s in LLM_STAGES if s in rows)
        + sum(r["recomputed"] for s, r in rows.items() if s.startswith("embed-")),
        "rows_embedded": sum(r["recomputed"] for s, r in rows.items() if s.startswith("embed-")),
    }
    if base_url:
        stats = fetch_stats(base_url, with_log=False)
        result["requests"] = stats["requests"].get("chat", 0) + stats["requests"].get("embeddings", 0)
        result["requests_by_schema"] = stats.get("chat_schemas", {})
        result["embedding_inputs"] = stats.get("embedding_inputs", 0)
    return result


def run_variant(provider: str, corpus: Path, work: Path) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    input_dir = work / "input"
    shutil.copytree(corpus, input_dir, copy_function=shutil.copy2)  # copy2: mtimes (creation_date) kept
    input_dir.chmod(0o755)  # the shared corpus is read-only
    proc = base_url = None
    settings: dict = {"input": {"dir": str(input_dir)}}
    if provider == "fake":
        proc, base_url = start_fake_server_process(latency_s=0.0)
        settings["llm"] = {"provider": "openai", "api_base": base_url, "api_key": "bench", "max_concurrency": 16}
    (work / "settings.yaml").write_text(yaml.safe_dump(settings), encoding="utf-8")
    files = sorted(p for p in input_dir.rglob("*") if p.is_file())
    try:
        runs = {"full": index_once(work, base_url)}
        change_document(files[len(files) // 2], "benchmark step 1")
        runs["changed_1"] = index_once(work, base_url)
        for k in range(10):
            change_document(files[(k * 61 + 7) % len(files)], "benchmark step 2")
        runs["changed_10"] = index_once(work, base_url)
    finally:
        if proc is not None:
            stop_fake_server_process(proc)
    key = "requests" if provider == "fake" else "model_calls"
    full = max(1, runs["full"][key])
    return {
        "provider": provider,
        "measure": key,
        "runs": runs,
        "ratio_changed_1": round(runs["changed_1"][key] / full, 4),
        "ratio_changed_10": round(runs["changed_10"][key] / full, 4),
        "seconds_ratio_changed_1": round(runs["changed_1"]["seconds"] / max(0.1, runs["full"]["seconds"]), 3),
        "goal_changed_1_max_ratio": 0.05,
        "within_goal": runs["changed_1"][key] / full <= 0.05,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--provider", choices=("fake", "offline", "both"), default="fake")
    parser.add_argument("--corpus", type=Path, default=None, help="default: the 688 PEPs, unpacked on first use")
    parser.add_argument("--keep", type=Path, help="folder for the projects, kept (default: a temp dir)")
    args = parser.parse_args()
    args.corpus = args.corpus or corpus.peps()
    if not args.corpus.is_dir():
        raise SystemExit(f"corpus {args.corpus} is missing")
    base = args.keep or Path(tempfile.mkdtemp(prefix="graphrag-flow-incremental-"))
    providers = ("fake", "offline") if args.provider == "both" else (args.provider,)
    results = {"corpus": str(args.corpus), "variants": []}
    try:
        with prefect_server(base / "prefect-home") as api:
            os.environ["PREFECT_API_URL"] = api
            for provider in providers:
                results["variants"].append(run_variant(provider, args.corpus, base / provider))
                print(json.dumps(results["variants"][-1]), file=sys.stderr, flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
