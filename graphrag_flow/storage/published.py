"""Outputs on a store (`output.dir: s3://bucket/prefix`): each run's generation under a prefix of
its own, and a small pointer object, written last, that names the one served.

    <output>/_current.json                    the pointer: {"generation", "manifest_sha256", "run_id", ...}
    <output>/generations/<generation>/        one run's outputs: *.parquet, lancedb/, _manifest.json
    <output>/_lock.json                       the coordinator's lease (storage/lease.py)

An object store has no rename, let alone an atomic exchange of two folders, so the local switch
(generations.py) has no equivalent there. What a store does give is an atomic PUT of one object:
a reader that reads the pointer, then the generation it names, gets one whole generation. A new
generation is uploaded under a fresh prefix that nothing names (so no reader sees it half
written; its prefix is the "temporary key" of every file in it), read back from the store and
verified there (the parquet tables by pyarrow through fsspec, the vector tables by LanceDB's
own S3 client, checked against the tables), and only then named by the pointer. A kill or a
failure at any point before that PUT leaves the pointer, and so what readers get, at the last
good generation. The generation the pointer named before is kept until the next publish, for a
reader that read the pointer just before it changed; older ones are removed.

The run itself builds and checkpoints its generation on the coordinator's disk, as a local run
does (`output.next`, then `output/`): LanceDB's merges, the run's resume and the next run's seed
stay local, where the answer cache and the stage checkpoints are. The local `output/` is then
the coordinator's copy of the served generation; `hydrate` refreshes it from the store when it
is not (another machine ran last, or a publish was cut short).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pyarrow.parquet as pq

from graphrag_flow.errors import VerifyError
from graphrag_flow.storage.faults import kill_point
from graphrag_flow.storage.lease import LeaseLock
from graphrag_flow.storage.outputs import LANCEDB_DIR, MANIFEST, verify_outputs
from graphrag_flow.storage.store import Store
from graphrag_flow.tables import TABLE_NAMES

POINTER = "_current.json"
GENERATIONS = "generations"
#: Local bookkeeping files of a staging folder that are not part of a generation.
_NOT_PUBLISHED = frozenset({".seeded-from.json"})


@dataclass(frozen=True)
class Published:
    """Where a generation went and what uploading and verifying it cost."""

    generation: str
    url: str
    files: int
    bytes: int
    upload_s: float
    verify_s: float
    removed_generations: int

    def line(self) -> str:
        return (f"published to {self.url} ({self.files} files, {self.bytes / 1e6:.1f} MB, uploaded in "
                f"{self.upload_s:.1f} s, verified from the store in {self.verify_s:.1f} s); the pointer "
                f"{POINTER} names it")


def read_pointer(store: Store) -> dict | None:
    """The served generation's pointer, or None before the first publish."""
    try:
        return json.loads(store.fs().cat_file(store.path(POINTER)))
    except FileNotFoundError:
        return None


def generation(store: Store, name: str) -> Store:
    return store.child(GENERATIONS, name)


def _sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return None


def hydrate(store: Store, local_live: Path) -> str:
    """Make `local_live` (the coordinator's `output/`) a copy of the generation the store serves,
    unless it is one already; returns what was done, for the log."""
    pointer = read_pointer(store)
    if pointer is None:
        return f"no generation published in {store.shown} yet"
    if _sha256(local_live / MANIFEST) == pointer["manifest_sha256"]:
        return f"the local {local_live.name}/ is the generation {store.shown} serves ({pointer['generation']})"
    source = generation(store, pointer["generation"])
    fs = store.fs()
    root = source.path()
    fs.invalidate_cache(root)
    remote = sorted(p for p in fs.find(root, withdirs=False))
    tmp = local_live.with_name(local_live.name + ".from-store")
    if tmp.exists():
        shutil.rmtree(tmp)
    local = [str(tmp / p[len(root):].lstrip("/")) for p in remote]
    for path in local:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    fs.get(remote, local)
    if _sha256(tmp / MANIFEST) != pointer["manifest_sha256"]:
        raise VerifyError(f"the generation {source.shown} does not hold the manifest its pointer names")
    if local_live.exists():
        shutil.rmtree(local_live)
    tmp.rename(local_live)
    return f"copied the generation {store.shown} serves ({pointer['generation']}, {len(remote)} files) to {local_live}"


