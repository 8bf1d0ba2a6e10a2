"""The served output folder, the one a run builds beside it, and the one-step switch between them.

    <root>/output            the last completed run's outputs: what `graphrag query` and LanceDB users read
    <root>/output.next       the run in progress builds here; its LanceDB tables are the run's checkpoint
    <root>/output.previous   the generation the last switch replaced, kept until the next switch

Nothing under `output/` is ever written while it is served. A run builds a whole generation in
`output.next` (an incremental run starts from a copy of `output/` whose LanceDB data files are
hard links, see `seed_staging`), verifies it there, and `switch_in` exchanges the two folders in
one step (Linux `renameat2(RENAME_EXCHANGE)`), so a reader resolving `output/` at any moment
finds the old generation or the new one, whole, and never no folder. The generation replaced is
kept as `output.previous` until the next switch, so a reader that opened `output/` before the
switch (a directory handle, a query under way) finishes reading the generation it started on.

A kill at any point leaves `output/` the old or the new complete generation; `recover` (at the
start of the next run, under the project lock) puts back what a kill between the two renames of
the fallback switch left, and `prepare_staging` reuses an unfinished `output.next` only if it was
seeded from the generation served now (its `SEED_FILE` names that generation's manifest).
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from graphrag_flow.storage.atomic import write_json
from graphrag_flow.storage.faults import kill_point
from graphrag_flow.storage.outputs import LANCEDB_DIR, MANIFEST
from graphrag_flow.storage.paths import OUTPUT_DIR, STAGING_DIR, ProjectPaths
#: In the staging folder: which served generation it was seeded from (written once seeding is done).
SEED_FILE = ".seeded-from.json"
#: Lance folders whose files are written once under a fresh name and never changed (data files,
#: deletion files, index files, transaction files): the staging copy hard-links them. Lance writes
#: every file through object_store's LocalFileSystem, which writes a new file and renames it into
#: place, so even a rewritten name gets a new inode; the version manifests and
#: `_versions/latest_version_hint.json` are still copied (small, and the one family of names a
#: table rewrites). tests/test_atomic_output.py checks that the served table is unchanged, file
#: by file, after its staged copy was merged into, deleted from, compacted and cleaned up.
IMMUTABLE_LANCE_DIRS = frozenset({"data", "_deletions", "_indices", "_transactions"})

#: linux/fs.h: exchange the two names atomically (both must exist).
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


@dataclass(frozen=True)
class SeedStats:
    """What seeding the staging folder from the served one cost."""

    linked_files: int = 0
    linked_bytes: int = 0
    copied_files: int = 0
    copied_bytes: int = 0
    seconds: float = 0.0
    #: Hard links failed (another filesystem, or one without them): every file was copied.
    link_fallback: bool = False
    reused: bool = False
    full: bool = False

    def line(self) -> str:
        if self.full:
            return f"--full: {STAGING_DIR} starts empty; {OUTPUT_DIR}/ is served until the rebuild verifies"
        if self.reused:
            return f"resuming the unfinished run's {STAGING_DIR} (seeded from the generation served now)"
        how = " (hard links not possible here: copied)" if self.link_fallback else ""
        return (f"{STAGING_DIR} seeded from {OUTPUT_DIR}/ in {self.seconds:.2f} s: {self.linked_files} file(s) "
                f"linked ({self.linked_bytes / 1e6:.1f} MB), {self.copied_files} copied "
                f"({self.copied_bytes / 1e6:.1f} MB){how}")


@dataclass(frozen=True)
class OutputFolders(ProjectPaths):
    """A project's paths (a symlinked `output/` included), and the steps that move a generation
    between its three output folders."""

    @property
    def live(self) -> Path:
        """The served generation (ProjectPaths.output)."""
        return self.output

    def live_identity(self) -> str | None:
        """sha256 of the served manifest (run id and finish time included): which generation is served."""
        try:
            return hashlib.sha256((self.live / MANIFEST).read_bytes()).hexdigest()
        except FileNotFoundError:
            return None

    def recover(self) -> None:
        """Undo what a kill between the fallback switch's two renames left: no `output/`, the
        old generation as `output.previous`. (A kill anywhere else leaves `output/` whole.)"""
        if not self.live.exists() and self.previous.exists():
            self.previous.rename(self.live)
            _fsync_dir(self.live.parent)

    def prepare_staging(self, full: bool) -> SeedStats:
        """The folder this run builds in: empty for `--full`; else the unfinished run's, if it
        was seeded from the generation served now, or a fresh copy of `output/`."""
        mark = {"live_manifest_sha256": self.live_identity(), "full": full}
        if not full and _read_mark(self.staging) == mark:
            return SeedStats(reused=True)
        if self.staging.exists():
            shutil.rmtree(self.staging)
        self.staging.mkdir(parents=True)
        stats = SeedStats(full=True) if full else seed_staging(self.live, self.staging)
        _write_mark(self.staging, mark)  # last: a staging folder without it is discarded
        return stats

    def switch_in(self) -> str:
        """Serve the staging folder as `output/`; the generation it replaces becomes
        `output.previous` (and the one before that is removed). Returns how: "exchange" (one
        atomic step), "rename" (no `output/` yet) or "two renames" (no RENAME_EXCHANGE here)."""
        kill_point("switch:start")
        if self.previous.exists():
            shutil.rmtree(self.previous)
        kill_point("switch:previous-removed")
        if not self.live.exists():
            self.staging.rename(self.live)
            how = "rename"
        elif _exchange(self.staging, self.live):
            kill_point("switch:exchanged")
            self.staging.rename(self.previous)
            how = "exchange"
        else:
            self.live.rename(self.previous)
            kill_point("switch:between-renames")
            self.staging.rename(self.live)
            how = "two renames"
        _fsync_dir(self.live.parent)
        kill_point("switch:done")
        (self.live / SEED_FILE).unlink(missing_ok=True)
        return how


def seed_staging(live: Path, staging: Path) -> SeedStats:
    """Copy `live/lancedb` into `staging/lancedb`: Lance's immutable files as hard links, the rest
    as copies. Parquet tables and the manifest are not seeded: the write stage writes them all."""
    start = time.monotonic()
    linked = linked_bytes = copied = copied_bytes = 0
    fallback = False
    source = live / LANCEDB_DIR
    if source.is_dir():
        for directory, _dirs, files in os.walk(source):
            rel = Path(directory).relative_to(source)
            target_dir = staging / LANCEDB_DIR / rel
            target_dir.mkdir(parents=True, exist_ok=True)
            immutable = len(rel.parts) >= 2 and rel.parts[1] in IMMUTABLE_LANCE_DIRS  # <table>.lance/<dir>/...
            for name in files:
                src, dst = Path(directory) / name, target_dir / name
                size = src.stat().st_size
                if immutable and not fallback:
                    try:
                        os.link(src, dst)
                        linked, linked_bytes = linked + 1, linked_bytes + size
                        continue
                    except OSError as exc:
                        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EACCES):
                            raise
                        fallback = True
                shutil.copy2(src, dst)
                copied, copied_bytes = copied + 1, copied_bytes + size
    return SeedStats(linked, linked_bytes, copied, copied_bytes, round(time.monotonic() - start, 3), fallback)


def _read_mark(staging: Path) -> dict | None:
    try:
        return json.loads((staging / SEED_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _write_mark(staging: Path, mark: dict) -> None:
    write_json(mark, staging / SEED_FILE)


def _exchange(a: Path, b: Path) -> bool:
    """Swap the two names in one step (Linux renameat2 RENAME_EXCHANGE); False where the OS or
    the filesystem cannot, and the caller falls back to two renames."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):  # glibc < 2.28, musl without it
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(err, f"renameat2(RENAME_EXCHANGE) of {a} and {b}: {os.strerror(err)}")


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
