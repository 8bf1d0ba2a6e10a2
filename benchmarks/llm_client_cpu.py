"""The LLM client's event-loop CPU per request, against the fake server; prints JSON.

The client's hot path runs on the event loop that serves every request of a run: each
microsecond it spends per request is a microsecond no other request is served. This measures
it directly, apart from the flow: `--requests` calls of one kind (embeddings of one short text,
or structured chat answers) at `--concurrency` in flight, against tests/fake_openai.py in its
own process (its CPU is not counted), with the loop's thread CPU (`time.thread_time`) divided
by the attempts put on the wire. Scenarios:

- `clean`: every attempt answers 200;
- `retried`: `--p-500` of the attempts answer 500 and are retried (backoff 1-2 ms, so the run
  measures the retry path's CPU, not its sleeps).

Each scenario runs `--rounds` times after one warm-up round; the JSON gives every round's
figure and their median. Latency is the fake server's `--latency-s` (hedging acts once 20
answers are in, as in a run). Compare two versions of the code by running this script from
each checkout back to back (`git worktree add /tmp/old <rev>`).

    .venv/bin/python benchmarks/llm_client_cpu.py [--requests 2000] [--concurrency 64]
        [--kind embeddings|chat|both] [--rounds 5] [--p-500 0.2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from graphrag_flow.config import LLMSettings  # noqa: E402  (the repo root must be on sys.path first)
from graphrag_flow.llm.client import OpenAICompatibleClient  # noqa: E402
from graphrag_flow.llm.limiter import RequestLimiter  # noqa: E402
from graphrag_flow.llm.stats import LLMStats  # noqa: E402
from tests.fake_openai import (  # noqa: E402
    configure_remote,
    start_fake_server_process,
    stop_fake_server_process,
)

TEXT = "Guido van Rossum wrote PEP {i} about Python number {j}."


async def one_round(url: str, kind: str, requests: int, concurrency: int) -> dict:
    settings = LLMSettings(provider="openai", api_base=url, max_concurrency=concurrency, request_timeout_s=10.0,
                           max_retries=20)
    stats = LLMStats()
    client = OpenAICompatibleClient(settings, "sk-bench", RequestLimiter(concurrency), stats, None,
                                    backoff_base_s=0.001, backoff_max_s=0.002)
    async with client:
        gate = asyncio.Semaphore(2 * concurrency)  # like a stage: items in progress, not all at once

        async def call(i: int) -> None:
            async with gate:
                text = TEXT.format(i=i, j=i * 7)
                if kind == "embeddings":
                    await client.embed("bench", [text], f"text {i}")
                else:
                    messages = [{"role": "system", "content": "Merge the descriptions."},
                                {"role": "user", "content": text}]
                    await client.chat("bench", "entity_summary", messages, f"entity {i}")

        wall = time.perf_counter()
        cpu = time.thread_time()
        await asyncio.gather(*(call(i) for i in range(requests)))
        cpu = time.thread_time() - cpu
        wall = time.perf_counter() - wall
    row = stats.get("bench")
    return {"attempts": row.requests, "retries": row.retries, "cpu_s": round(cpu, 4), "wall_s": round(wall, 3),
            "cpu_us_per_attempt": round(1e6 * cpu / row.requests, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--kind", choices=("embeddings", "chat", "both"), default="both")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--p-500", type=float, default=0.2)
    parser.add_argument("--latency-s", type=float, default=0.02)
    args = parser.parse_args()
    kinds = ("embeddings", "chat") if args.kind == "both" else (args.kind,)
    proc, url = start_fake_server_process(latency_s=args.latency_s, capacity=args.concurrency)
    results = []
    try:
        for scenario, p_500 in (("clean", 0.0), ("retried", args.p_500)):
            configure_remote(url, p_500=p_500, seed=1)
            for kind in kinds:
                asyncio.run(one_round(url, kind, min(args.requests, 200), args.concurrency))  # warm-up
                rounds = [asyncio.run(one_round(url, kind, args.requests, args.concurrency))
                          for _ in range(args.rounds)]
                per = [r["cpu_us_per_attempt"] for r in rounds]
                results.append({"scenario": scenario, "kind": kind, "p_500": p_500,
                                "median_cpu_us_per_attempt": statistics.median(per), "rounds": rounds})
    finally:
        stop_fake_server_process(proc)
    print(json.dumps({"requests": args.requests, "concurrency": args.concurrency, "latency_s": args.latency_s,
                      "load_average": os.getloadavg(), "results": results}, indent=1))


if __name__ == "__main__":
    main()
