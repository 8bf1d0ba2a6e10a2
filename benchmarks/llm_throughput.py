"""LLM throughput of the openai provider: peps-mini against the fake server; prints JSON.

Starts tests/fake_openai.py as a subprocess (latency 200 ms per request, capacity 64
requests at once), then indexes tests/corpora/peps-mini from scratch once per
`llm.max_concurrency` in 8, 16, 32, 64, plus one fault run (10% disconnects, 5% 429 with
Retry-After 1 s, 1% 500, 2% hangs; request_timeout_s 5) at concurrency 16. Each run is a
fresh process calling the `index` flow (like benchmarks/offline_index.py), so Prefect's
temporary server start-up is in `startup_seconds`, not in the LLM window.

Per run it prints one JSON object:

- `requests`: per stage, attempts put on the wire (the run summary's counters; a retry counts
  again), and `first_attempts` (requests minus retries: the work itself);
- `llm_window_seconds`: on the server's clock, first chat/embedding request received to last
  response written (the preflight's GET /models is left out);
- `ideal_seconds`: the time the same work needs at this concurrency if every request took
  exactly the latency and the limit were never idle. Per stage ceil(first_attempts / c) x
  latency, with stages that run at the same time counted once. The flow runs three phases
  one after the other (flows/index.py):
    A. extract  |  embed-text_unit_text                 (side by side)
    B. summarize
    C. reports -> embed-community_full_content  |  embed-entity_description
  Stages side by side share the one limit, so a phase needs ceil(sum of its requests / c)
  rounds, but never fewer than its longest chain of dependent stages (reports must finish
  before their embeddings start): phase C = max(ceil((r + e_c + e_e) / c),
  ceil(r / c) + ceil(e_c / c), ceil(e_e / c)). Ideal = (A + B + C) rounds x latency.
  `ideal_reports_by_level_seconds` is the same with the reports stage counted per community
  level (a level's reports wait for the level below), a tighter bound the formula ignores;
- `ratio` = llm_window / ideal (goal <= 1.2; fault run <= 2), and `ratio_vs_level_bound`;
- `idle_seconds`: time inside the window with no request in flight (gaps between stages),
  and `schema_windows`: per chat schema, first request to last response;
- `faults`: injected, per kind (server side); `retries` per reason (client side).

The TPM-bound case (`--tpm N`, after the others; `--tpm-only` runs it alone): the server enforces
N tokens per sliding minute (counting a chat answer as `TPM_COMPLETION_TOKENS`, as a request
without max_tokens) and the run sets `llm.tokens_per_minute: N` (and
`llm.expected_completion_tokens` to the same allowance), at concurrency 16. Its JSON adds
`tokens_counted` (what the server counted in), `rate_limit_429s`, `tpm_achieved` = the tokens
beyond the first minute's budget per minute of the LLM window, `fraction_of_limit` =
tpm_achieved / N (goal >= 0.9, with 0 429s; the pacing ideal is (tokens_counted - N) / N
minutes) and the run's waits per budget (`rate_budget`, from the run summary). That ideal is a
fluid bound; a sliding minute admits at most N in any minute, so no schedule admits the last
token before `sliding_bound_seconds` = 60 x (ceil(tokens_counted / N) - 1), and
`ratio_to_sliding_bound` = llm_window / that (1.0 is perfect pacing; when tokens_counted / N is
just above a whole number, the fluid ideal is far below what any client can reach), and
`best_possible_fraction` = the fraction_of_limit of a run that ends exactly at that bound. So the
goal needs a run that is TPM-bound for many minutes, as the nights the budget is for are: the
default N, 60,000, makes peps-mini's ~630,000 counted tokens a ~10-minute run (best possible
0.95); at 250,000 the best possible is 0.76, whatever the client does.

    .venv/bin/python benchmarks/llm_throughput.py [--corpus DIR] [--concurrency 8 16 32 64]
        [--fault-concurrency 16] [--no-fault-run] [--tpm 60000] [--tpm-only]

With BENCH_DUMP_LOG=DIR set, each run also writes the fake server's request log (DIR/<run>.json:
t_start/t_end/schema per request, to plot requests in flight over time) and the run's stderr.

On a busy machine the client's own CPU time (JSON, pydantic, tiktoken, pandas between
stages) stretches the window: say how loaded the machine was next to the figures.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from corpus import PEPS_MINI  # noqa: E402  (benchmarks/corpus.py)
from tests.fake_openai import (  # noqa: E402  (the repo root must be on sys.path first)
    configure_remote,
    fetch_stats,
    reset_remote,
    start_fake_server_process,
    stop_fake_server_process,
)

DEFAULT_CORPUS = PEPS_MINI
LATENCY_S = 0.2
CAPACITY = 64
FAULTS = {"p_disconnect": 0.10, "p_429": 0.05, "p_500": 0.01, "p_hang": 0.02, "retry_after_s": 1.0}
NO_FAULTS = {"p_disconnect": 0.0, "p_429": 0.0, "p_500": 0.0, "p_hang": 0.0, "retry_after_s": None}
SCHEMA_STAGE = {"graph_extraction": "extract", "entity_summary": "summarize", "community_report": "reports"}
#: What the TPM-bound case's server counts a chat answer for, and its client expects.
TPM_COMPLETION_TOKENS = 512

RUNNER = r"""
import asyncio, json, sys
import pyarrow.parquet as pq
from flows.index import index
summary = asyncio.run(index(root=sys.argv[1]))
levels = pq.read_table(sys.argv[1] + "/output/community_reports.parquet", columns=["level"]).column("level").to_pylist()
print("SUMMARY " + json.dumps({"stages": summary["stages"], "tables": summary["tables"],
                              "max_in_flight": summary.get("max_in_flight"), "report_levels": levels,
                              "rate_budget": summary.get("rate_budget")}))
