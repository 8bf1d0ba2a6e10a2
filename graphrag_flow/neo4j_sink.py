"""Write the knowledge graph to Neo4j: the sink's domain code (no Prefect imports).

Model (labels, relationship types and property names are constants of this module, never
taken from data; every value travels as a query parameter):

    (:Document {id, title})
    (:Chunk {id, text, n_tokens})-[:PART_OF]->(:Document)
    (:Entity {id, title, type, description, degree})
    (:Entity)-[:RELATED {id, description, weight}]->(:Entity)
    (:Entity)-[:MENTIONED_IN]->(:Chunk)
    (:Community {id, level, title, summary, rating})
    (:Entity)-[:IN_COMMUNITY]->(:Community)
    (:Community)-[:PARENT]->(:Community)

Every statement is `UNWIND $rows AS row MERGE ...` (or a batched `... WHERE n.id IN $ids
DETACH DELETE n`), run one batch per managed transaction (`session.execute_write`), so the
driver retries transient errors and leader switches. MERGE on ids makes a re-run leave the
same graph; a `BatchCheckpoint` records each committed batch so a run that crashed skips the
batches it had already committed (a batch is the unit of resume).

Threading: the sink uses the *sync* driver, and `write_graph_async` runs the whole write in one
worker thread (`asyncio.to_thread`). The work is strictly sequential (nodes before the edges
that need them, one batch after another), so the async driver would buy no concurrency; the
sync driver is not bound to an event loop (Prefect runs submitted tasks on their own loops),
and the same code path is what the boltstub contract tests and the live test exercise.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import SecretStr

from graphrag_flow.config import NEO4J_SCHEMES, Neo4jSettings
from graphrag_flow.errors import Neo4jSinkError, VerifyError
from graphrag_flow.urls import safe_url, scrub_url

log = logging.getLogger(__name__)

#: The Bolt user agent the sink announces (fixed, so scripted servers can match the HELLO).
USER_AGENT = "graphrag-flow"

#: Table names accepted in `tables` and `deletes`.
TABLES = ("documents", "text_units", "entities", "relationships", "communities", "community_reports")

# ---------------------------------------------------------------------------------------------
# The Cypher layer: constants only. Labels, types and property names are written out here;
# data reaches the server only through $rows / $ids.
# ---------------------------------------------------------------------------------------------

#: Uniqueness constraints on every id, created once (IF NOT EXISTS). Relationship uniqueness
#: constraints need Neo4j 5.7+; on an older server that one is skipped with a warning.
CONSTRAINTS: tuple[str, ...] = (
    "CREATE CONSTRAINT document_id IF NOT EXISTS FOR (n:Document) REQUIRE n.id IS UNIQUE",
    "CREATE CONSTRAINT chunk_id IF NOT EXISTS FOR (n:Chunk) REQUIRE n.id IS UNIQUE",
    "CREATE CONSTRAINT entity_id IF NOT EXISTS FOR (n:Entity) REQUIRE n.id IS UNIQUE",
    "CREATE CONSTRAINT community_id IF NOT EXISTS FOR (n:Community) REQUIRE n.id IS UNIQUE",
    "CREATE CONSTRAINT related_id IF NOT EXISTS FOR ()-[r:RELATED]-() REQUIRE r.id IS UNIQUE",
)
_OPTIONAL_CONSTRAINTS = frozenset({CONSTRAINTS[-1]})

NODE_LABELS = ("Document", "Chunk", "Entity", "Community")
REL_TYPES = ("PART_OF", "RELATED", "MENTIONED_IN", "IN_COMMUNITY", "PARENT")

_UPSERT: dict[str, str] = {
    "Document": "UNWIND $rows AS row MERGE (n:Document {id: row.id}) SET n.title = row.title",
    "Chunk": "UNWIND $rows AS row MERGE (n:Chunk {id: row.id}) SET n.text = row.text, n.n_tokens = row.n_tokens",
    "Entity": (
        "UNWIND $rows AS row MERGE (n:Entity {id: row.id}) "
        "SET n.title = row.title, n.type = row.type, n.description = row.description, n.degree = row.degree"
    ),
    "Community": (
        "UNWIND $rows AS row MERGE (n:Community {id: row.id}) "
        "SET n.level = row.level, n.title = row.title, n.summary = row.summary, n.rating = row.rating"
    ),
    "PART_OF": (
        "UNWIND $rows AS row MATCH (s:Chunk {id: row.source}) MATCH (t:Document {id: row.target}) "
        "MERGE (s)-[:PART_OF]->(t)"
    ),
    "RELATED": (
        "UNWIND $rows AS row MATCH (s:Entity {id: row.source}) MATCH (t:Entity {id: row.target}) "
        "MERGE (s)-[r:RELATED {id: row.id}]->(t) SET r.description = row.description, r.weight = row.weight"
    ),
    "MENTIONED_IN": (
        "UNWIND $rows AS row MATCH (s:Entity {id: row.source}) MATCH (t:Chunk {id: row.target}) "
        "MERGE (s)-[:MENTIONED_IN]->(t)"
    ),
    "IN_COMMUNITY": (
        "UNWIND $rows AS row MATCH (s:Entity {id: row.source}) MATCH (t:Community {id: row.target}) "
        "MERGE (s)-[:IN_COMMUNITY]->(t)"
    ),
    "PARENT": (
        "UNWIND $rows AS row MATCH (s:Community {id: row.source}) MATCH (t:Community {id: row.target}) "
        "MERGE (s)-[:PARENT]->(t)"
    ),
}

_DELETE: dict[str, str] = {
    "RELATED": "MATCH ()-[r:RELATED]->() WHERE r.id IN $ids DELETE r",
    "Community": "MATCH (n:Community) WHERE n.id IN $ids DETACH DELETE n",
    "Entity": "MATCH (n:Entity) WHERE n.id IN $ids DETACH DELETE n",
    "Chunk": "MATCH (n:Chunk) WHERE n.id IN $ids DETACH DELETE n",
    "Document": "MATCH (n:Document) WHERE n.id IN $ids DETACH DELETE n",
}

#: deletes-table name -> the label/type whose ids it lists (in the order deletes run).
DELETE_TARGETS: dict[str, str] = {
    "relationships": "RELATED",
    "communities": "Community",
    "entities": "Entity",
    "text_units": "Chunk",
    "documents": "Document",
}

COUNT_QUERIES: dict[str, str] = {
    **{label: f"MATCH (n:{label}) RETURN count(n) AS count" for label in NODE_LABELS},
    **{rel: f"MATCH ()-[r:{rel}]->() RETURN count(r) AS count" for rel in REL_TYPES},
}


@dataclass(frozen=True)
class Statement:
    """One parameterized Cypher statement and the parameter batches it runs with.

    `target` is the label or relationship type; `op` is "upsert" or "delete"; each batch is sent
    as `{param: batch}` in its own managed write transaction.
    """

    target: str
    op: str
    cypher: str
    param: str
    batches: tuple[tuple[Any, ...], ...]

    @property
    def name(self) -> str:
        return f"{self.op} {self.target}"

    @property
    def rows(self) -> int:
        return sum(len(b) for b in self.batches)


@dataclass(frozen=True)
class GraphRows:
    """The graph the tables describe, as parameter rows per label/type (sorted, deduplicated)."""

    rows: dict[str, list[dict[str, Any]]]
    skipped_edges: dict[str, int]

    def counts(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.rows.items()}


def _py(value: Any) -> Any:
    """A pandas/numpy cell as a plain Python value the driver packs (NaN/NA -> None)."""
    if value is None:
        return None
    if hasattr(value, "item") and not isinstance(value, (str, bytes)) and getattr(value, "ndim", 0) == 0:
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if value is pd.NA or value is pd.NaT:
        return None
    return value


def _ids(value: Any) -> list[str]:
    """A list cell (list, tuple, numpy array or None) as a list of str."""
    if value is None:
        return []
    if isinstance(value, float) and math.isnan(value):
        return []
    return [str(v) for v in list(value)]


def _frame(tables: Mapping[str, pd.DataFrame], name: str, columns: Iterable[str]) -> pd.DataFrame:
    if name not in tables or tables[name] is None:
        raise ValueError(f"neo4j sink: table '{name}' is missing (pass an empty frame if it has no rows)")
    frame = tables[name]
    missing = [c for c in columns if c not in frame.columns]
    if missing and len(frame):
        raise ValueError(f"neo4j sink: table '{name}' lacks column(s) {missing}")
    if missing:  # an empty frame without columns
        frame = pd.DataFrame({c: [] for c in columns})
    return frame


def graph_rows(tables: Mapping[str, pd.DataFrame]) -> GraphRows:
    """Map the output tables to node and edge rows (pure; the expected graph for verify)."""
    docs = _frame(tables, "documents", ["id", "title"])
    units = _frame(tables, "text_units", ["id", "text", "n_tokens", "document_id"])
    ents = _frame(tables, "entities", ["id", "title", "type", "description", "degree", "text_unit_ids"])
    rels = _frame(tables, "relationships", ["id", "source", "target", "description", "weight"])
    comms = _frame(tables, "communities", ["id", "community", "level", "parent", "title", "entity_ids"])
    reports = _frame(tables, "community_reports", ["community", "summary", "rank"])

    def node_rows(frame: pd.DataFrame, props: dict[str, str]) -> list[dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for rec in frame.to_dict("records"):
            row = {"id": str(rec["id"])}
            row.update({prop: _py(rec[col]) for prop, col in props.items()})
            out[row["id"]] = row
        return [out[k] for k in sorted(out)]

    rows: dict[str, list[dict[str, Any]]] = {}
    rows["Document"] = node_rows(docs, {"title": "title"})
    rows["Chunk"] = node_rows(units, {"text": "text", "n_tokens": "n_tokens"})
    rows["Entity"] = node_rows(
        ents, {"title": "title", "type": "type", "description": "description", "degree": "degree"}
    )
    report_by_number = {int(_py(r["community"])): r for r in reports.to_dict("records")}
    comm_rows: dict[str, dict[str, Any]] = {}
    for rec in comms.to_dict("records"):
        report = report_by_number.get(int(_py(rec["community"])), {})
        cid = str(rec["id"])
        comm_rows[cid] = {
            "id": cid,
            "level": _py(rec["level"]),
            "title": _py(rec["title"]),
            "summary": _py(report.get("summary")),
            "rating": _py(report.get("rank")),
        }
    rows["Community"] = [comm_rows[k] for k in sorted(comm_rows)]

    doc_ids = {r["id"] for r in rows["Document"]}
    chunk_ids = {r["id"] for r in rows["Chunk"]}
    entity_ids = {r["id"] for r in rows["Entity"]}
    comm_ids = set(comm_rows)
    skipped: dict[str, int] = {t: 0 for t in REL_TYPES}

    def edges(kind: str, pairs: Iterable[tuple[str, str]], sources: set[str], targets: set[str]) -> None:
        kept = set()
        for s, t in pairs:
            if s in sources and t in targets:
                kept.add((s, t))
            else:
                skipped[kind] += 1
        rows[kind] = [{"source": s, "target": t} for s, t in sorted(kept)]

    edges(
        "PART_OF",
        ((str(r["id"]), str(r["document_id"])) for r in units.to_dict("records")),
        chunk_ids,
        doc_ids,
    )
    title_to_id = {str(r["title"]): str(r["id"]) for r in ents.to_dict("records")}
    related: dict[str, dict[str, Any]] = {}
    for rec in rels.to_dict("records"):
        s, t = title_to_id.get(str(rec["source"])), title_to_id.get(str(rec["target"]))
        if s is None or t is None:
            skipped["RELATED"] += 1
            continue
        rid = str(rec["id"])
        related[rid] = {
            "id": rid,
            "source": s,
            "target": t,
            "description": _py(rec["description"]),
            "weight": _py(rec["weight"]),
        }
    rows["RELATED"] = [related[k] for k in sorted(related)]
    edges(
        "MENTIONED_IN",
        ((str(r["id"]), tu) for r in ents.to_dict("records") for tu in _ids(r["text_unit_ids"])),
        entity_ids,
        chunk_ids,
    )
    edges(
        "IN_COMMUNITY",
        ((e, str(r["id"])) for r in comms.to_dict("records") for e in _ids(r["entity_ids"])),
        entity_ids,
        comm_ids,
    )
    number_to_id = {int(_py(r["community"])): str(r["id"]) for r in comms.to_dict("records")}
    parents = []
    for rec in comms.to_dict("records"):
        parent = _py(rec["parent"])
        if parent is None or int(parent) < 0:
            continue
        parents.append((str(rec["id"]), number_to_id.get(int(parent), f"<community {int(parent)}>")))
    edges("PARENT", parents, comm_ids, comm_ids)
    return GraphRows(rows=rows, skipped_edges={k: v for k, v in skipped.items() if v})


def _batched(items: list[Any], size: int) -> tuple[tuple[Any, ...], ...]:
    return tuple(tuple(items[i : i + size]) for i in range(0, len(items), size))


def build_statements(
    tables: Mapping[str, pd.DataFrame] | None,
    *,
    deletes: Mapping[str, Iterable[str]] | None = None,
    batch_size: int = 1000,
) -> list[Statement]:
    """All write statements, in the order they run: deletes, then nodes, then edges (pure).

    `deletes` maps a table name (documents, text_units, entities, relationships, communities) to
    ids that left the index; an id that is still in `tables` is never deleted. Empty statements
    are left out.
    """
    if batch_size <= 0:
        raise ValueError("neo4j.batch_size must be > 0")
    graph = graph_rows(tables) if tables is not None else None
    live: dict[str, set[str]] = {}
    if graph is not None:
        live = {k: {r["id"] for r in v} for k, v in graph.rows.items() if k in _DELETE}
    statements: list[Statement] = []
    unknown = set(deletes or {}) - set(DELETE_TARGETS)
    if unknown:
        raise ValueError(f"neo4j sink: cannot delete from {sorted(unknown)}; use {sorted(DELETE_TARGETS)}")
    for table, target in DELETE_TARGETS.items():
        ids = sorted({str(i) for i in (deletes or {}).get(table, ())} - live.get(target, set()))
        if ids:
            statements.append(Statement(target, "delete", _DELETE[target], "ids", _batched(ids, batch_size)))
    if graph is not None:
        for target in (*NODE_LABELS, *REL_TYPES):
            rows = graph.rows[target]
            if rows:
                statements.append(Statement(target, "upsert", _UPSERT[target], "rows", _batched(rows, batch_size)))
    return statements


def compute_deletes(old: Mapping[str, pd.DataFrame], new: Mapping[str, pd.DataFrame]) -> dict[str, list[str]]:
    """Ids present in the previous run's tables and absent from this run's (for `deletes`)."""
    out: dict[str, list[str]] = {}
    for table in DELETE_TARGETS:
        before = set(old[table]["id"].astype(str)) if table in old and old[table] is not None else set()
        after = set(new[table]["id"].astype(str)) if table in new and new[table] is not None else set()
        gone = sorted(before - after)
        if gone:
            out[table] = gone
    return out


# ---------------------------------------------------------------------------------------------
# Progress, checkpoints, summaries
# ---------------------------------------------------------------------------------------------


def batch_key(scope: str, statement: Statement, index: int) -> str:
    """Content address of one batch: the same statement and rows at the same target -> same key."""
    payload = json.dumps(
        [scope, statement.cypher, list(statement.batches[index])], sort_keys=True, separators=(",", ":"), default=str
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class BatchCheckpoint:
    """Keys of committed batches, one per line in a file (appended and fsynced per batch).

    A write that crashed skips, on the next run, every batch whose key is here: the batch is
    the unit of resume. Clear it after a completed, verified write.
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self._done: set[str] = set()
        self._torn = False
        if self.path.exists():
            # A torn last line (crash mid-append) is not 64 hex digits: ignored, so that batch is redone.
            text = self.path.read_text(encoding="utf-8")
            self._done = {line.strip() for line in text.splitlines() if len(line.strip()) == 64}
            self._torn = bool(text) and not text.endswith("\n")
        self._lock = threading.Lock()

    def __contains__(self, key: str) -> bool:
        return key in self._done

    def __len__(self) -> int:
        return len(self._done)

    def add(self, key: str) -> None:
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(("\n" if self._torn else "") + key + "\n")
                self._torn = False
                f.flush()
                os.fsync(f.fileno())
            self._done.add(key)

    def clear(self) -> None:
        with self._lock:
            self._done.clear()
            self.path.unlink(missing_ok=True)


