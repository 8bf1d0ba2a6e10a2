"""What a run costs, through the real CLI against the fake provider in its own process (its ledger
is the bill): usage in the manifest and the summary, `estimate`, and budgets (issue #21).

One project is indexed once for the module (peps-mini, prices set); the other tests reuse its
figures. Budget runs use projects of their own (their own answer caches)."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import make_project, run_cli, secret_leaks
from fake_openai import configure_remote, fetch_stats, reset_remote

from graphrag_flow.usage import tokens_of

KEY = "sk-test-COST-4f9a2b7c1d"
PRICES = {"prompt": 0.4, "completion": 1.6, "embedding": 0.02}
#: Completion-heavy prices: the estimate's floor is well below 40% of a run's cost at these.
BUDGET_PRICES = {"prompt": 0.1, "completion": 2.0, "embedding": 0.01}
#: The manifest's chat stages and the fake's schemas.
SCHEMA_OF = {"extract": "graph_extraction", "summarize": "entity_summary", "reports": "community_report"}
RUN_TIMEOUT_S = 600


@dataclass
class Indexed:
    root: Path
    estimate: dict
    estimate_requests: dict
    stdout: str
    manifest: dict
    billing: dict


def _project(tmp: Path, name: str, corpus: Path, fake: str, prices: dict = PRICES, files: int | None = None,
             **llm) -> Path:
    """A project on a copy of `corpus` (its first `files` files, sorted by name, when given)."""
    input_dir = tmp / f"{name}-input"
    shutil.copytree(corpus, input_dir, copy_function=shutil.copy2)
    for path in sorted(input_dir.iterdir())[files:] if files is not None else ():
        path.unlink()
    settings = {"provider": "openai", "api_base": fake, "api_key": KEY, "max_concurrency": 8,
                "price_per_million_tokens": prices} | llm
    return make_project(tmp / name, input_dir=input_dir, llm=settings)


def _cli(prefect_api, *args: str):
    home, api = prefect_api
    return run_cli(list(args), home, timeout=RUN_TIMEOUT_S, PREFECT_API_URL=api)


def _estimate(prefect_api, root: Path) -> dict:
    result = _cli(prefect_api, "estimate", "--root", str(root), "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


def _units(root: Path) -> int:
    return _manifest(root)["tables"]["text_units"]


def _manifest(root: Path) -> dict:
    return json.loads((root / "output" / "_manifest.json").read_text())


@pytest.fixture(scope="module")
def indexed(tmp_path_factory, peps_mini, fake, prefect_api) -> Indexed:
    root = _project(tmp_path_factory.mktemp("cost"), "p", peps_mini, fake)
    reset_remote(fake)
    estimate = _estimate(prefect_api, root)
    estimate_requests = fetch_stats(fake, with_log=False)["requests"]
    reset_remote(fake)
    run = _cli(prefect_api, "index", "--root", str(root))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    billing = fetch_stats(fake, with_log=False)["billing"]
    return Indexed(root, estimate, estimate_requests, run.stdout, _manifest(root), billing)


def test_the_manifest_usage_is_exactly_what_the_provider_billed_per_stage_and_in_total(indexed):
    usage, billing = indexed.manifest["usage"], indexed.billing
    # what arrived; a hedge's loser, cancelled, is in `billed_total` only (README, "Estimate and budget")
    billed = billing["billed_delivered"]
    assert usage["requests"] == billed["requests"]
    assert usage["prompt_tokens"] + usage["embedding_tokens"] == billed["prompt_tokens"]
    assert usage["completion_tokens"] == billed["completion_tokens"]
    for stage, schema in SCHEMA_OF.items():
        s, b = usage["stages"][stage], billing["by_schema"][schema]["billed_delivered"]
        assert (s["requests"], s["prompt_tokens"], s["completion_tokens"]) == (
            b["requests"], b["prompt_tokens"], b["completion_tokens"]), stage
    embeds = [s for name, s in usage["stages"].items() if name.startswith("embed-")]
    emb = billing["by_endpoint"]["embeddings"]["billed_delivered"]
    assert (sum(s["requests"] for s in embeds), sum(s["embedding_tokens"] for s in embeds)) == (
        emb["requests"], emb["prompt_tokens"])
    cost = (usage["prompt_tokens"] * 0.4 + usage["completion_tokens"] * 1.6 + usage["embedding_tokens"] * 0.02) / 1e6
    assert usage["cost_usd"] == pytest.approx(cost, abs=1e-6)
    # the CLI's table: tokens and cost per stage
    assert "tokens" in indexed.stdout and f"${usage['stages']['extract']['cost_usd']:.4f}" in indexed.stdout


def test_the_estimate_sends_nothing_is_exact_on_extraction_prompts_and_brackets_the_run(indexed):
    assert sum(indexed.estimate_requests.values()) == 0, indexed.estimate_requests
    extract = indexed.estimate["stages"]["extract"]
    billed = indexed.billing["by_schema"]["graph_extraction"]["billed_delivered"]
    assert extract["prompt_tokens"] == {"low": billed["prompt_tokens"], "high": billed["prompt_tokens"]}
    assert extract["requests"] == {"low": billed["requests"], "high": billed["requests"]}
    total = indexed.estimate["total"]["tokens"]
    actual = tokens_of(indexed.manifest["usage"])
    assert total["low"] <= actual <= total["high"], (total, actual)
    assert total["high"] / total["low"] <= 3, total
    cost = indexed.estimate["total"]["cost_usd"]
    assert cost["low"] <= indexed.manifest["usage"]["cost_usd"] <= cost["high"]


def test_an_unchanged_folder_estimates_zero_and_one_changed_document_only_its_work(indexed, prefect_api, fake):
    unchanged = _estimate(prefect_api, indexed.root)["total"]
    assert unchanged["requests"] == {"low": 0, "high": 0} and unchanged["tokens"] == {"low": 0, "high": 0}
    assert unchanged["cost_usd"] == {"low": 0.0, "high": 0.0}

    doc = indexed.root.parent / "p-input" / "pep-0020.rst"
    doc.write_text(doc.read_text() + "\n\nIf the implementation is easy to explain, it may be a good idea.\n")
    estimate = _estimate(prefect_api, indexed.root)
    reset_remote(fake)
    run = _cli(prefect_api, "index", "--root", str(indexed.root))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    billed = fetch_stats(fake, with_log=False)["billing"]["by_schema"]["graph_extraction"]["billed_delivered"]
    extract = estimate["stages"]["extract"]
    assert 0 < billed["requests"] <= 2  # PEP 20 is short: its last text unit changed
    assert extract["requests"]["low"] == extract["requests"]["high"] == billed["requests"]
    assert extract["prompt_tokens"]["low"] == billed["prompt_tokens"]
    usage = _manifest(indexed.root)["usage"]
    assert estimate["total"]["tokens"]["low"] <= tokens_of(usage) <= estimate["total"]["tokens"]["high"]


def test_a_budget_below_the_estimates_floor_sends_no_request(tmp_path, peps_mini, fake, prefect_api):
    root = _project(tmp_path, "b", peps_mini, fake)
    reset_remote(fake)
    run = _cli(prefect_api, "index", "--root", str(root), "--max-cost", "0.01")
    assert run.returncode != 0
    message = " ".join(run.stderr.split())
    assert "the run was not started" in message and "against the budget of $0.0100" in message, message
    assert "at least $0.0" in message and "no request was sent" in message
    assert sum(fetch_stats(fake, with_log=False)["requests"].values()) == 0
    assert not (root / "output").exists()


def _delivered_prompts(stats: dict) -> list[str]:
    """What was paid for, by content: each chat request's body, each embedding input."""
    out = []
    for e in stats["log"]:
        if e.get("delivered"):
            out += [e["body_sha256"]] if e["endpoint"] == "chat" else e["input_sha256s"]
    return out