"""


def rounds(n: int, c: int) -> int:
    return math.ceil(n / c) if n > 0 else 0


def ideal_rounds(first: dict[str, int], c: int, report_levels: list[int] | None = None) -> int:
    """Rounds of `c` requests the flow's phases need at the least (see the module docstring)."""
    get = lambda stage: first.get(stage, 0)  # noqa: E731
    phase_a = rounds(get("extract") + get("embed-text_unit_text"), c)
    phase_b = rounds(get("summarize"), c)
    r, e_c, e_e = get("reports"), get("embed-community_full_content"), get("embed-entity_description")
    if report_levels:
        counts: dict[int, int] = {}
        for level in report_levels:
            counts[level] = counts.get(level, 0) + 1
        r_rounds = sum(rounds(n, c) for n in counts.values())
    else:
        r_rounds = rounds(r, c)
    phase_c = max(rounds(r + e_c + e_e, c), r_rounds + rounds(e_c, c), rounds(e_e, c))
    return phase_a + phase_b + phase_c


def idle_seconds(entries: list[dict]) -> float:
    """Time between the first request and the last response with nothing in flight."""
    spans = sorted((e["t_start"], e["t_end"]) for e in entries if e["t_end"] is not None)
    idle, reach = 0.0, spans[0][1]
    for start, end in spans[1:]:
        if start > reach:
            idle += start - reach
        reach = max(reach, end)
    return idle


