"""The Neo4j sink: the Cypher layer, Bolt contract tests against boltstub, failures.

Contract tests: boltkit's stub server (`boltstub PORT SCRIPT`; here its StubServer class run in
a thread, plus one run of the real `boltstub` command) plays a Bolt 3 server from the
hand-written scripts in tests/neo4j_scripts/. The real neo4j driver sends the sink's real
statements and parameters; any difference stops the stub and fails the test. Bolt 3 has no
multi-database, so these tests pass no `neo4j.database`.

The same sink against a live server (ArcadeDB's Bolt plugin, or the Neo4j at NEO4J_URI) is in
tests/test_neo4j_live.py; the stub keeps pinning what only Neo4j itself says (its error codes and
messages, Bolt 3).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from graphrag_flow.config import Neo4jSettings
from graphrag_flow.errors import GraphragFlowError, Neo4jSinkError, SettingsError, VerifyError
from graphrag_flow.stages.neo4j import (
    CONSTRAINTS,
    COUNT_QUERIES,
    NODE_LABELS,
    REL_TYPES,
    BatchCheckpoint,
    Neo4jSink,
    SinkState,
    Statement,
    build_statements,
    compute_deletes,
    graph_rows,
    write_graph,
    write_graph_async,
)

SCRIPTS = Path(__file__).parent / "neo4j_scripts"
STUB_PASSWORD = "stub-password"  # the password hello.script expects
FAST = {"max_retry_time_s": 3.0}  # an off-script stub closes the socket: don't retry for 30 s


# ---------------------------------------------------------------------------------------------
# Tiny tables with the architecture's columns (the data the scripts state)
# ---------------------------------------------------------------------------------------------


def make_tables() -> dict[str, pd.DataFrame]:
    return {
        "documents": pd.DataFrame(
            {"id": ["d1"], "human_readable_id": [0], "title": ["notes/a'b.txt"], "text": ["..."],
             "text_unit_ids": [np.array(["c1"])]}
        ),
        "text_units": pd.DataFrame(
            {"id": ["c1"], "human_readable_id": [0], "text": ['Ada met "Babbage" {twice}.'],
             "n_tokens": np.array([7], dtype="int64"), "document_id": ["d1"],
             "entity_ids": [np.array(["e1", "e2"])]}
        ),
        "entities": pd.DataFrame(
            {"id": ["e2", "e1"], "human_readable_id": [1, 0], "title": ["BABBAGE", "ADA"],
             "type": ["PERSON", "PERSON"], "description": ["An engineer", "A mathematician"],
             "text_unit_ids": [np.array(["c1"]), np.array(["c1"])],
             "frequency": [1, 1], "degree": np.array([1, 1], dtype="int64")}
        ),
        "relationships": pd.DataFrame(
            {"id": ["r1"], "human_readable_id": [0], "source": ["ADA"], "target": ["BABBAGE"],
             "description": ["worked with"], "weight": np.array([2.0]), "combined_degree": [2]}
        ),
        "communities": pd.DataFrame(
            {"id": ["k0", "k1"], "human_readable_id": [0, 1], "community": [0, 1], "level": [0, 1],
             "parent": [-1, 0], "title": ["Community 0", "Community 1"],
             "entity_ids": [np.array(["e1", "e2"]), np.array(["e1", "e2"])]}
        ),
        "community_reports": pd.DataFrame(
            {"id": ["rep1", "rep0"], "community": [1, 0], "title": ["Community 1", "Community 0"],
             "summary": ["Two people", "Ada and Babbage"], "rank": np.array([5.0, 7.5])}
        ),
    }


def empty_tables() -> dict[str, pd.DataFrame]:
    return {name: frame.iloc[0:0] for name, frame in make_tables().items()}


def documents_only(*rows: tuple[str, str]) -> dict[str, pd.DataFrame]:
    tables = empty_tables()
    tables["documents"] = pd.DataFrame(
        {"id": [r[0] for r in rows], "title": [r[1] for r in rows], "text_unit_ids": [[] for _ in rows]}
    )
    return tables


def settings(uri: str, batch_size: int = 1000, **kw) -> Neo4jSettings:
    return Neo4jSettings(uri=uri, user="neo4j", batch_size=batch_size, **kw)


# ---------------------------------------------------------------------------------------------
# The Cypher layer (pure)
# ---------------------------------------------------------------------------------------------

HOSTILE = [
    "'}) MATCH (n) DETACH DELETE n //",
    '"}) DETACH DELETE n RETURN 1 //',
    "`Entity` {id: $ids} ${rows}",
    "MATCH (n) DETACH DELETE n",
    "\\' OR 1=1 --",
    "row.id}]->(t) SET t.x = 1",
]


def hostile_tables() -> dict[str, pd.DataFrame]:
    t = make_tables()
    h = HOSTILE
    t["documents"]["title"] = [h[0]]
    t["text_units"]["text"] = [h[1]]
    t["entities"]["title"] = [h[2], h[3]]
    t["entities"]["description"] = [h[4], h[5]]
    t["entities"]["type"] = [h[0], h[1]]
    t["relationships"]["source"] = [h[3]]
    t["relationships"]["target"] = [h[2]]
    t["relationships"]["description"] = [h[3]]
    t["communities"]["title"] = [h[4], h[5]]
    t["community_reports"]["summary"] = [h[0], h[1]]
    return t


def test_cypher_text_does_not_change_with_the_data():
    plain = build_statements(make_tables(), batch_size=1)
    hostile = build_statements(hostile_tables(), deletes={"entities": HOSTILE}, batch_size=1)
    plain_cypher = {(s.op, s.target): s.cypher for s in plain}
    hostile_upserts = {(s.op, s.target): s.cypher for s in hostile if s.op == "upsert"}
    assert hostile_upserts == plain_cypher
    assert set(hostile_upserts) == {("upsert", t) for t in (*NODE_LABELS, *REL_TYPES)}
    for st in hostile:
        for value in HOSTILE:
            assert value not in st.cypher
        assert re.fullmatch(r"[A-Za-z0-9_ (){}\[\]:.,=$<>\-]+", st.cypher), st.cypher
        assert st.cypher.count("$") == 1 and f"${st.param}" in st.cypher
    # ... and the hostile values do travel, unchanged, as parameters
    sent = json.dumps([list(b) for s in hostile for b in s.batches])
    for value in HOSTILE:
        assert json.dumps(value)[1:-1] in sent


def test_batches_have_the_right_size_and_shape():
    tables = make_tables()
    n = 7
    tables["documents"] = pd.DataFrame(
        {"id": [f"d{i}" for i in reversed(range(n))], "title": [f"t{i}" for i in reversed(range(n))],
         "text_unit_ids": [[] for _ in range(n)]}
    )
    tables["text_units"]["document_id"] = ["d3"]
    statements = {s.name: s for s in build_statements(tables, batch_size=3)}
    docs = statements["upsert Document"]
    assert [len(b) for b in docs.batches] == [3, 3, 1]
    assert [r["id"] for b in docs.batches for r in b] == [f"d{i}" for i in range(n)]  # sorted by id
    assert all(set(r) == {"id", "title"} for b in docs.batches for r in b)
    shapes = {
        "Chunk": {"id", "text", "n_tokens"},
        "Entity": {"id", "title", "type", "description", "degree"},
        "Community": {"id", "level", "title", "summary", "rating"},
        "RELATED": {"id", "source", "target", "description", "weight"},
        "PART_OF": {"source", "target"},
        "MENTIONED_IN": {"source", "target"},
        "IN_COMMUNITY": {"source", "target"},
        "PARENT": {"source", "target"},
    }
    for target, keys in shapes.items():
        st = statements[f"upsert {target}"]
        assert st.param == "rows"
        assert all(1 <= len(b) <= 3 for b in st.batches)
        assert all(set(r) == keys for b in st.batches for r in b), target
    assert [len(b) for b in statements["upsert IN_COMMUNITY"].batches] == [3, 1]
    # plain Python values only (numpy scalars/arrays converted): JSON needs no fallback
    json.dumps([list(b) for s in statements.values() for b in s.batches])
    assert type(statements["upsert Chunk"].batches[0][0]["n_tokens"]) is int
    assert type(statements["upsert RELATED"].batches[0][0]["weight"]) is float


def test_order_is_deletes_then_nodes_then_edges():
    names = [s.name for s in build_statements(make_tables(), deletes={"documents": ["d9"], "relationships": ["r9"]})]
    assert names == [
        "delete RELATED", "delete Document",
        "upsert Document", "upsert Chunk", "upsert Entity", "upsert Community",
        "upsert PART_OF", "upsert RELATED", "upsert MENTIONED_IN", "upsert IN_COMMUNITY", "upsert PARENT",
    ]


def test_graph_mapping():
    tables = make_tables()
    tables["relationships"] = pd.concat(
        [tables["relationships"],
         pd.DataFrame({"id": ["r2"], "source": ["ADA"], "target": ["NOBODY"], "description": [None],
                       "weight": [float("nan")]})],
        ignore_index=True,
    )
    g = graph_rows(tables)
    assert g.rows["RELATED"] == [
        {"id": "r1", "source": "e1", "target": "e2", "description": "worked with", "weight": 2.0}
    ]
    assert g.skipped_edges == {"RELATED": 1}
    assert g.rows["Community"] == [
        {"id": "k0", "level": 0, "title": "Community 0", "summary": "Ada and Babbage", "rating": 7.5},
        {"id": "k1", "level": 1, "title": "Community 1", "summary": "Two people", "rating": 5.0},
    ]
    assert g.rows["PARENT"] == [{"source": "k1", "target": "k0"}]  # k0's parent -1 is skipped
    assert g.counts() == {
        "Document": 1, "Chunk": 1, "Entity": 2, "Community": 2,
        "PART_OF": 1, "RELATED": 1, "MENTIONED_IN": 2, "IN_COMMUNITY": 4, "PARENT": 1,
    }
    # a community without a report still becomes a node (summary/rating null)
    tables["community_reports"] = tables["community_reports"].iloc[0:0]
    assert graph_rows(tables).rows["Community"][0]["rating"] is None


def test_deletes_never_remove_live_ids_and_reject_unknown_tables():
    st = build_statements(
        make_tables(),
        deletes={"entities": ["e1", "gone", "gone"], "relationships": ["r1"], "text_units": []},
    )
    deletes = [s for s in st if s.op == "delete"]
    assert [(s.target, s.param, [list(b) for b in s.batches]) for s in deletes] == [("Entity", "ids", [["gone"]])]
    with pytest.raises(ValueError, match="community_reports"):
        build_statements(make_tables(), deletes={"community_reports": ["x"]})
    with pytest.raises(ValueError, match="'communities' is missing"):
        build_statements({k: v for k, v in make_tables().items() if k != "communities"})


def test_compute_deletes():
    old = make_tables()
    new = make_tables()
    new["entities"] = new["entities"][new["entities"]["id"] != "e2"]
    new["relationships"] = new["relationships"].iloc[0:0]
    assert compute_deletes(old, new) == {"entities": ["e2"], "relationships": ["r1"]}


# A grammar-based check: antlr4-cypher is the ANTLR grammars-v4 Cypher grammar, generated
# (a dev dependency like boltkit and neo4j: missing, the module errors instead of skipping).
import antlr4  # noqa: E402
import antlr4_cypher  # noqa: E402


def parse_cypher(text: str) -> None:
    from antlr4.error.ErrorListener import ErrorListener

    class Raise(ErrorListener):
        def syntaxError(self, recognizer, symbol, line, column, msg, e):  # noqa: N802
            raise SyntaxError(f"{line}:{column} {msg}: {text}")

    lexer = antlr4_cypher.CypherLexer(antlr4.InputStream(text))
    lexer.removeErrorListeners()
    lexer.addErrorListener(Raise())
    parser = antlr4_cypher.CypherParser(antlr4.CommonTokenStream(lexer))
    parser.removeErrorListeners()
    parser.addErrorListener(Raise())
    parser.script()


def test_every_statement_is_valid_cypher():
    statements = build_statements(make_tables(), deletes={t: ["x"] for t in
                                  ("documents", "text_units", "entities", "relationships", "communities")})
    texts = {s.cypher for s in statements} | set(COUNT_QUERIES.values())
    assert len(texts) == 9 + 5 + 9
    for text in sorted(texts):
        parse_cypher(text)
    # the parser is strict enough to catch a broken statement
    for broken in ("UNWIND $rows AS row MERGE (n:Document {id: row.id) SET n.title = row.title",
                   "MATCH (n:Entity) WHERE n.id IN $ids DETACH n"):
        with pytest.raises(SyntaxError):
            parse_cypher(broken)


def test_constraints_follow_neo4j_5_syntax():
    # Schema commands are outside the openCypher grammar; check Neo4j 5's documented form.
    node = re.compile(r"CREATE CONSTRAINT (\w+) IF NOT EXISTS FOR \(n:(\w+)\) REQUIRE n\.id IS UNIQUE")
    rel = re.compile(r"CREATE CONSTRAINT (\w+) IF NOT EXISTS FOR \(\)-\[r:(\w+)\]-\(\) REQUIRE r\.id IS UNIQUE")
    labels = {node.fullmatch(c).group(2) for c in CONSTRAINTS if node.fullmatch(c)}
    types = {rel.fullmatch(c).group(2) for c in CONSTRAINTS if rel.fullmatch(c)}
    assert labels == set(NODE_LABELS) and types == {"RELATED"} and len(CONSTRAINTS) == 5


def test_checkpoint_survives_a_torn_line(tmp_path):
    path = tmp_path / "neo4j.batches"
    cp = BatchCheckpoint(path)
    cp.add("a" * 64)
    with open(path, "a") as f:
        f.write("b" * 20)  # a crash mid-append
    again = BatchCheckpoint(path)
    assert "a" * 64 in again and len(again) == 1
    again.add("c" * 64)  # starts a fresh line after the torn one
    assert set(BatchCheckpoint(path)._done) == {"a" * 64, "c" * 64}
    again.clear()
    assert not path.exists() and len(BatchCheckpoint(path)) == 0


def test_sink_state_deletes_what_left_since_the_last_saved_write(tmp_path):
    state = SinkState(tmp_path / "neo4j" / "state.json")
    assert state.deletes(make_tables()) == {}  # never written: nothing to delete
    state.save(make_tables())
    new = make_tables()
    new["entities"] = new["entities"][new["entities"]["id"] != "e2"]
    new["documents"] = documents_only(("d9", "new.txt"))["documents"]
    assert state.deletes(new) == {"documents": ["d1"], "entities": ["e2"]}
    assert state.deletes(new) == SinkState(state.path).deletes(new)  # read from the file each time
    state.path.write_text("{not json", encoding="utf-8")
    with pytest.raises(Neo4jSinkError, match="state.json is unreadable"):
        state.deletes(new)


def test_statement_is_a_plain_value():
    st = build_statements(documents_only(("d1", "t")))[0]
    assert isinstance(st, Statement) and st.rows == 1 and st.name == "upsert Document"


# ---------------------------------------------------------------------------------------------
# boltstub harness
# ---------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def _stub_server_class():
    from boltkit.server import StubServer

    class NoDelayStub(StubServer):
        """StubServer answering without Nagle's delay (it writes each chunk header and body
        separately, which costs ~40 ms per message against delayed ACKs); behaviour unchanged."""

        def accept(self, sock):
            super().accept(sock)
            for peer in self.peers:
                if peer is not self.server:
                    peer.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    return NoDelayStub


@contextmanager
def boltstub(*names: str, port: int | None = None, timeout: float = 10.0):
    """A scripted Bolt 3 server playing the named scripts in order; fails on any deviation."""
    from boltkit.server import Script

    port = port or free_port()
    script = Script()
    for name in names:
        script.append(str(SCRIPTS / name))
    collect = _Collect()
    logger = logging.getLogger("boltkit.server")
    logger.addHandler(collect)
    old_level = logger.level
    logger.setLevel(logging.DEBUG)
    server = _stub_server_class()(("127.0.0.1", port), timeout=timeout)
    server.script = script
    server.start()
    try:
        try:
            yield f"bolt://127.0.0.1:{port}", server
        except BaseException as exc:  # show what the stub saw next to the client's error
            exc.add_note("boltstub transcript:\n" + "\n".join(collect.lines[-40:]))
            raise
        server.join(timeout)
        transcript = "\n".join(collect.lines[-40:])
        assert not server.is_alive(), f"stub still running (no GOODBYE?):\n{transcript}"
        assert server.exit_code == 0, f"off script:\n{transcript}"
        left = [f"line {line.line_no}" for line in server.script.lines]
        assert not left, f"script not finished, next expected at {left[:1]}:\n{transcript}"
    finally:
        if server.is_alive():
            server.stop()
        logger.removeHandler(collect)
        logger.setLevel(old_level)


# ---------------------------------------------------------------------------------------------
# Contract tests
# ---------------------------------------------------------------------------------------------


def test_contract_constraints():
    with boltstub("hello.script", "constraints.script", "goodbye.script") as (uri, _):
        with Neo4jSink(settings(uri), STUB_PASSWORD, **FAST) as sink:
            sink.ensure_constraints()


def test_contract_write():
    with boltstub("hello.script", "write.script", "goodbye.script") as (uri, _):
        with Neo4jSink(settings(uri, batch_size=2), STUB_PASSWORD, **FAST) as sink:
            summary = sink.write(make_tables())
    assert summary.nodes == {"Document": 1, "Chunk": 1, "Entity": 2, "Community": 2}
    assert summary.relationships == {"PART_OF": 1, "RELATED": 1, "MENTIONED_IN": 2, "IN_COMMUNITY": 4, "PARENT": 1}
    assert summary.created == summary.written  # from the server's counters
    assert summary.batches == 10 and summary.resumed_batches == 0


def test_contract_incremental_deletes_then_write():
    deletes = {
        "relationships": ["r-old", "r1"],  # r1 is still in the tables: kept
        "communities": ["k-old"],
        "entities": ["e-old3", "e1", "e-old2", "e-old1"],
        "text_units": ["c-old"],
        "documents": ["d-old"],
    }
    with boltstub("hello.script", "deletes.script", "write.script", "goodbye.script") as (uri, _):
        with Neo4jSink(settings(uri, batch_size=2), STUB_PASSWORD, **FAST) as sink:
            summary = sink.write(make_tables(), deletes)
    assert summary.deleted == {"RELATED": 1, "Community": 1, "Entity": 3, "Chunk": 1, "Document": 1}
    assert summary.batches == 6 + 10


def test_contract_verify():
    with boltstub("hello.script", "verify.script", "goodbye.script") as (uri, _):
        with Neo4jSink(settings(uri), STUB_PASSWORD, **FAST) as sink:
            result = sink.verify(make_tables())
    assert result.ok, result.describe()
    assert result.actual["IN_COMMUNITY"] == 4


def test_contract_verify_reports_a_mismatch():
    tables = make_tables()
    tables["documents"] = pd.concat(
        [tables["documents"], pd.DataFrame({"id": ["d2"], "title": ["x"], "text_unit_ids": [[]]})], ignore_index=True
    )
    with boltstub("hello.script", "verify.script", "goodbye.script") as (uri, _):
        with Neo4jSink(settings(uri), STUB_PASSWORD, **FAST) as sink:
            result = sink.verify(tables)
    assert result.mismatches == {"Document": (2, 1)}
    with pytest.raises(VerifyError, match="Document: expected 2, found 1"):
        result.raise_for_mismatch()


def test_contract_transient_error_is_retried_by_the_driver():
    with boltstub("hello.script", "transient_retry.script", "goodbye.script") as (uri, _):
        with Neo4jSink(settings(uri), STUB_PASSWORD, **FAST) as sink:
            summary = sink.write(documents_only(("d1", "notes/a'b.txt")))
    assert summary.created == {"Document": 1} and summary.batches == 1


def test_contract_resume_after_a_crash(tmp_path):
    tables = documents_only(("d2", "two.txt"), ("d1", "one.txt"))
    checkpoint = BatchCheckpoint(tmp_path / "neo4j.batches")
    port = free_port()

    class Crash(Exception):
        pass

    def crash_after_first(progress):
        if progress.done == 1:
            raise Crash("killed")

    with boltstub("hello.script", "resume_first.script", "goodbye.script", port=port) as (uri, _):
        with Neo4jSink(settings(uri, batch_size=1), STUB_PASSWORD, **FAST) as sink:
            with pytest.raises(Crash):
                sink.write(tables, on_batch=crash_after_first, checkpoint=checkpoint)
    assert len(BatchCheckpoint(checkpoint.path)) == 1

    progress = []
    with boltstub("hello.script", "resume_second.script", "goodbye.script", port=port) as (uri, _):
        with Neo4jSink(settings(uri, batch_size=1), STUB_PASSWORD, **FAST) as sink:
            summary = sink.write(tables, on_batch=progress.append, checkpoint=BatchCheckpoint(checkpoint.path))
    assert summary.resumed_batches == 1 and summary.batches == 1
    assert [(p.batch, p.skipped) for p in progress] == [(1, True), (2, False)]


def test_contract_full_run_async_does_not_block_the_event_loop(tmp_path):
    """write_graph_async: connect, constraints, write, verify, close, all in one worker thread."""
    import threading

    checkpoint = BatchCheckpoint(tmp_path / "neo4j.batches")
    batch_threads: set[int] = set()

    async def main(uri):
        ticks = 0

        async def heartbeat():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.005)
                ticks += 1

        beat = asyncio.create_task(heartbeat())
        await asyncio.sleep(0)
        summary = await write_graph_async(
            settings(uri, batch_size=2), STUB_PASSWORD, make_tables(), checkpoint=checkpoint,
            on_batch=lambda p: batch_threads.add(threading.get_ident()), **FAST,
        )
        beat.cancel()
        return summary, ticks, threading.get_ident()

    scripts = ("hello.script", "constraints.script", "write.script", "verify.script", "goodbye.script")
    with boltstub(*scripts) as (uri, _):
        summary, ticks, loop_thread = asyncio.run(main(uri))
    assert summary.verification is not None and summary.verification.ok
    assert summary.as_dict()["verification"]["ok"] is True and summary.batches == 10
    assert not checkpoint.path.exists()  # cleared after a verified write
    assert batch_threads and loop_thread not in batch_threads  # the driver ran in a worker thread
    assert ticks >= 1  # and the loop kept turning meanwhile


# ---------------------------------------------------------------------------------------------
# Failures without a server
# ---------------------------------------------------------------------------------------------


def test_connection_refused_fails_fast_naming_the_uri():
    port = free_port()  # bound and released: nothing listens there
    secret = "pw-never-shown-4c1d"
    t0 = time.monotonic()
    with pytest.raises(Neo4jSinkError) as info:
        write_graph(settings(f"bolt://127.0.0.1:{port}"), secret, make_tables(), **FAST)
    assert time.monotonic() - t0 < 5
    err = info.value
    assert isinstance(err, GraphragFlowError) and err.setting == "neo4j.uri"
    assert "neo4j.uri" in str(err) and f"127.0.0.1:{port}" in str(err)
    assert secret not in str(err) and secret not in repr(err)
    assert err.__suppress_context__ and secret not in str(err.__context__)


def test_wrong_password_fails_naming_the_setting_via_the_boltstub_command(tmp_path):
    """The real `boltstub PORT SCRIPT` command, answering the HELLO with Unauthorized."""
    exe = Path(sys.executable).with_name("boltstub")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "boltkit.server"]
    port = free_port()
    proc = subprocess.Popen([*cmd, "-v", str(port), str(SCRIPTS / "auth_failure.script")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 10
        for line in proc.stdout:  # wait until it listens (a probe connection would end the stub)
            if "Listening" in line or time.monotonic() > deadline:
                break
        secret = "wrong-password-7f3a"
        with pytest.raises(Neo4jSinkError) as info:
            write_graph(settings(f"bolt://127.0.0.1:{port}"), secret, make_tables(), **FAST)
        out, _ = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = info.value
    assert err.setting == "neo4j.password"
    assert "neo4j.password" in str(err) and "Unauthorized" in str(err)
    assert secret not in str(err) and secret not in repr(err)
    assert proc.returncode == 0, out  # the stub saw exactly the scripted HELLO


def test_a_user_without_write_rights_is_named_not_its_password(tmp_path):
    """Neo4j's Forbidden (credentials accepted, privilege missing) names neo4j.user, not the password."""
    checkpoint = BatchCheckpoint(tmp_path / "neo4j.batches")
    with boltstub("hello.script", "forbidden_write.script", "goodbye.script") as (uri, _):
        with Neo4jSink(settings(uri), STUB_PASSWORD, **FAST) as sink, pytest.raises(Neo4jSinkError) as info:
            sink.write(documents_only(("d1", "notes/a'b.txt")), checkpoint=checkpoint)
    err = info.value
    assert err.setting == "neo4j.user", err
    assert "accepted neo4j.user='neo4j' but does not allow it" in str(err)
    assert "upsert Document batch 1/1" in str(err) and "Neo.ClientError.Security.Forbidden" in str(err)
    assert "refused the credentials" not in str(err) and STUB_PASSWORD not in str(err)
    assert len(BatchCheckpoint(checkpoint.path)) == 0  # the refused batch is not recorded as committed


