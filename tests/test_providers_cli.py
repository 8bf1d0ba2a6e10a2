"""Providers through the real CLI, on the session's Prefect server, against the fake server in
its own process:

- the whole index on Azure OpenAI settings (deployments, api-version, the key from
  AZURE_OPENAI_API_KEY), `check` included, with the key written nowhere;
- a run under `llm.tokens_per_minute` / `llm.requests_per_minute` against a server enforcing the
  same limits over a real sliding minute: (nearly) no 429, and a wall time close to the pacing
  ideal. It spans about two minutes of server time, so it is in the slowest-first list.
"""

from __future__ import annotations

import shutil

import pytest

from conftest import make_project, run_cli, secret_leaks
from fake_openai import fetch_stats, start_fake_server_process, stop_fake_server_process

KEY = "azk-cli-SECRET-51e0c2d7"
VERSION = "2024-10-21"
DEPLOYMENTS = {"graph-chat": "gpt-4.1-mini", "graph-embed": "text-embedding-3-small"}
#: A small slice of peps-mini: 3 documents, ~30 requests, ~39,000 counted tokens.
SLICE = ("pep-0020.rst", "pep-0602.rst", "pep-0257.rst")


def slice_of(peps_mini, folder):
    folder.mkdir(parents=True)
    for name in SLICE:
        shutil.copy(peps_mini / name, folder / name)
    return folder


@pytest.fixture(scope="module")
def azure_fake():
    proc, base_url = start_fake_server_process(mode="azure", api_key=KEY, azure_deployments=DEPLOYMENTS)
    try:
        yield base_url.removesuffix("/v1")
    finally:
        stop_fake_server_process(proc)


def test_index_and_check_on_azure_settings(azure_fake, peps_mini, prefect_home, tmp_path):
    llm = dict(provider="azure", api_base=azure_fake, api_version=VERSION, chat_model="graph-chat",
               embedding_model="graph-embed", request_timeout_s=20, max_retries=3)
    root = make_project(tmp_path / "p", input_dir=slice_of(peps_mini, tmp_path / "docs"), llm=llm)
    check = run_cli(["check", "--root", str(root)], prefect_home, timeout=180, AZURE_OPENAI_API_KEY=KEY)
    out = " ".join((check.stdout + check.stderr).split())
    assert check.returncode == 0, out[-3000:]
    assert f"(Azure OpenAI, api-version {VERSION}) has deployments graph-chat and graph-embed; the key was accepted" \
        in out, out[-3000:]
    assert "the server accepted response_format json_schema" in out

    index = run_cli(["index", "--root", str(root)], prefect_home, timeout=400, AZURE_OPENAI_API_KEY=KEY)
    assert index.returncode == 0, (index.stdout + index.stderr)[-3000:]
    assert (root / "output" / "community_reports.parquet").is_file()
    stats = fetch_stats(azure_fake + "/v1")
    assert stats["ok"].get("chat", 0) > 0 and stats["ok"].get("embeddings", 0) > 0
    assert stats["status_counts"].get("404", 0) == 0 and stats["status_counts"].get("401", 0) == 0
    assert secret_leaks(KEY, root, prefect_home, texts=(check.stdout, check.stderr, index.stdout, index.stderr)) == []

    # a wrong api-version fails check in seconds, naming the setting
    bad = make_project(tmp_path / "q", input_dir=tmp_path / "docs", llm=llm | {"api_version": "2023-05-15"})
    wrong = run_cli(["check", "--root", str(bad)], prefect_home, timeout=180, AZURE_OPENAI_API_KEY=KEY)
    assert wrong.returncode == 1 and "llm.api_version" in wrong.stderr, wrong.stderr[-2000:]


TPM, RPM = 20_000, 20


@pytest.fixture(scope="module")
def limited_fake():
    """Enforces TPM and RPM over a sliding minute, counting a chat answer as 512 tokens."""
    proc, base_url = start_fake_server_process(tpm=TPM, rpm=RPM, rate_window_s=60, rate_completion_tokens=512,
                                               latency_s=0.05)
    try:
        yield base_url
    finally:
        stop_fake_server_process(proc)


def test_a_run_under_the_servers_own_limits_gets_no_429_and_is_paced_close_to_ideal(limited_fake, peps_mini,
                                                                                   prefect_home, tmp_path):
    llm = dict(provider="openai", api_base=limited_fake, api_key="sk-x", request_timeout_s=30, max_retries=6,
               tokens_per_minute=TPM, requests_per_minute=RPM, expected_completion_tokens=512)
    root = make_project(tmp_path / "p", input_dir=slice_of(peps_mini, tmp_path / "docs"), llm=llm)
    result = run_cli(["index", "--root", str(root)], prefect_home, timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    stats = fetch_stats(limited_fake)
    api = [e for e in stats["log"] if e["endpoint"] in ("chat", "embeddings")]
    counted = sum(e["rate_tokens"] or 0 for e in api if e["status"] == 200)
    assert counted > 1.5 * TPM, counted  # the slice needs more than the first minute's budget
    assert stats["rate_limit"]["rejected"] <= 2, stats["rate_limit"]
    # From the first request to the last answer, on the server's clock (the flow's start-up is
    # before it): within 1.3x of the pacing ideal, the tokens beyond the first minute's budget at TPM.
    window = max(e["t_end"] for e in api) - min(e["t_start"] for e in api)
    ideal = max((counted - TPM) / TPM, (len(api) - RPM) / RPM) * 60
    assert window <= 1.3 * ideal, (window, ideal)
    out = " ".join(result.stdout.split())
    assert f"rate budget ({TPM} tokens per minute, {RPM} requests per minute)" in out, out[-3000:]
    assert "waited" in out