@dataclass(frozen=True)
class BatchProgress:
    """Passed to `on_batch` after each batch (committed or skipped as already done)."""

    statement: str  # e.g. "upsert Entity"
    batch: int  # 1-based within the statement
    batches: int
    rows: int
    done: int  # batches finished so far in this write (all statements)
    total: int
    skipped: bool  # True when the checkpoint said it was committed by an earlier run


@dataclass
class Verification:
    """Per label/type: the count the tables call for and the count the database holds."""

    expected: dict[str, int]
    actual: dict[str, int]

    @property
    def mismatches(self) -> dict[str, tuple[int, int]]:
        return {k: (v, self.actual.get(k, 0)) for k, v in self.expected.items() if self.actual.get(k, 0) != v}

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def describe(self) -> str:
        return "; ".join(f"{k}: expected {e}, found {a}" for k, (e, a) in self.mismatches.items())

    def raise_for_mismatch(self) -> None:
        if not self.ok:
            raise VerifyError(f"neo4j graph does not match the output tables: {self.describe()}")


@dataclass
class WriteSummary:
    """What one write did, per label (nodes) and relationship type."""

    written: dict[str, int] = field(default_factory=dict)  # rows merged (sent) per label/type
    created: dict[str, int] = field(default_factory=dict)  # nodes/relationships the server created
    deleted: dict[str, int] = field(default_factory=dict)  # nodes/relationships the server deleted
    skipped_edges: dict[str, int] = field(default_factory=dict)  # edges whose endpoint is not in the tables
    batches: int = 0  # batches committed by this write
    resumed_batches: int = 0  # batches skipped: committed by an earlier, interrupted write
    verification: Verification | None = None

    @property
    def nodes(self) -> dict[str, int]:
        return {k: v for k, v in self.written.items() if k in NODE_LABELS}

    @property
    def relationships(self) -> dict[str, int]:
        return {k: v for k, v in self.written.items() if k in REL_TYPES}

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "written": dict(self.written),
            "created": dict(self.created),
            "deleted": dict(self.deleted),
            "skipped_edges": dict(self.skipped_edges),
            "batches": self.batches,
            "resumed_batches": self.resumed_batches,
        }
        if self.verification is not None:
            out["verification"] = {
                "expected": dict(self.verification.expected),
                "actual": dict(self.verification.actual),
                "ok": self.verification.ok,
            }
        return out