def test_a_budget_at_40_percent_stops_the_run_near_it_and_the_rerun_pays_for_nothing_twice(
        tmp_path, peps_mini, fake, prefect_api, indexed):
    full = indexed.manifest["usage"]
    full_cost = (full["prompt_tokens"] * BUDGET_PRICES["prompt"] + full["completion_tokens"] * BUDGET_PRICES["completion"]
                 + full["embedding_tokens"] * BUDGET_PRICES["embedding"]) / 1e6
    budget = round(0.4 * full_cost, 4)
    root = _project(tmp_path, "c", peps_mini, fake, prices=BUDGET_PRICES)
    reset_remote(fake)
    run = _cli(prefect_api, "index", "--root", str(root), "--max-cost", str(budget))
    assert run.returncode != 0
    message = " ".join(run.stderr.split())
    assert f"llm.max_run_cost_usd ${budget:.4f}, spent $" in message, message
    assert "raise the budget" in message and "run again without one" in message
    first = fetch_stats(fake)
    billed = first["billing"]["billed_total"]
    spent = sum(first["billing"]["by_endpoint"][k]["billed_total"]["prompt_tokens"] * BUDGET_PRICES[p]
                for k, p in (("chat", "prompt"), ("embeddings", "embedding")) if k in first["billing"]["by_endpoint"])
    spent = (spent + billed["completion_tokens"] * BUDGET_PRICES["completion"]) / 1e6
    assert abs(spent - budget) <= 0.15 * budget, (spent, budget)

    reset_remote(fake)
    rerun = _cli(prefect_api, "index", "--root", str(root))
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    second = fetch_stats(fake)
    twice = set(_delivered_prompts(first)) & set(_delivered_prompts(second))
    assert not twice, f"{len(twice)} prompt(s) paid for twice"
    # the resumed run's usage is its own: what it was billed, not the first attempt's too
    usage, billed2 = _manifest(root)["usage"], second["billing"]["billed_delivered"]
    assert (usage["requests"], usage["prompt_tokens"] + usage["embedding_tokens"], usage["completion_tokens"]) == (
        billed2["requests"], billed2["prompt_tokens"], billed2["completion_tokens"])


