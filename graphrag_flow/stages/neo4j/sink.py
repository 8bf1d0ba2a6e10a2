"""The sink itself: one driver per run, sync API in a worker thread, one managed transaction per
batch (`session.execute_write`, so the driver retries transient errors and leader switches).

The work is strictly sequential (nodes before the edges that need them, one batch after
another), so the async driver would buy no concurrency; the sync driver is not bound to an event
loop (Prefect runs submitted tasks on their own loops), and the same code path is what the
boltstub contract tests and the live tests exercise. Errors become Neo4jSinkError naming the
setting to fix; the password never appears in one.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import pandas as pd
from pydantic import SecretStr

from graphrag_flow.config import NEO4J_SCHEMES, Neo4jSettings
from graphrag_flow.errors import Neo4jSinkError
from graphrag_flow.stages.neo4j.checkpoint import (
    BatchCheckpoint, BatchProgress, Verification, WriteSummary, batch_key,
)
from graphrag_flow.stages.neo4j.cypher import (
    CONSTRAINTS, COUNT_QUERIES, NODE_LABELS, OPTIONAL_CONSTRAINTS, REL_TYPES, Statement,
)
from graphrag_flow.stages.neo4j.graph import build_statements, graph_rows
from graphrag_flow.urls import safe_url, scrub_url

log = logging.getLogger(__name__)

#: The Bolt user agent the sink announces (fixed, so scripted servers can match the HELLO).
USER_AGENT = "graphrag-flow"

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
                    if cypher in OPTIONAL_CONSTRAINTS and not isinstance(exc, nx.AuthError):
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