# ---------------------------------------------------------------------------------------------
# The sink
# ---------------------------------------------------------------------------------------------


def safe_uri(uri: str) -> str:
    """The URI as it may be shown (logs, summaries, errors): without any user:password@ part."""
    return safe_url(uri)


class Neo4jSink:
    """Owns one driver for one run. Sync API: call it from a worker thread (see write_graph_async)."""

    def __init__(
        self,
        settings: Neo4jSettings,
        password: str | None,
        *,
        connection_timeout_s: float = 5.0,
        max_retry_time_s: float = 30.0,
    ):
        import neo4j  # imported here so the package imports without the optional driver

        if not settings.uri:
            raise Neo4jSinkError("neo4j.uri is not set: the Neo4j sink is off", setting="neo4j.uri")
        self._raw_uri = settings.uri
        self._uri = safe_url(settings.uri)
        self._user = settings.user
        self._database = settings.database
        self._batch_size = settings.batch_size
        self._secret = SecretStr(password or "")  # kept only to scrub it from error texts
        self._bookmarks: Any = None
        auth = neo4j.basic_auth(settings.user, password) if password is not None else None
        scheme = settings.uri.partition("://")[0].lower()
        if scheme not in NEO4J_SCHEMES:
            raise Neo4jSinkError(
                f"neo4j.uri '{self._uri}' must start with one of {', '.join(s + '://' for s in NEO4J_SCHEMES)}",
                setting="neo4j.uri",
            )
        try:
            self._driver = neo4j.GraphDatabase.driver(
                settings.uri,
                auth=auth,
                user_agent=USER_AGENT,
                connection_timeout=connection_timeout_s,
                max_transaction_retry_time=max_retry_time_s,
            )
        except Exception as exc:  # ConfigurationError, ValueError on a malformed URI
            raise Neo4jSinkError(
                f"neo4j.uri '{self._uri}' is not a usable Neo4j URI "
                f"(bolt://, bolt+s://, neo4j://, neo4j+s://): {self._scrub(exc)}",
                setting="neo4j.uri",
            ) from None

    def __repr__(self) -> str:
        return f"Neo4jSink(uri={self._uri!r}, user={self._user!r}, database={self._database!r})"

    def __enter__(self) -> Neo4jSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- errors -----------------------------------------------------------------------------

    def _scrub(self, exc: BaseException | str) -> str:
        """A driver error as one line: `code: message` for server errors; never the password."""
        code, message = getattr(exc, "code", None), getattr(exc, "message", None)
        text = f"{code}: {message}" if code and message else (str(exc) or type(exc).__name__)
        text = " ".join(text.split())
        text = scrub_url(text, self._raw_uri)
        secret = self._secret.get_secret_value()
        if secret:
            text = text.replace(secret, "***")
        return text

    def _translate(self, exc: BaseException, doing: str) -> Neo4jSinkError:
        """A driver error as a Neo4jSinkError naming the setting to fix (never the password)."""
        from neo4j import exceptions as nx

        where = f"Neo4j at neo4j.uri={self._uri}"
        code = getattr(exc, "code", None) or ""
        if code == "Neo.ClientError.Security.Forbidden":
            # The credentials were accepted; the user lacks a privilege (or, on some servers, the
            # named database does not exist): a new password would not help.
            database = f"database neo4j.database={self._database!r}" if self._database else "its default database"
            also = ", or check that neo4j.database names a database of that server" if self._database else ""
            return Neo4jSinkError(
                f"{where} accepted neo4j.user={self._user!r} but does not allow it in {database} while {doing}: "
                f"grant that user write access there, or set neo4j.user and neo4j.password to a user "
                f"who has it{also} ({self._scrub(exc)})",
                setting="neo4j.user",
            )
        if isinstance(exc, nx.AuthError) or code.startswith("Neo.ClientError.Security."):
            hint = (
                "no password was given: set neo4j.password, GRAPHRAG_FLOW_NEO4J__PASSWORD or neo4j.password_secret"
                if not self._secret.get_secret_value()
                else "check neo4j.user and neo4j.password (or neo4j.password_secret)"
            )
            return Neo4jSinkError(
                f"{where} refused the credentials of neo4j.user={self._user!r} while {doing}: {hint} "
                f"({self._scrub(exc)})",
                setting="neo4j.password",
            )
        if (getattr(exc, "code", None) or "") == "Neo.ClientError.Database.DatabaseNotFound":
            return Neo4jSinkError(
                f"{where} has no database neo4j.database={self._database!r} ({self._scrub(exc)})",
                setting="neo4j.database",
            )
        if isinstance(exc, (nx.ServiceUnavailable, nx.SessionExpired, OSError)):
            return Neo4jSinkError(
                f"cannot reach {where} while {doing}: {self._scrub(exc)} "
                "(is the server running, and is neo4j.uri right?)",
                setting="neo4j.uri",
            )
        return Neo4jSinkError(f"{where} failed while {doing}: {self._scrub(exc)}")

    # -- sessions ---------------------------------------------------------------------------

    def _session(self, write: bool = True) -> Any:
        import neo4j

        kwargs: dict[str, Any] = {"default_access_mode": neo4j.WRITE_ACCESS if write else neo4j.READ_ACCESS}
        if self._database:
            kwargs["database"] = self._database
        if self._bookmarks is not None:
            kwargs["bookmarks"] = self._bookmarks
        return self._driver.session(**kwargs)

    def _remember(self, session: Any) -> None:
        try:
            self._bookmarks = session.last_bookmarks()
        except Exception:  # pragma: no cover - bookmarks are an optimisation for clusters
            pass

    # -- public API -------------------------------------------------------------------------

    def verify_connectivity(self) -> None:
        """Connect and authenticate once; fail fast with a message naming the setting."""
        try:
            self._driver.verify_connectivity()
        except Exception as exc:
            raise self._translate(exc, "connecting") from None

    def ensure_constraints(self) -> None:
        """Create the uniqueness constraints on every id (IF NOT EXISTS: a no-op when present)."""
        from neo4j import exceptions as nx

        with self._session() as session:
            for cypher in CONSTRAINTS:
                try:
                    session.execute_write(_run_consume, cypher, None)
                except nx.ClientError as exc:
                    if cypher in _OPTIONAL_CONSTRAINTS and not isinstance(exc, nx.AuthError):
                        log.warning(
                            "neo4j: relationship uniqueness constraint not created (needs Neo4j 5.7+): %s",
                            self._scrub(exc),
                        )
                        continue
                    raise self._translate(exc, "creating constraints") from None
                except Exception as exc:
                    raise self._translate(exc, "creating constraints") from None
            self._remember(session)

    def write(
        self,
        tables: Mapping[str, pd.DataFrame] | None,
        deletes: Mapping[str, Iterable[str]] | None = None,
        *,
        on_batch: Callable[[BatchProgress], None] | None = None,
        checkpoint: BatchCheckpoint | None = None,
        cancel: threading.Event | None = None,
    ) -> WriteSummary:
        """Delete the ids that left the index, then MERGE every node and edge, batch by batch.

        Each batch is one managed write transaction. With a `checkpoint`, committed batches are
        recorded, and batches an earlier run recorded are skipped. `cancel` stops the write
        between batches (what is committed stays committed, and recorded).
        """
        statements = build_statements(tables, deletes=deletes, batch_size=self._batch_size)
        summary = WriteSummary()
        if tables is not None:
            summary.skipped_edges = graph_rows(tables).skipped_edges
            for label, n in summary.skipped_edges.items():
                log.warning("neo4j: %d %s edge(s) skipped: an endpoint is not in the tables", n, label)
        total = sum(len(s.batches) for s in statements)
        scope = f"{self._uri}|{self._database or ''}"
        done = 0
        with self._session() as session:
            for st in statements:
                if st.op == "upsert":
                    summary.written[st.target] = summary.written.get(st.target, 0) + st.rows
                for i, batch in enumerate(st.batches):
                    if cancel is not None and cancel.is_set():
                        raise Neo4jSinkError(f"neo4j write cancelled before {st.name} batch {i + 1}/{len(st.batches)}")
                    key = batch_key(scope, st, i)
                    skipped = checkpoint is not None and key in checkpoint
                    if not skipped:
                        try:
                            counters = session.execute_write(_run_consume, st.cypher, {st.param: list(batch)})
                        except Neo4jSinkError:
                            raise
                        except Exception as exc:
                            raise self._translate(
                                exc, f"writing {st.name} batch {i + 1}/{len(st.batches)} ({len(batch)} rows)"
                            ) from None
                        self._remember(session)
                        _tally(summary, st, counters)
                        summary.batches += 1
                        if checkpoint is not None:
                            checkpoint.add(key)
                    else:
                        summary.resumed_batches += 1
                    done += 1
                    log.debug("neo4j: %s batch %d/%d (%d rows)%s", st.name, i + 1, len(st.batches), len(batch),
                              " already committed" if skipped else "")
                    if on_batch is not None:
                        on_batch(BatchProgress(st.name, i + 1, len(st.batches), len(batch), done, total, skipped))
        log.info(
            "neo4j: wrote %s; deleted %s; %d batch(es), %d resumed",
            summary.written, summary.deleted, summary.batches, summary.resumed_batches,
        )
        return summary

    def count(self) -> dict[str, int]:
        """Nodes per label and relationships per type in the database."""
        def read(tx: Any) -> dict[str, int]:
            return {name: tx.run(cypher).single()["count"] for name, cypher in COUNT_QUERIES.items()}

        try:
            with self._session(write=False) as session:
                return session.execute_read(read)
        except Exception as exc:
            raise self._translate(exc, "counting nodes and relationships") from None

    def verify(self, tables: Mapping[str, pd.DataFrame]) -> Verification:
        """Compare the database's counts per label/type with what the tables call for."""
        return Verification(expected=graph_rows(tables).counts(), actual=self.count())

    def close(self) -> None:
        self._driver.close()