def test_the_key_appears_in_no_estimate_usage_or_summary(indexed, prefect_api):
    estimate = _cli(prefect_api, "estimate", "--root", str(indexed.root))
    assert estimate.returncode == 0
    leaks = secret_leaks(KEY, indexed.root / "output", indexed.root / "cache",
                         texts=(estimate.stdout, estimate.stderr, json.dumps(indexed.estimate), indexed.stdout))
    assert not leaks, leaks


def test_a_run_killed_partway_then_resumed_counts_only_what_the_resumed_run_was_billed(
        tmp_path, peps_mini, fake, prefect_api):
    import subprocess
    import sys
    import time

    from conftest import REPO, cli_env
    from processes import kill_group

    root = _project(tmp_path, "k", peps_mini, fake, files=6)
    home, api = prefect_api
    reset_remote(fake)
    proc = subprocess.Popen([sys.executable, "-m", "graphrag_flow.cli", "index", "--root", str(root)], cwd=REPO,
                            env=cli_env(home, PREFECT_API_URL=api), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while fetch_stats(fake, with_log=False)["ok"].get("chat", 0) < 25:  # mid-extraction
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        kill_group(proc)
    killed = fetch_stats(fake, with_log=False)["billing"]["billed_total"]
    reset_remote(fake)
    rerun = _cli(prefect_api, "index", "--root", str(root))
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    billing = fetch_stats(fake, with_log=False)["billing"]
    usage, billed = _manifest(root)["usage"], billing["billed_delivered"]
    assert (usage["requests"], usage["prompt_tokens"] + usage["embedding_tokens"], usage["completion_tokens"]) == (
        billed["requests"], billed["prompt_tokens"], billed["completion_tokens"])
    # answers stored before the kill are not asked again (those in flight at the kill may be)
    assert killed["requests"] >= 25 and usage["stages"]["extract"]["requests"] < _units(root)
