"""Index the same corpus with two checkouts of graphrag-flow and compare their outputs; print JSON.

For a change that must not change behaviour (a refactor): every parquet table must be
byte-identical, every LanceDB vector table must hold the same rows (id, vector bytes,
content_sha256, model: Lance files themselves carry random names), and the manifests must
agree but for the run's id and time and the code's hash. Runs on the offline default and against the fake
OpenAI server (no faults: its answers are a function of the request), on peps-mini.

    .venv/bin/python benchmarks/compare_outputs.py --old REV [--new REV] [--mode offline fake]

`--old`/`--new` are git revisions, checked out into temporary worktrees (default `--new`: this
working tree, uncommitted changes included). Both run with this checkout's virtual
environment, so a revision that needs other dependencies cannot be compared this way. The
input files are copied once and shared, so their dates (`creation_date`) agree. Exit code 1
when anything differs.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import lancedb
import pyarrow.parquet as pq
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from corpus import PEPS_MINI  # noqa: E402  (benchmarks/corpus.py)
from tests.fake_openai import reset_remote, start_fake_server_process, stop_fake_server_process  # noqa: E402

RUNNER = r"""
import asyncio, sys
from flows.index import index
asyncio.run(index(root=sys.argv[1]))
"""
#: Manifest keys that name the run, where it ran or the code rather than what it made (a refactor changes the
#: code's hash by definition).
RUN_KEYS = ("run_id", "finished_at", "code_version", "execution")


def checkout(rev: str | None, work: Path, name: str) -> Path:
    """The source tree of `rev` (None: this working tree as it is)."""
    if rev is None:
        return REPO
    target = work / name
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "-q", str(target), rev], check=True)
    return target


def run_index(source: Path, root: Path) -> None:
    """The flow from `source`'s code: the current directory comes first on sys.path."""
    proc = subprocess.run([sys.executable, "-c", RUNNER, str(root)], cwd=source, capture_output=True, text=True,
                          env={**_env(), "PYTHONPATH": str(source)})
    if proc.returncode != 0:
        raise SystemExit(f"index with {source} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")


def _env() -> dict[str, str]:
    import os

    return dict(os.environ, PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_LOGGING_LEVEL="WARNING",
                PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="120")


def project(base: Path, input_dir: Path, llm: dict) -> Path:
    base.mkdir(parents=True)
    (base / "settings.yaml").write_text(yaml.safe_dump({"input": {"dir": str(input_dir)}, "llm": llm}))
    return base


def compare(old: Path, new: Path) -> dict[str, str]:
    """Per output: "identical" or what differs."""
    result: dict[str, str] = {}
    for path in sorted(p.name for p in old.glob("*.parquet")) + sorted(
        p.name for p in new.glob("*.parquet") if not (old / p.name).exists()
    ):
        a, b = old / path, new / path
        if not a.exists() or not b.exists():
            result[path] = "missing in " + ("old" if not a.exists() else "new")
        elif a.read_bytes() == b.read_bytes():
            result[path] = "identical"
        else:
            ta, tb = pq.read_table(a), pq.read_table(b)
            result[path] = "same rows, different bytes" if ta.equals(tb) else (
                f"differs: {ta.num_rows} vs {tb.num_rows} rows; columns {ta.column_names == tb.column_names}")
    db_old, db_new = lancedb.connect(str(old / "lancedb")), lancedb.connect(str(new / "lancedb"))
    names = sorted(set(db_old.list_tables().tables) | set(db_new.list_tables().tables))
    for name in names:
        try:
            ta = db_old.open_table(name).to_arrow().sort_by("id")
            tb = db_new.open_table(name).to_arrow().sort_by("id")
        except Exception as exc:  # a table on one side only
            result[f"lancedb/{name}"] = f"missing: {exc}"
            continue
        result[f"lancedb/{name}"] = "identical" if ta.equals(tb) else f"differs: {ta.num_rows} vs {tb.num_rows} rows"
    ma, mb = (json.loads((d / "_manifest.json").read_text()) for d in (old, new))
    for key in RUN_KEYS:
        ma.pop(key, None)
        mb.pop(key, None)
    diff = sorted(k for k in set(ma) | set(mb) if ma.get(k) != mb.get(k))
    result["_manifest.json"] = "identical" if not diff else f"differs in {diff}"
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old", required=True, help="git revision of the reference")
    parser.add_argument("--new", default=None, help="git revision (default: this working tree)")
    parser.add_argument("--mode", nargs="+", default=["offline", "fake"], choices=["offline", "fake"])
    parser.add_argument("--corpus", type=Path, default=PEPS_MINI)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="graphrag-flow-compare-"))
    fake = None
    report: dict[str, dict[str, str]] = {}
    try:
        sources = {"old": checkout(args.old, work, "old"), "new": checkout(args.new, work, "new")}
        input_dir = work / "input"
        shutil.copytree(args.corpus, input_dir, copy_function=shutil.copy2)  # one copy: the same mtimes
        for mode in args.mode:
            llm: dict = {"provider": "offline"}
            if mode == "fake":
                fake, url = start_fake_server_process(latency_s=0.01, capacity=64, seed=7)
                llm = {"provider": "openai", "api_base": url, "api_key": "sk-compare", "max_concurrency": 16}
            roots = {}
            for side, source in sources.items():
                if fake is not None:
                    reset_remote(url)
                roots[side] = project(work / f"{mode}-{side}", input_dir, llm)
                run_index(source, roots[side])
            report[mode] = compare(roots["old"] / "output", roots["new"] / "output")
            if fake is not None:
                stop_fake_server_process(fake)
                fake = None
    finally:
        if fake is not None:
            stop_fake_server_process(fake)
        for side in ("old", "new"):
            if (work / side).exists():
                subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(work / side)], check=False)
        shutil.rmtree(work, ignore_errors=True)
    same = all(v == "identical" for outputs in report.values() for v in outputs.values())
    print(json.dumps({"old": args.old, "new": args.new or "working tree", "identical": same, "outputs": report},
                     indent=2))
    raise SystemExit(0 if same else 1)


if __name__ == "__main__":
    main()
