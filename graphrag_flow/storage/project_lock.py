"""One index run per project at a time: a lock file under cache/ (ProjectPaths.lock), held for the
whole run.

Two runs of one project (a nightly run still going when the next night's starts, or an
`index-now` beside it) would write the same parquet files, vector tables and manifest at
once. The second run stops at its start instead, naming the run that holds the lock. The
lock is an OS file lock (flock): a killed run leaves none behind, so resuming needs no
clean-up. On storage shared between machines it holds only if that filesystem honours flock
(local disks and NFSv4 do); see deployments/README.md.
"""

from __future__ import annotations

import os
import socket
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from filelock import FileLock, Timeout

from graphrag_flow.errors import ProjectBusyError
from graphrag_flow.storage.atomic import read_json, write_json
from graphrag_flow.storage.paths import ProjectPaths


@contextmanager
def project_lock(paths: ProjectPaths, run_id: str = "") -> Iterator[dict | None]:
    """Hold the project's lock for the block; ProjectBusyError at once if another run holds it.

    Yields the last holder's record (pid, host, flow_run_id, started_at; None when there is
    none): that run is over, and if Prefect still shows it Running it was killed
    (flows/dead_runs.py marks it Crashed)."""
    paths.cache.mkdir(parents=True, exist_ok=True)
    lock = FileLock(paths.lock, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise ProjectBusyError(
            f"another index run of {paths.root} is in progress ({_holder(paths.lock_holder)}): wait for it to "
            "finish, or stop it (a stopped or killed run leaves no lock behind, and the next run resumes its work)"
        ) from None
    try:
        try:
            previous = read_json(paths.lock_holder)
        except (OSError, ValueError):
            previous = None
        write_json(
            {"pid": os.getpid(), "host": socket.gethostname(), "flow_run_id": run_id,
             "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds")},
            paths.lock_holder,
        )
        yield previous if isinstance(previous, dict) else None
    finally:
        lock.release()


def _holder(holder_file: Path) -> str:
    try:
        info = read_json(holder_file)
    except (OSError, ValueError):
        return "holder unknown"
    run = f", flow run {info['flow_run_id']}" if info.get("flow_run_id") else ""
    return f"pid {info.get('pid')} on {info.get('host')}, started {info.get('started_at')}{run}"