def test_missing_password_says_how_to_set_it():
    with boltstub("auth_none.script") as (uri, _):
        with Neo4jSink(settings(uri), None, **FAST) as sink, pytest.raises(Neo4jSinkError) as info:
            sink.verify_connectivity()
    assert info.value.setting == "neo4j.password"
    assert "GRAPHRAG_FLOW_NEO4J__PASSWORD" in str(info.value)


def test_unset_uri_and_bad_uri_are_named():
    with pytest.raises(Neo4jSinkError, match="neo4j.uri is not set"):
        Neo4jSink(Neo4jSettings(), "x")
    for bad in ("http://user:pw-in-uri@localhost:7474", "localhost:7687", "bolt://user:pw-in-uri@[::1"):
        # settings refuse a URI the driver cannot use ...
        if not bad.startswith("bolt://"):
            with pytest.raises(SettingsError, match="neo4j.uri") as refused:
                with_env_settings(GRAPHRAG_FLOW_NEO4J__URI=bad)
            assert "pw-in-uri" not in str(refused.value)
        # ... and the sink names the setting for any that gets past them
        with pytest.raises(Neo4jSinkError, match="neo4j.uri") as info:
            Neo4jSink(Neo4jSettings.model_construct(**(settings("bolt://x").model_dump() | {"uri": bad})), "x")
        assert "pw-in-uri" not in str(info.value) and info.value.setting == "neo4j.uri"


def with_env_settings(**env: str):
    import tempfile
    from unittest import mock

    from graphrag_flow.config import load_settings

    with tempfile.TemporaryDirectory() as root, mock.patch.dict(os.environ, env):
        return load_settings(Path(root))


def test_password_is_not_in_reprs_or_logs(caplog):
    secret = "pw-never-logged-91ab"
    caplog.set_level(logging.DEBUG)
    with boltstub("hello.script", "transient_retry.script", "goodbye.script") as (uri, _):
        sink = Neo4jSink(settings(uri), STUB_PASSWORD, **FAST)
        assert STUB_PASSWORD not in repr(sink) and STUB_PASSWORD not in str(vars(sink))
        sink.write(documents_only(("d1", "notes/a'b.txt")))
        sink.close()
    logged = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("boltkit"))
    assert "HELLO" in logged  # the driver's own debug log was captured...
    assert STUB_PASSWORD not in logged  # ...without the password
    s = settings("bolt://x:7687", password=secret)
    assert secret not in repr(s) and secret not in str(s.model_dump())