def _run_consume(tx: Any, cypher: str, params: dict[str, Any] | None) -> Any:
    """The managed-transaction function: may run more than once (the driver retries it)."""
    return tx.run(cypher, params or {}).consume().counters


def _tally(summary: WriteSummary, st: Statement, counters: Any) -> None:
    if st.op == "upsert":
        n = counters.nodes_created if st.target in NODE_LABELS else counters.relationships_created
        summary.created[st.target] = summary.created.get(st.target, 0) + n
    else:
        n = counters.relationships_deleted if st.target in REL_TYPES else counters.nodes_deleted
        summary.deleted[st.target] = summary.deleted.get(st.target, 0) + n


def write_graph(
    settings: Neo4jSettings,
    password: str | None,
    tables: Mapping[str, pd.DataFrame],
    deletes: Mapping[str, Iterable[str]] | None = None,
    *,
    on_batch: Callable[[BatchProgress], None] | None = None,
    checkpoint: BatchCheckpoint | None = None,
    verify: bool = True,
    cancel: threading.Event | None = None,
    **sink_options: Any,
) -> WriteSummary:
    """The whole sink stage with one driver: connect, constraints, write, verify, close.

    Raises Neo4jSinkError (connection, credentials, a batch) or VerifyError (counts differ).
    The checkpoint is cleared once the write is verified.
    """
    with Neo4jSink(settings, password, **sink_options) as sink:
        sink.verify_connectivity()
        sink.ensure_constraints()
        summary = sink.write(tables, deletes, on_batch=on_batch, checkpoint=checkpoint, cancel=cancel)
        if verify:
            summary.verification = sink.verify(tables)
            summary.verification.raise_for_mismatch()
        if checkpoint is not None:
            checkpoint.clear()
        return summary


