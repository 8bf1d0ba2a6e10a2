"""Index the 688-PEP corpus (benchmarks/corpora/peps.tar.gz, ~3.1 M tokens) on the offline default; print JSON.

Reports seconds per stage (from the run summary), rows per table, wall time and the peak
RSS of the indexing process and its children. Goal: <= 5 min and < 3 GB on 2 cores.
With `--dask-workers N` the batch work runs on a LocalCluster of N worker processes
(`execution.task_runner: dask`); the JSON then says how many batches each worker ran and, per
batch task, how many batches there were and their seconds of work (the basis of an estimate
for a bigger cluster: docs/performance.md).

    .venv/bin/python benchmarks/offline_index.py [--corpus DIR] [--keep DIR] [--dask-workers N]
                                                 [--offline-model minilm-static|minilm]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import corpus  # noqa: E402  (benchmarks/corpus.py: this script's folder is on sys.path)
from tests.processes import run_flow_subprocess  # noqa: E402


RUNNER = r"""
import asyncio, json, sys
from flows.index import index
summary = asyncio.run(index(root=sys.argv[1]))
print("SUMMARY " + json.dumps({"stages": summary["stages"], "tables": summary["tables"],
                              "vector_tables": summary["vector_tables"], "execution": summary["execution"]}))
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--corpus", type=Path, default=None, help="default: the 688 PEPs, unpacked on first use")
    parser.add_argument("--keep", type=Path, help="project folder to use and keep (default: a temp dir)")
    parser.add_argument("--dask-workers", type=int, default=0,
                        help="run the batch work on a LocalCluster of N worker processes (default: local)")
    parser.add_argument("--offline-model", choices=("minilm-static", "minilm"), default="minilm-static",
                        help="embed.offline_model (default: the static model, the settings' default)")
    args = parser.parse_args()
    args.corpus = args.corpus or corpus.peps()
    root = args.keep or Path(tempfile.mkdtemp(prefix="graphrag-flow-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    settings: dict = {"input": {"dir": str(args.corpus.resolve())}, "embed": {"offline_model": args.offline_model}}
    if args.dask_workers:
        settings["execution"] = {"task_runner": "dask", "dask_workers": args.dask_workers}
    (root / "settings.yaml").write_text(yaml.safe_dump(settings))
    summary, wall = run_flow_subprocess(RUNNER, root)
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    result = {
        "corpus": str(args.corpus),
        "offline_model": args.offline_model,
        "documents": summary["tables"]["documents"],
        "wall_seconds": round(wall, 1),
        "seconds_per_stage": {r["stage"]: r["seconds"] for r in summary["stages"]},
        "rows": summary["tables"],
        "vector_rows": {k: v["rows"] for k, v in summary["vector_tables"].items()},
        "peak_rss_mb": round(peak_kb / 1024, 1),
        "execution": summary["execution"],
        "goal": {"wall_seconds_max": 300, "peak_rss_mb_max": 3072},
        "within_goal": wall < 300 and peak_kb / 1024 < 3072,
    }
    print(json.dumps(result, indent=2))
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