def publish(store: Store, local_dir: Path, run_id: str, lease: LeaseLock | None) -> Published:
    """Upload the verified generation in `local_dir` under a fresh prefix, verify it as read back
    from the store, renew the lease, then point `_current.json` at it (last)."""
    import time

    started = time.monotonic()
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    name = f"{stamp}-{(run_id.replace('-', '') or secrets.token_hex(4))[:8]}"
    target = generation(store, name)
    fs = store.fs()
    manifest_bytes = (local_dir / MANIFEST).read_bytes()
    files = sorted(p for p in local_dir.rglob("*") if p.is_file() and p.name not in _NOT_PUBLISHED and p.name != MANIFEST)
    rel = [p.relative_to(local_dir).as_posix() for p in files]
    fs.put([str(p) for p in files], [target.path(r) for r in rel])
    kill_point("publish:uploaded")
    fs.pipe_file(target.path(MANIFEST), manifest_bytes)  # last: a generation without it is not whole
    uploaded = time.monotonic()
    _verify_on_store(target, json.loads(manifest_bytes))
    verified = time.monotonic()
    kill_point("publish:verified")
    previous = read_pointer(store)
    if lease is not None:
        lease.renew()  # a coordinator that lost the lock must not name its generation
    pointer = {"generation": name, "manifest_sha256": hashlib.sha256(manifest_bytes).hexdigest(), "run_id": run_id,
               "url": target.uri(), "published_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    fs.pipe_file(store.path(POINTER), json.dumps(pointer, indent=2).encode() + b"\n")
    kill_point("publish:pointer")
    keep = {name} | ({previous["generation"]} if previous else set())
    removed = _remove_generations(store, keep)
    return Published(name, target.uri(), len(files) + 1, sum(p.stat().st_size for p in files) + len(manifest_bytes),
                     round(uploaded - started, 2), round(verified - uploaded, 2), removed)


def read_store_tables(target: Store) -> dict:
    """The generation's parquet tables, read from the store."""
    fs = target.fs()
    return {name: pq.read_table(target.path(f"{name}.parquet"), filesystem=fs).to_pandas() for name in TABLE_NAMES}


def _verify_on_store(target: Store, manifest: dict) -> None:
    """The uploaded generation checks out as readers will read it: every table's rows as the
    manifest counts them, every vector table (through LanceDB's own client) against the tables."""
    tables = read_store_tables(target)
    counts = {name: len(frame) for name, frame in tables.items()}
    if counts != manifest["tables"]:
        raise VerifyError(f"outputs in {target.shown} do not verify: row counts {counts} read back, "
                          f"{manifest['tables']} written")
    checks = verify_outputs(tables, target.uri(LANCEDB_DIR), manifest["embedding_model"], unit_length=True,
                            storage_options=target.lance_options())
    rows = {c.field: c.rows for c in checks}
    wanted = {f: v["rows"] for f, v in manifest["vector_tables"].items()}
    if rows != wanted:
        raise VerifyError(f"vector tables in {target.shown} do not verify: {rows} rows read back, {wanted} written")


def _remove_generations(store: Store, keep: set[str]) -> int:
    fs = store.fs()
    root = store.path(GENERATIONS)
    fs.invalidate_cache(root)
    try:
        names = {p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(root, detail=False)}
    except FileNotFoundError:
        return 0
    stale = sorted(names - keep)
    for name in stale:
        fs.rm(generation(store, name).path(), recursive=True)
    return len(stale)