async def write_graph_async(
    settings: Neo4jSettings,
    password: str | None,
    tables: Mapping[str, pd.DataFrame],
    deletes: Mapping[str, Iterable[str]] | None = None,
    **kwargs: Any,
) -> WriteSummary:
    """`write_graph` in a worker thread: the event loop never waits on Neo4j.

    If the awaiting task is cancelled, the thread stops after the batch in flight.
    """
    cancel = threading.Event()
    try:
        return await asyncio.to_thread(write_graph, settings, password, tables, deletes, cancel=cancel, **kwargs)
    except asyncio.CancelledError:
        cancel.set()
        raise


# ---------------------------------------------------------------------------------------------
# Incremental state and the run summary (used by the flow's neo4j-sink stage)
# ---------------------------------------------------------------------------------------------


def live_ids(tables: Mapping[str, pd.DataFrame]) -> dict[str, list[str]]:
    """The ids per deletable table (documents, text_units, entities, relationships, communities)."""
    return {
        table: sorted({str(i) for i in tables[table]["id"]}) if table in tables and tables[table] is not None else []
        for table in DELETE_TARGETS
    }


class SinkState:
    """The ids the last *successful* sink wrote to Neo4j, in a JSON file.

    The next run deletes what left the index since then (`deletes`). It is saved only after a
    verified write, so a failed or interrupted sink leaves it alone and the next run still
    applies those deletes (they are idempotent, and checkpointed per batch like the writes).
    It is not keyed on the URI: deleting absent ids in another database is a harmless no-op.
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)

    def load(self) -> dict[str, list[str]]:
        if not self.path.exists():
            return {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise Neo4jSinkError(
                f"neo4j sink state {self.path} is unreadable ({exc}); delete it, then remove by hand any "
                "nodes whose ids left the index since the last sink run"
            ) from None
        return {str(k): [str(i) for i in v] for k, v in data.get("ids", {}).items()}

    def deletes(self, tables: Mapping[str, pd.DataFrame]) -> dict[str, list[str]]:
        """Ids the last successful sink wrote that the current tables no longer hold."""
        before, now = self.load(), live_ids(tables)
        out = {}
        for table in DELETE_TARGETS:
            gone = sorted(set(before.get(table, ())) - set(now[table]))
            if gone:
                out[table] = gone
        return out

    def save(self, tables: Mapping[str, pd.DataFrame]) -> None:
        from graphrag_flow.storage.atomic import write_json

        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_json({"ids": live_ids(tables)}, self.path)


#: Where each label/type comes from in the parquet tables (for the run summary).
PARQUET_SOURCES: dict[str, str] = {
    "Document": "documents",
    "Chunk": "text_units",
    "Entity": "entities",
    "Community": "communities",
    "PART_OF": "text_units.document_id",
    "RELATED": "relationships",
    "MENTIONED_IN": "entities.text_unit_ids",
    "IN_COMMUNITY": "communities.entity_ids",
    "PARENT": "communities.parent",
}


def summary_rows(tables: Mapping[str, pd.DataFrame], summary: WriteSummary) -> list[dict[str, Any]]:
    """One row per label/type: parquet rows, graph rows expected, written/created/deleted, in Neo4j.

    `parquet_rows` counts the rows (or id pairs) in the tables; `expected` leaves out edges whose
    endpoint is missing (`skipped`); `in_neo4j` is what the database holds after the write.
    """
    graph = graph_rows(tables)
    expected = graph.counts()
    actual = summary.verification.actual if summary.verification is not None else {}
    rows = []
    for name in (*NODE_LABELS, *REL_TYPES):
        skipped = graph.skipped_edges.get(name, 0)
        in_neo4j = actual.get(name)
        rows.append({
            "kind": "node" if name in NODE_LABELS else "relationship",
            "name": name,
            "parquet": PARQUET_SOURCES[name],
            "parquet_rows": expected[name] + skipped,
            "skipped": skipped,
            "expected": expected[name],
            "written": summary.written.get(name, 0),
            "created": summary.created.get(name, 0),
            "deleted": summary.deleted.get(name, 0),
            "in_neo4j": in_neo4j,
            "match": in_neo4j == expected[name] if in_neo4j is not None else None,
        })
    return rows
