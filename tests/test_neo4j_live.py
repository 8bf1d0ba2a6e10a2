"""The Neo4j sink against a live Bolt + Cypher server: the session's `live_bolt` (tests/conftest.py),
ArcadeDB with its Bolt plugin started from the arcadedb-embedded wheel, or the real Neo4j named by
NEO4J_URI / NEO4J_PASSWORD (NEO4J_USER, NEO4J_DATABASE optional). These tests delete every
:Document, :Chunk, :Entity and :Community node in that database: point NEO4J_URI at a scratch one.

Every live test is in this module, on purpose: pytest-xdist hands whole modules to a worker
(--dist loadfile), so one worker starts one server for all of them (3-5 s, 150-350 MB here),
and no two processes write to the same database at once (against one NEO4J_URI, two workers
would wipe each other's graphs between their writes and counts).

What they show, with counts taken from the server and compared with counts computed here from
the parquet tables (not from the sink's own mapping):
- the sink's Python API: write, an idempotent re-write, incremental deletes, an interrupted
  write resumed from its checkpoint; refusals (a wrong password, a user without write rights)
  name the setting and record no batch;
- `graphrag-flow index` (the CLI in a subprocess): write, re-run (nothing created), kill -9 of
  the CLI in the middle of the sink then a run that resumes it (no batch lost or doubled), a
  document removed (its nodes deleted), and a user without write rights: exit 1 naming
  neo4j.user, outputs verified, no password anywhere.

ArcadeDB is not Neo4j: Neo4j's own error codes and statement texts are pinned by the boltstub
contract tests in tests/test_neo4j_sink.py and tests/test_neo4j_flow.py.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from conftest import REPO, cli_env, make_project, run_cli, secret_leaks
from graphrag_flow.config import load_settings
from graphrag_flow.errors import Neo4jSinkError
from graphrag_flow.stages.neo4j import BatchCheckpoint, build_statements, compute_deletes, write_graph
from graphrag_flow.storage.outputs import read_table
from graphrag_flow.status import project_status
from graphrag_flow.tables import SCHEMAS
from test_neo4j_sink import hostile_tables
from tests.arcadedb_server import BoltServer
from tests.processes import kill_group

LABELS = ("Document", "Chunk", "Entity", "Community")
TYPES = ("PART_OF", "RELATED", "MENTIONED_IN", "IN_COMMUNITY", "PARENT")
#: The CLI's temporary Prefect server is not used (the session's server is), but a loaded
#: machine still needs time for the subprocess's imports.
CLI_TIMEOUT = 400


# ---------------------------------------------------------------------------------------------
# Reading the server and the tables
# ---------------------------------------------------------------------------------------------


def cypher(server: BoltServer, query: str, **params) -> list[dict]:
    """One auto-committed query on a driver of its own (not the sink's code path)."""
    import neo4j

    with neo4j.GraphDatabase.driver(server.uri, auth=(server.user, server.password)) as driver:
        records, _, _ = driver.execute_query(query, params, database_=server.database)
    return [r.data() for r in records]


def wipe(server: BoltServer) -> None:
    cypher(server, "MATCH (n) WHERE n:Document OR n:Chunk OR n:Entity OR n:Community DETACH DELETE n")


def server_counts(server: BoltServer) -> dict[str, int]:
    out = {label: cypher(server, f"MATCH (n:{label}) RETURN count(n) AS c")[0]["c"] for label in LABELS}
    out |= {t: cypher(server, f"MATCH ()-[r:{t}]->() RETURN count(r) AS c")[0]["c"] for t in TYPES}
    return out


def parquet_counts(tables: dict[str, pd.DataFrame]) -> dict[str, int]:
    """What the graph must hold, counted from the tables as a reader of the README would."""
    ents, comms = tables["entities"], tables["communities"]
    return {
        "Document": len(tables["documents"]),
        "Chunk": len(tables["text_units"]),
        "Entity": len(ents),
        "Community": len(comms),
        "PART_OF": int(tables["text_units"]["document_id"].notna().sum()),
        "RELATED": len(tables["relationships"]),
        "MENTIONED_IN": int(ents["text_unit_ids"].map(len).sum()),
        "IN_COMMUNITY": int(comms["entity_ids"].map(len).sum()),
        "PARENT": int((comms["parent"] >= 0).sum()),
    }


def assert_graph_is_the_tables(server: BoltServer, tables: dict[str, pd.DataFrame]) -> None:
    """Counts per label/type, and every RELATED edge between the entities the table names."""
    expected = parquet_counts(tables)
    assert expected["Entity"] > 0 and expected["RELATED"] > 0
    assert server_counts(server) == expected
    edges = cypher(server, "MATCH (s:Entity)-[r:RELATED]->(t:Entity) RETURN r.id AS id, s.title AS s, t.title AS t")
    rels = tables["relationships"]
    assert sorted((e["id"], e["s"], e["t"]) for e in edges) == sorted(zip(rels["id"], rels["source"], rels["target"]))
    titles = cypher(server, "MATCH (n:Entity) RETURN n.id AS id, n.title AS title")
    assert sorted((t["id"], t["title"]) for t in titles) == sorted(zip(tables["entities"]["id"],
                                                                       tables["entities"]["title"]))


# ---------------------------------------------------------------------------------------------
# The sink's Python API
# ---------------------------------------------------------------------------------------------


def test_write_rewrite_delete_and_resume(live_bolt, tmp_path):
    live, password = live_bolt.settings(batch_size=2), live_bolt.password
    wipe(live_bolt)
    tables = hostile_tables()  # quotes, braces, `$rows`, Cypher keywords in every text field
    first = write_graph(live, password, tables)
    assert first.verification.ok and first.created == first.written
    assert_graph_is_the_tables(live_bolt, tables)
    stored = cypher(live_bolt, "MATCH (n:Entity) RETURN n.description AS d")
    assert sorted(r["d"] for r in stored) == sorted(tables["entities"]["description"])  # stored verbatim

    # idempotent: a second run creates nothing and leaves the same graph
    second = write_graph(live, password, tables)
    assert second.verification.ok and all(v == 0 for v in second.created.values())
    assert_graph_is_the_tables(live_bolt, tables)

    # incremental: entity e2 (and with it relationship r1) left the index
    new = hostile_tables()
    new["entities"] = new["entities"][new["entities"]["id"] != "e2"]
    new["relationships"] = new["relationships"].iloc[0:0]
    new["communities"] = new["communities"].assign(entity_ids=[["e1"], ["e1"]])
    third = write_graph(live, password, new, compute_deletes(tables, new))
    assert third.verification.ok, third.verification.describe()
    assert third.deleted == {"RELATED": 1, "Entity": 1}
    assert server_counts(live_bolt) == parquet_counts(new)

    # interrupted after 3 committed batches, then resumed from the checkpoint
    wipe(live_bolt)
    checkpoint = BatchCheckpoint(tmp_path / "neo4j.batches")

    class Crash(Exception):
        pass

    def crash(progress):
        if progress.done == 3:
            raise Crash("stopped after 3 batches")

    with pytest.raises(Crash):
        write_graph(live, password, tables, on_batch=crash, checkpoint=checkpoint)
    assert len(BatchCheckpoint(checkpoint.path)) == 3
    resumed = write_graph(live, password, tables, checkpoint=BatchCheckpoint(checkpoint.path))
    assert resumed.resumed_batches == 3 and resumed.verification.ok
    assert not checkpoint.path.exists()
    assert_graph_is_the_tables(live_bolt, tables)


def test_a_wrong_password_is_named_and_nothing_is_written(live_bolt, tmp_path):
    wipe(live_bolt)
    wrong = "wrong-" + secrets.token_hex(8)
    checkpoint = BatchCheckpoint(tmp_path / "neo4j.batches")
    with pytest.raises(Neo4jSinkError) as info:
        write_graph(live_bolt.settings(), wrong, hostile_tables(), checkpoint=checkpoint)
    err = info.value
    assert err.setting == "neo4j.password" and "neo4j.password" in str(err), err
    assert wrong not in str(err) and live_bolt.password not in str(err)
    assert len(BatchCheckpoint(checkpoint.path)) == 0
    assert sum(server_counts(live_bolt).values()) == 0


def reader(server: BoltServer) -> tuple[str, str]:
    """A user the server accepts but lets write nothing (ArcadeDB: group "*" on the database)."""
    if server.kind != "arcadedb":
        pytest.skip("creating a user without write rights needs ArcadeDB's admin API (NEO4J_URI is set)")
    name, password = f"reader-{secrets.token_hex(4)}", "reader-" + secrets.token_urlsafe(12)
    server.create_user(name, password, {server.database: "*"})
    return name, password


def test_a_user_without_write_rights_is_named_and_nothing_is_recorded(live_bolt, tmp_path):
    tables = hostile_tables()
    wipe(live_bolt)
    write_graph(live_bolt.settings(batch_size=2), live_bolt.password, tables)  # constraints exist
    name, password = reader(live_bolt)
    checkpoint = BatchCheckpoint(tmp_path / "neo4j.batches")
    with pytest.raises(Neo4jSinkError) as info:
        write_graph(live_bolt.settings(user=name, batch_size=2), password, hostile_tables(),
                    {"documents": ["d-gone"]}, checkpoint=checkpoint)
    err = info.value
    assert err.setting == "neo4j.user", err
    assert f"accepted neo4j.user='{name}' but does not allow it" in str(err)
    assert "delete Document batch 1/1" in str(err) and "Neo.ClientError.Security.Forbidden" in str(err)
    assert password not in str(err)
    assert len(BatchCheckpoint(checkpoint.path)) == 0
    assert_graph_is_the_tables(live_bolt, tables)  # nothing changed


# ---------------------------------------------------------------------------------------------
# `graphrag-flow index` through the CLI
# ---------------------------------------------------------------------------------------------


def corpus(files: int = 4, lines: int = 12) -> dict[str, bytes]:
    """Sentences citing PEPs and RFCs, which the offline rules extract (PEP, DOCUMENT) and relate:
    ~100 entities, so at neo4j.batch_size=1 the sink runs a few hundred transactions (seconds),
    time enough to kill it in the middle."""
    out = {}
    for f in range(files):
        base = 100 + 20 * f
        text = "\n".join(f"PEP {base + i} builds on PEP {base + i + 1} and RFC {2000 + base + i}."
                         for i in range(lines))
        out[f"peps-{f}.txt"] = (text + "\n").encode()
    return out


def _tables(root: Path) -> dict[str, pd.DataFrame]:
    return {name: read_table(root / "output", name) for name in SCHEMAS}


def _index(root: Path, prefect_home: Path, password: str, **env: str) -> subprocess.CompletedProcess:
    return run_cli(["index", "--root", str(root)], prefect_home, timeout=CLI_TIMEOUT,
                   GRAPHRAG_FLOW_NEO4J__PASSWORD=password, **env)


def _neo4j_rows(stdout: str) -> dict[str, list[str]]:
    """The CLI's neo4j table: label/type -> [parquet, parquet rows, written, created, deleted, in neo4j, match]."""
    rows = {}
    for line in stdout.splitlines():
        cells = [c.strip() for c in re.split(r"[│|]", line) if c.strip()]
        if cells and cells[0] in (*LABELS, *TYPES) and len(cells) == 8:
            rows[cells[0]] = cells[1:]
    return rows


def _batches(stdout: str) -> tuple[int, int]:
    """(written, resumed) from the CLI's `neo4j: N batch(es) written, M resumed` line."""
    found = re.search(r"neo4j: (\d+) batch\(es\) written, (\d+) resumed", stdout)
    assert found, stdout
    return int(found[1]), int(found[2])


def _ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "graph verified against the parquet tables" in result.stdout
    return result


@pytest.fixture(scope="module")
def project(live_bolt, tmp_path_factory) -> Path:
    neo = {"uri": live_bolt.uri, "user": live_bolt.user, "database": live_bolt.database, "batch_size": 1}
    return make_project(tmp_path_factory.mktemp("neo4j-live") / "project", files=corpus(), neo4j=neo)


@pytest.fixture(scope="module")
def first(project, live_bolt, prefect_home):
    wipe(live_bolt)
    return _ok(_index(project, prefect_home, live_bolt.password))


def test_index_writes_the_graph_of_the_parquet_tables(first, project, live_bolt):
    tables = _tables(project)
    assert_graph_is_the_tables(live_bolt, tables)
    rows = _neo4j_rows(first.stdout)
    assert rows and all(r[6] == "yes" and r[3] == r[2] for r in rows.values()), first.stdout  # all created
    assert len(tables["entities"]) >= 80  # enough batches for the kill below


@pytest.fixture(scope="module")
def second(first, project, live_bolt, prefect_home):
    return _ok(_index(project, prefect_home, live_bolt.password))


def test_a_second_run_creates_nothing(second, project, live_bolt):
    rows = _neo4j_rows(second.stdout)
    assert rows and all(r[3] == "0" and r[6] == "yes" for r in rows.values()), second.stdout
    assert_graph_is_the_tables(live_bolt, _tables(project))


@pytest.fixture(scope="module")
def killed_and_resumed(second, project, live_bolt, prefect_home):
    """kill -9 of the CLI's process group once the sink has committed a few batches, then a run."""
    wipe(live_bolt)
    checkpoint = project / "cache" / "neo4j" / "batches"
    total = sum(len(s.batches) for s in build_statements(_tables(project), batch_size=1))
    env = cli_env(prefect_home, GRAPHRAG_FLOW_NEO4J__PASSWORD=live_bolt.password)
    proc = subprocess.Popen([sys.executable, "-m", "graphrag_flow.cli", "index", "--root", str(project)], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + CLI_TIMEOUT
        while proc.poll() is None and time.monotonic() < deadline:
            if checkpoint.exists() and checkpoint.read_bytes().count(b"\n") >= 5:
                os.killpg(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.005)
    finally:
        kill_group(proc)
    assert proc.returncode == -signal.SIGKILL, f"the CLI ended by itself (exit {proc.returncode}) before the kill"
    committed = len(BatchCheckpoint(checkpoint))
    in_server = sum(server_counts(live_bolt).values())
    assert 5 <= committed < total and 0 < in_server
    return committed, total, _ok(_index(project, prefect_home, live_bolt.password))


def test_a_run_killed_mid_write_resumes_without_losing_or_doubling(killed_and_resumed, project, live_bolt):
    committed, total, result = killed_and_resumed
    written, resumed = _batches(result.stdout)
    # every batch the checkpoint recorded is skipped; the rest (and at most the one in flight at
    # the kill, committed but not yet recorded, which MERGE makes harmless) is written again
    assert resumed == committed and written == total - committed, result.stdout
    assert_graph_is_the_tables(live_bolt, _tables(project))
    assert not (project / "cache" / "neo4j" / "batches").exists()  # cleared once verified


@pytest.fixture(scope="module")
def shrunk(killed_and_resumed, project, live_bolt, prefect_home):
    before = _tables(project)
    (project / "input" / "peps-3.txt").unlink()
    return before, _ok(_index(project, prefect_home, live_bolt.password))


def test_an_incremental_run_deletes_what_left_the_index(shrunk, project, live_bolt):
    before, result = shrunk
    after = _tables(project)
    deletes = compute_deletes(before, after)
    rows = _neo4j_rows(result.stdout)
    assert int(rows["Document"][4]) == len(deletes["documents"]) == 1
    assert int(rows["Entity"][4]) == len(deletes["entities"]) > 0
    assert_graph_is_the_tables(live_bolt, after)


def test_a_refused_write_fails_the_run_names_the_user_and_keeps_the_outputs(shrunk, project, live_bolt,
                                                                            prefect_home):
    name, password = reader(live_bolt)
    state = project / "cache" / "neo4j" / "state.json"
    state_before = state.read_bytes()
    (project / "input" / "peps-2.txt").unlink()  # something to delete and write
    result = _index(project, prefect_home, password, GRAPHRAG_FLOW_NEO4J__USER=name)
    assert result.returncode == 1, result.stdout + result.stderr
    error = " ".join(result.stderr[result.stderr.index("error:"):].split())  # the CLI wraps long lines
    assert "neo4j stage failed" in error, error
    assert f"accepted neo4j.user='{name}' but does not allow it" in error, error  # not "check the password"
    assert "Neo.ClientError.Security.Forbidden" in error
    report = project_status(project, load_settings(project))
    assert report.verified, report.headline  # the parquet and LanceDB outputs stand
    assert state.read_bytes() == state_before  # the deletes stay pending for the next run
    for secret in (password, live_bolt.password):
        assert secret not in result.stdout + result.stderr
        assert secret_leaks(secret, project, prefect_home) == []

    # the next run with the right user applies them
    _ok(_index(project, prefect_home, live_bolt.password))
    assert_graph_is_the_tables(live_bolt, _tables(project))
