"""What seeding a run's staging folder costs: an indexed project's output/ copied into a staging
folder beside it as an incremental run does (Lance's immutable files hard-linked, the rest
copied; graphrag_flow/storage/generations.py), against copying every file; prints JSON.

    .venv/bin/python benchmarks/seed_staging.py --root DIR [--repeat 3]

DIR is a project indexed before (e.g. `benchmarks/offline_index.py --keep DIR`); its output/ is
only read. Also reports what keeping the replaced generation (output.previous) costs on disk:
the files a run writes anew (parquet tables, manifest) rather than links.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from graphrag_flow.storage.generations import OUTPUT_DIR, seed_staging  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", type=Path, required=True, help="an indexed project folder (its output/ is read)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    live = args.root / OUTPUT_DIR
    if not (live / "lancedb").is_dir():
        raise SystemExit(f"{live}/lancedb does not exist: index the project first")
    target = args.root / "output.bench-seed"
    runs = []
    for _ in range(args.repeat):
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir()
        runs.append(seed_staging(live, target))
    shutil.rmtree(target, ignore_errors=True)
    start = time.monotonic()
    shutil.copytree(live / "lancedb", target / "lancedb")
    copy_all_s = time.monotonic() - start
    shutil.rmtree(target, ignore_errors=True)
    stats = runs[-1]
    rewritten = [p for p in live.iterdir() if p.is_file()]
    print(json.dumps({
        "root": str(args.root),
        "linked_files": stats.linked_files,
        "linked_mb": round(stats.linked_bytes / 1e6, 1),
        "copied_files": stats.copied_files,
        "copied_mb": round(stats.copied_bytes / 1e6, 2),
        "link_fallback": stats.link_fallback,
        "seed_seconds_median": round(statistics.median(r.seconds for r in runs), 3),
        "seed_seconds_all": [r.seconds for r in runs],
        "copy_every_file_seconds": round(copy_all_s, 2),
        "written_anew_each_run_mb": round(sum(p.stat().st_size for p in rewritten) / 1e6, 1),
    }, indent=2))


if __name__ == "__main__":
    main()
