"""Shared test helpers: real project folders, the real CLI in a subprocess, the corpora."""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest
import yaml

from tests.processes import free_port, kill_group, start_prefect_server  # noqa: F401  (fixtures' helpers)

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
PEPS_MINI = SHARED / "corpora" / "peps-mini"
#: In a PREFECT_HOME made by `shared_prefect_home`: the URL of the server CLI runs there use.
API_URL_FILE = "graphrag-flow-test-api-url"


@pytest.fixture(scope="session")
def peps_mini() -> Path:
    # A missing corpus fails the test (never skips): CI lays ../shared beside the clone.
    assert PEPS_MINI.is_dir(), f"corpus {PEPS_MINI} is missing: clone the repo beside shared/"
    return PEPS_MINI


@pytest.fixture(scope="session")
def prefect_home(tmp_path_factory) -> Path:
    """One PREFECT_HOME for the session's CLI runs, apart from the user's."""
    return tmp_path_factory.mktemp("prefect-home")


def make_project(root: Path, input_dir: Path | None = None, files: dict[str, bytes] | None = None, **sections) -> Path:
    """A project folder: settings.yaml (sections given as dicts) and an input folder."""
    root.mkdir(parents=True, exist_ok=True)
    settings: dict = {k: dict(v) for k, v in sections.items()}
    if input_dir is not None:
        settings.setdefault("input", {})["dir"] = str(input_dir)
    else:
        (root / "input").mkdir(exist_ok=True)
        for name, data in (files or {}).items():
            path = root / "input" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
    (root / "settings.yaml").write_text(yaml.safe_dump(settings), encoding="utf-8")
    return root


def cli_env(prefect_home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GRAPHRAG_FLOW_", "PREFECT_"))}
    env.update(
        PREFECT_HOME=str(prefect_home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_LOGGING_LEVEL="WARNING",
        COLUMNS="200",
    )
    api_url = prefect_home / API_URL_FILE
    if api_url.exists():  # a home served by one running server (shared_prefect_home)
        env["PREFECT_API_URL"] = api_url.read_text().strip()
    env.update(extra)
    return env


def run_cli(args: list[str], prefect_home: Path, timeout: float = 600, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args],
        cwd=REPO,
        env=cli_env(prefect_home, **env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@contextmanager
def prefect_server(home: Path) -> Iterator[tuple[Path, str]]:
    """A real `prefect server` on a free port with its own PREFECT_HOME: CLI runs given its
    PREFECT_API_URL skip the temporary server (8-16 s each) and a killed CLI leaves none behind."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = cli_env(home, PREFECT_API_URL=url, PREFECT_SERVER_API_PORT=str(port), PREFECT_SERVER_API_HOST="127.0.0.1")
    proc, url = start_prefect_server(env, port)
    try:
        yield home, url
    finally:
        kill_group(proc)


@pytest.fixture(scope="module")
def shared_prefect_home(tmp_path_factory) -> Iterator[Path]:
    """A PREFECT_HOME served by one running Prefect server for a module's CLI runs (each then
    skips the temporary server's start); a module opts in by overriding `prefect_home`."""
    home = tmp_path_factory.mktemp("prefect-shared-home")
    with prefect_server(home) as (_, url):
        (home / API_URL_FILE).write_text(url)
        yield home


@pytest.fixture(scope="module")
def prefect_api(tmp_path_factory) -> Iterator[tuple[Path, str]]:
    """(PREFECT_HOME, API URL) of one Prefect server for a module's CLI runs."""
    with prefect_server(tmp_path_factory.mktemp("prefect-api-home")) as api:
        yield api


@pytest.fixture(scope="module")
def fake() -> Iterator[str]:
    """The base URL of a fake OpenAI server in its own process (its counters outlive a killed CLI)."""
    from fake_openai import start_fake_server_process, stop_fake_server_process

    proc, base_url = start_fake_server_process()
    try:
        yield base_url
    finally:
        stop_fake_server_process(proc)