def run_once(corpus: Path, url: str, concurrency: int, faults: bool, workdir: Path, tpm: int | None = None) -> dict:
    root = workdir / f"c{concurrency}{'-faults' if faults else ''}{f'-tpm{tpm}' if tpm else ''}"
    root.mkdir(parents=True)
    llm = {"provider": "openai", "api_base": url, "api_key": "sk-bench", "max_concurrency": concurrency,
           "request_timeout_s": 5.0 if faults else 30.0, "max_retries": 8}
    if tpm:
        llm |= {"tokens_per_minute": tpm, "expected_completion_tokens": TPM_COMPLETION_TOKENS}
    (root / "settings.yaml").write_text(yaml.safe_dump({"input": {"dir": str(corpus)}, "llm": llm}))
    reset_remote(url)
    configure_remote(url, **(FAULTS if faults else NO_FAULTS), tpm=tpm, rate_window_s=60.0,
                     rate_completion_tokens=TPM_COMPLETION_TOKENS)
    env = dict(os.environ, PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_LOGGING_LEVEL="WARNING",
               PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="120")
    started = time.monotonic()  # CLOCK_MONOTONIC: the same clock as the fake server's on one host
    # Its own session: if the benchmark is stopped, the run and its Prefect server go with it.
    child = subprocess.Popen([sys.executable, "-c", RUNNER, str(root)], cwd=REPO, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = child.communicate()
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
    proc = subprocess.CompletedProcess(child.args, child.returncode, out, err)
    wall = time.monotonic() - started
    stats = fetch_stats(url)
    if os.environ.get("BENCH_DUMP_LOG"):  # the server's request log, to study one run's timeline
        Path(os.environ["BENCH_DUMP_LOG"], f"{root.name}.json").write_text(json.dumps(stats["log"]))
        Path(os.environ["BENCH_DUMP_LOG"], f"{root.name}.stderr").write_text(err)
    if proc.returncode != 0:
        return {"concurrency": concurrency, "faults": faults, "completed": False, "wall_seconds": round(wall, 1),
                "error": (proc.stdout[-1500:] + proc.stderr[-3000:])}
    summary = json.loads(next(l for l in proc.stdout.splitlines() if l.startswith("SUMMARY "))[8:])
    api = [e for e in stats["log"] if e["endpoint"] in ("chat", "embeddings")]
    first_t = min(e["t_start"] for e in api)
    last_t = max(e["t_end"] for e in api if e["completed"])
    window = last_t - first_t
    requests = {r["stage"]: r["requests"] for r in summary["stages"] if r["requests"]}
    first = {r["stage"]: r["requests"] - r["retries"] for r in summary["stages"] if r["requests"]}
    ideal = ideal_rounds(first, concurrency) * LATENCY_S
    ideal_levels = ideal_rounds(first, concurrency, summary["report_levels"]) * LATENCY_S
    schema_windows = {}
    for schema, stage in SCHEMA_STAGE.items():
        mine = [e for e in api if e["schema"] == schema and e["t_end"] is not None]
        if mine:
            schema_windows[stage] = [round(min(e["t_start"] for e in mine) - first_t, 2),
                                     round(max(e["t_end"] for e in mine) - first_t, 2)]
    if tpm:
        counted = sum(e.get("rate_tokens") or 0 for e in api if e["status"] == 200)
        achieved = (counted - tpm) / (window / 60)
        return {"case": "tpm_bound", "concurrency": concurrency, "completed": True, "tokens_per_minute": tpm,
                "tokens_counted": counted, "requests": requests,
                "rate_limit_429s": stats["rate_limit"]["rejected"], "retries": {
                    r["stage"]: r["retries"] for r in summary["stages"] if r["retries"]},
                "llm_window_seconds": round(window, 2), "ideal_seconds": round((counted - tpm) / tpm * 60, 2),
                "tpm_achieved": round(achieved), "fraction_of_limit": round(achieved / tpm, 3),
                "sliding_bound_seconds": (math.ceil(counted / tpm) - 1) * 60,
                "ratio_to_sliding_bound": round(window / max(1, (math.ceil(counted / tpm) - 1) * 60), 3),
                "best_possible_fraction": round((counted - tpm) / max(1, math.ceil(counted / tpm) - 1) / tpm, 3),
                "max_window_tokens_counted": stats["rate_limit"]["max_window_tokens_counted"],
                "rate_budget": summary.get("rate_budget"), "startup_seconds": round(first_t - started, 1),
                "wall_seconds": round(wall, 1), "goal_fraction": 0.9}
    return {
        "concurrency": concurrency,
        "faults": FAULTS if faults else None,
        "completed": True,
        "requests": requests,
        "first_attempts": first,
        "server_requests": {k: v for k, v in stats["requests"].items() if k != "models"},
        "retries": {r["stage"]: r["retries"] for r in summary["stages"] if r["retries"]},
        "injected_faults": stats["faults"],
        "max_in_flight_server": stats["max_in_flight"],
        "llm_window_seconds": round(window, 2),
        "ideal_seconds": round(ideal, 2),
        "ratio": round(window / ideal, 2),
        "ideal_reports_by_level_seconds": round(ideal_levels, 2),
        "ratio_vs_level_bound": round(window / ideal_levels, 2),
        "idle_seconds": round(idle_seconds(api), 2),
        "schema_windows": schema_windows,
        "stage_seconds": {r["stage"]: r["seconds"] for r in summary["stages"]},
        "startup_seconds": round(first_t - started, 1),
        "wall_seconds": round(wall, 1),
        "goal_ratio": 2.0 if faults else 1.2,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[8, 16, 32, 64])
    parser.add_argument("--fault-concurrency", type=int, default=16)
    parser.add_argument("--no-fault-run", action="store_true")
    parser.add_argument("--tpm", type=int, default=60_000,
                        help="the TPM-bound case's limit (0: no such run; the default makes a ~10-minute run)")
    parser.add_argument("--tpm-only", action="store_true", help="run only the TPM-bound case")
    args = parser.parse_args()
    proc, url = start_fake_server_process(latency_s=LATENCY_S, capacity=CAPACITY, seed=7)
    workdir = Path(tempfile.mkdtemp(prefix="graphrag-flow-llm-bench-"))
    try:
        plan = [] if args.tpm_only else [(c, False, None) for c in args.concurrency]
        if not args.no_fault_run and not args.tpm_only:
            plan.append((args.fault_concurrency, True, None))
        if args.tpm:
            plan.append((16, False, args.tpm))
        for concurrency, faults, tpm in plan:
            result = run_once(args.corpus.resolve(), url, concurrency, faults, workdir, tpm)
            result["load_average_1m"] = round(os.getloadavg()[0], 1)
            print(json.dumps(result), flush=True)
    finally:
        stop_fake_server_process(proc)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
