"""Secrets from Prefect Secret blocks, through the real CLI against the session's Prefect server.

- `llm.api_key_secret`: `check` and `index` read the key from a Secret block; the fake server
  answers 401 to any other key, so a run that completes proves the block's key was sent.
- `neo4j.password_secret`: `check` authenticates against a scripted Bolt server (boltstub) whose
  HELLO expects the block's password.
- A missing block fails naming the setting.
- Afterwards the key appears nowhere: CLI output, the project (outputs, caches, results) and
  the Prefect server's home (database: flow/task run states, logs, events, artifacts).
- A settings.yaml that does not parse, in a real flow run: the flow run fails naming the file
  and line, and the line (holding the key) is in none of Prefect's records.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, cli_env, make_project, run_cli, secret_leaks
from fake_openai import configure_remote, fetch_stats
from test_neo4j_sink import STUB_PASSWORD, boltstub

KEY = "sk-block-Z9q-T4m-8Kx-Wv3"
BLOCK = "graphrag-flow-test-api-key"
NEO4J_BLOCK = "graphrag-flow-test-neo4j-password"
FILES = {
    "ada.txt": b"Ada Lovelace worked with Charles Babbage on the Analytical Engine in London.\n",
    "grace.txt": b"Grace Hopper wrote the first compiler for the Harvard Mark I.\n",
}


def save_secret_block(prefect_api: tuple[Path, str], name: str, value: str) -> None:
    from prefect.blocks.system import Secret
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: prefect_api[1]}):
        asyncio.run(Secret(value=value).asave(name, overwrite=True))


@pytest.fixture(scope="module")
def keyed_fake(fake, prefect_api):
    """The fake server, refusing every key but KEY; and KEY in a Secret block on the server."""
    configure_remote(fake, api_key=KEY, latency_s=0.0)
    save_secret_block(prefect_api, BLOCK, KEY)
    return fake


def llm_settings(fake_url: str, **extra) -> dict:
    return dict(provider="openai", api_base=fake_url, api_key_secret=BLOCK, request_timeout_s=10, max_retries=2,
                **extra)


def test_check_reads_the_api_key_from_a_secret_block(keyed_fake, prefect_home, tmp_path):
    root = make_project(tmp_path / "p", files=FILES, llm=llm_settings(keyed_fake))
    result = run_cli(["check", "--root", str(root)], prefect_home, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "the key was accepted" in result.stdout
    assert KEY not in result.stdout + result.stderr


def test_a_missing_secret_block_names_the_setting(keyed_fake, prefect_home, tmp_path):
    root = make_project(tmp_path / "p", files=FILES, llm=llm_settings(keyed_fake) | {"api_key_secret": "no-such-block"})
    result = run_cli(["check", "--root", str(root)], prefect_home, timeout=180)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "llm.api_key_secret" in result.stderr and "no Prefect Secret block" in result.stderr


def test_index_reads_the_api_key_from_a_secret_block_and_it_leaks_nowhere(keyed_fake, prefect_home, tmp_path):
    root = make_project(tmp_path / "p", files=FILES, llm=llm_settings(keyed_fake))
    before = fetch_stats(keyed_fake, with_log=False)["requests"]
    result = run_cli(["index", "--root", str(root)], prefect_home, timeout=400)
    assert result.returncode == 0, result.stdout + result.stderr
    after = fetch_stats(keyed_fake, with_log=False)
    assert sum(after["requests"].values()) > sum(before.values())  # it did talk to the server ...
    assert (root / "output" / "entities.parquet").is_file()  # ... with the block's key (others get 401)
    assert secret_leaks(KEY, root, prefect_home, texts=(result.stdout, result.stderr)) == []


def test_check_reads_the_neo4j_password_from_a_secret_block(prefect_api, prefect_home, tmp_path):
    save_secret_block(prefect_api, NEO4J_BLOCK, STUB_PASSWORD)
    with boltstub("hello.script", "goodbye.script", timeout=120) as (uri, _):
        root = make_project(tmp_path / "p", files=FILES, neo4j={"uri": uri, "password_secret": NEO4J_BLOCK})
        result = run_cli(["check", "--root", str(root)], prefect_home, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "accepted the credentials" in result.stdout
    assert STUB_PASSWORD not in result.stdout + result.stderr


def test_a_settings_file_that_does_not_parse_in_a_flow_run_leaves_its_text_nowhere(prefect_api, prefect_home,
                                                                                 tmp_path):
    """The flow itself reads settings.yaml (a deployment run has no CLI before it): the run fails
    with the file, line and column, and the line holding the key reaches none of Prefect's records."""
    leaked = "sk-yaml-line-P2d-Q8r-M5w"
    root = make_project(tmp_path / "p", files=FILES)
    (root / "settings.yaml").write_text(f'llm:\n  provider: openai\n  api_key: "{leaked}\n', encoding="utf-8")
    run = subprocess.run([sys.executable, "-m", "flows.index", str(root)], cwd=REPO, env=cli_env(prefect_home),
                         capture_output=True, text=True, timeout=300)
    assert run.returncode != 0
    assert "settings.yaml is not valid YAML: line 4, column 1" in run.stdout + run.stderr

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName
    from prefect.settings import PREFECT_API_URL, temporary_settings

    async def runs():
        with temporary_settings(updates={PREFECT_API_URL: prefect_api[1]}):
            async with get_client() as client:
                return await client.read_flow_runs(
                    flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[f"index-{root}"])))

    (flow_run,) = asyncio.run(runs())
    assert flow_run.state.is_failed() and "line 4, column 1" in (flow_run.state.message or "")
    assert secret_leaks(leaked, root, prefect_home, texts=(run.stdout, run.stderr)) == []
