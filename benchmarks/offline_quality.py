"""How good is the offline graph? Index each corpus on the offline default, judge it, print JSON.

For each corpus (peps-mini, pride-and-prejudice, examples by default) the real CLI
(`graphrag-flow index`) runs in a subprocess on a fresh project folder whose settings.yaml
sets only `input.dir`, with a Prefect home of its own. The outputs are then judged by
benchmarks/quality_judge.py against tests/gold/<corpus>.yaml: gold concepts found (and the
missing ones), gold noise present, noise share on a seeded sample of entities judged by the
rules of tests/gold/noise_rules.yaml, single-entity communities (level 0 and all levels),
variant groups, titles led by a plain verb, the biggest community and the run's wall seconds.
Nothing here imports graphrag_flow: only the output parquet files are read.

    .venv/bin/python benchmarks/offline_quality.py [--corpus NAME ...] [--sample 200] [--seed 42]
                                                   [--keep DIR] [--no-index]

--keep DIR keeps the project folders in DIR/<corpus> (a second run then resumes them: its wall
seconds are those of an unchanged index); --no-index judges the outputs already in DIR again (a
new rule or gold file without re-indexing), with the wall seconds its indexing run recorded.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from quality_judge import GOALS, GOLD_DIR, REPO, load_gold, measure  # noqa: E402  (this folder is on sys.path)

#: corpus name -> its gold file (which names the corpus folder).
CORPORA = {
    "peps-mini": GOLD_DIR / "peps-mini.yaml",
    "pride-and-prejudice": GOLD_DIR / "pride-and-prejudice.yaml",
    "examples": GOLD_DIR / "examples.yaml",
}
SAMPLE_SIZE = 200
SEED = 42
#: In a kept project folder: when its outputs were made and how long that took.
RUN_RECORD = "offline_quality_run.json"


def cli() -> str:
    """The graphrag-flow executable of this interpreter's environment (else the one on PATH)."""
    beside = Path(sys.executable).with_name("graphrag-flow")
    found = str(beside) if beside.exists() else shutil.which("graphrag-flow")
    if not found:
        raise SystemExit("graphrag-flow is not installed: run ./dev setup and use .venv/bin/python")
    return found


def index(corpus: Path, root: Path, prefect_home: Path) -> float:
    """`graphrag-flow index --root root` on the offline default; its wall seconds. A failed run
    prints the end of its output and stops the benchmark with its exit code."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "settings.yaml").write_text(yaml.safe_dump({"input": {"dir": str(corpus.resolve())}}), encoding="utf-8")
    # The user's GRAPHRAG_FLOW_* would change the settings and PREFECT_* the server: neither applies.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GRAPHRAG_FLOW_", "PREFECT_"))}
    env |= {"PREFECT_HOME": str(prefect_home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_LOGGING_LEVEL": "WARNING", "COLUMNS": "160",
            # Prefect's temporary server for this one run, not a background server left running
            "GRAPHRAG_FLOW_PREFECT_SERVER": "temporary"}
    start = time.monotonic()
    proc = subprocess.run([cli(), "index", "--root", str(root)], cwd=root, env=env, capture_output=True, text=True)
    wall = time.monotonic() - start
    if proc.returncode != 0:
        print(proc.stdout[-3000:], proc.stderr[-5000:], file=sys.stderr)
        raise SystemExit(proc.returncode)
    return wall


def corpus_size(corpus: Path) -> dict:
    files = [p for p in corpus.rglob("*") if p.is_file()]
    return {"documents": len(files), "bytes": sum(p.stat().st_size for p in files)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", action="append", choices=sorted(CORPORA), help="repeatable; default: all")
    parser.add_argument("--sample", type=int, default=SAMPLE_SIZE, help="entities in the noise sample")
    parser.add_argument("--seed", type=int, default=SEED, help="seed of the noise sample")
    parser.add_argument("--keep", type=Path, help="keep the project folders in DIR/<corpus>")
    parser.add_argument("--no-index", action="store_true", help="judge the outputs already in --keep DIR")
    args = parser.parse_args()
    if args.no_index and not args.keep:
        parser.error("--no-index needs --keep DIR")
    work = args.keep or Path(tempfile.mkdtemp(prefix="graphrag-flow-quality-"))
    result: dict = {"date": datetime.date.today().isoformat(), "sample_size": args.sample, "seed": args.seed,
                    "goals": GOALS, "corpora": {}}
    try:
        for name in args.corpus or list(CORPORA):
            gold = load_gold(CORPORA[name])
            root = work / name
            if args.no_index:
                if not (root / "output" / "entities.parquet").exists():
                    raise SystemExit(f"{root}: no outputs to judge (run without --no-index first)")
                record = json.loads((root / RUN_RECORD).read_text()) if (root / RUN_RECORD).exists() else {}
            else:
                wall = index(gold.corpus, root, work / ".prefect-home")
                record = {"indexed": datetime.datetime.now().isoformat(timespec="seconds"),
                          "wall_seconds": round(wall, 1)}
                (root / RUN_RECORD).write_text(json.dumps(record))
            figures = {"corpus": str(gold.corpus.relative_to(REPO)), **corpus_size(gold.corpus),
                       "indexed": record.get("indexed"), "wall_seconds": record.get("wall_seconds")}
            figures |= measure(root / "output", gold, gold.rules, args.sample, args.seed)
            result["corpora"][name] = figures
            print(f"{name}: judged", file=sys.stderr)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
