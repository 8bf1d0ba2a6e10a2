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

Each scenario runs `--rounds` times after a warm-up round; the JSON gives every round's figure
and their median. Latency is the fake server's `--latency-s` (hedging acts once 20 answers
are in, as in a run).

`--against REV` compares this tree's client with the one at git revision REV in the same
process: REV's `graphrag_flow` is copied out and renamed, and the two take turns round by
round (ABBA), so the load of a shared machine, which moves the figures of separate runs by
±10-20%, falls on both alike. The JSON then has both medians and the paired differences.

    .venv/bin/python benchmarks/llm_client_cpu.py [--requests 2000] [--concurrency 64]
        [--kind embeddings|chat|both] [--rounds 5] [--p-500 0.2] [--against REV]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import io
import json
import os
import re
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.fake_openai import (  # noqa: E402  (the repo root must be on sys.path first)
    configure_remote,
    start_fake_server_process,
    stop_fake_server_process,
)

TEXT = "Guido van Rossum wrote PEP {i} about Python number {j}."


def client_api(package: str) -> SimpleNamespace:
    """The classes a round needs, from `package` (graphrag_flow, or a renamed old copy)."""
    return SimpleNamespace(
        LLMSettings=importlib.import_module(f"{package}.config").LLMSettings,
        Client=importlib.import_module(f"{package}.llm.client").OpenAICompatibleClient,
        RequestLimiter=importlib.import_module(f"{package}.llm.limiter").RequestLimiter,
        LLMStats=importlib.import_module(f"{package}.llm.stats").LLMStats,
    )


def copy_of_revision(rev: str, into: Path) -> str:
    """graphrag_flow at `rev`, as the package `graphrag_flow_<rev>` under `into` (on sys.path)."""
    name = "graphrag_flow_" + re.sub(r"\W", "_", rev)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", rev, "graphrag_flow"],
                             capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    (into / "graphrag_flow").rename(into / name)
    for path in (into / name).rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        path.write_text(re.sub(r"\bgraphrag_flow\b(?=[.\s])", name, text), encoding="utf-8")
    sys.path.insert(0, str(into))
    return name


async def one_round(api: SimpleNamespace, url: str, kind: str, requests: int, concurrency: int) -> dict:
    settings = api.LLMSettings(provider="openai", api_base=url, max_concurrency=concurrency, request_timeout_s=10.0,
                               max_retries=20)
    stats = api.LLMStats()
    client = api.Client(settings, "sk-bench", api.RequestLimiter(concurrency), stats, None,
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
    parser.add_argument("--against", metavar="REV", help="git revision to compare with, round by round")
    args = parser.parse_args()
    kinds = ("embeddings", "chat") if args.kind == "both" else (args.kind,)
    sides = {"this tree": client_api("graphrag_flow")}
    with tempfile.TemporaryDirectory(prefix="llm-client-cpu-") as tmp:
        if args.against:
            sides[args.against] = client_api(copy_of_revision(args.against, Path(tmp)))
        proc, url = start_fake_server_process(latency_s=args.latency_s, capacity=args.concurrency)
        results = []
        try:
            for scenario, p_500 in (("clean", 0.0), ("retried", args.p_500)):
                configure_remote(url, p_500=p_500, seed=1)
                for kind in kinds:
                    for api in sides.values():  # warm-up
                        asyncio.run(one_round(api, url, kind, min(args.requests, 200), args.concurrency))
                    rounds: dict[str, list[dict]] = {side: [] for side in sides}
                    for n in range(args.rounds):
                        order = list(sides) if n % 2 == 0 else list(reversed(sides))
                        for side in order:
                            rounds[side].append(asyncio.run(one_round(sides[side], url, kind, args.requests,
                                                                      args.concurrency)))
                    per = {side: [r["cpu_us_per_attempt"] for r in rs] for side, rs in rounds.items()}
                    row = {"scenario": scenario, "kind": kind, "p_500": p_500,
                           "median_cpu_us_per_attempt": {side: statistics.median(v) for side, v in per.items()}}
                    if args.against:
                        diffs = [new - old for new, old in zip(per["this tree"], per[args.against])]
                        row["paired_difference_us"] = {"median": round(statistics.median(diffs), 1),
                                                       "mean": round(statistics.mean(diffs), 1),
                                                       "stdev": round(statistics.stdev(diffs), 1) if len(diffs) > 1
                                                       else None}
                    row["rounds"] = rounds
                    results.append(row)
        finally:
            stop_fake_server_process(proc)
    print(json.dumps({"requests": args.requests, "concurrency": args.concurrency, "latency_s": args.latency_s,
                      "against": args.against, "load_average": os.getloadavg(), "results": results}, indent=1))


if __name__ == "__main__":
    main()
