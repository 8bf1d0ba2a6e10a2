"""One coordinator per output URL: a lock object with a lease (`<output>/_lock.json`).

The project lock (project_lock.py) is a file lock on the coordinator's own disk: it cannot see a
second coordinator on another machine indexing into the same `s3://…` output. This lock lives on
the store beside the outputs. It is created with a conditional write (S3 `If-None-Match: *`:
exactly one of two coordinators creates it), renewed every third of `storage.lock_lease_s` with
`If-Match` on its ETag (a renewal fails if another coordinator took it over), and removed at
the end. A lock object nobody renewed for a lease is taken over the same way, conditionally; so
is one whose holder is this project on this machine (the local project lock, held now, proves
that run is dead: a kill -9 needs no wait for the lease).

Before the pointer to a new generation is written, the lock is renewed once more: a coordinator
that lost it (paused past its lease while another took over) stops there, publishing nothing.
On stores without conditional writes (fsspec's local `file://`, and other backends s3fs is not),
creating is check-then-write and a takeover is not conditional: the lock then only guards
against a second coordinator that starts while the first is visibly alive.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from graphrag_flow.errors import GraphragFlowError, ProjectBusyError
from graphrag_flow.storage.store import Store

LOCK_OBJECT = "_lock.json"


class LeaseLostError(GraphragFlowError):
    """Another coordinator took the output URL's lock over while this run held it."""


class LeaseLock:
    """The lock object of `store` (an output URL), held by this process while in `with`."""

    def __init__(self, store: Store, root: Path, run_id: str, lease_s: float):
        self.store = store
        self.key = store.path(LOCK_OBJECT)
        self.lease_s = lease_s
        self.holder = {"host": socket.gethostname(), "root": str(root), "pid": os.getpid(), "flow_run_id": run_id}
        self._etag: str | None = None
        self._lost = False
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None
        self._conditional = store.protocol in ("s3", "s3a")

    def _record(self) -> bytes:
        now = time.time()
        return json.dumps({**self.holder, "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                           "renewed_at": now, "expires_at": now + self.lease_s}).encode()

    def _put(self, create: bool = False, if_match: str | None = None) -> None:
        fs = self.store.fs()
        extra: dict[str, Any] = {"IfMatch": if_match} if (if_match and self._conditional) else {}
        out = fs.pipe_file(self.key, self._record(), mode="create" if create else "overwrite", **extra)
        etag = out.get("ETag") if isinstance(out, dict) else None
        self._etag = etag or self._current()[1]

    def _current(self) -> tuple[dict | None, str | None]:
        fs = self.store.fs()
        try:
            info = fs.info(self.key, refresh=True) if self._conditional else fs.info(self.key)
            data = json.loads(fs.cat_file(self.key))
        except FileNotFoundError:
            return None, None
        except ValueError:
            return {}, None
        return data, info.get("ETag")

    def acquire(self) -> dict | None:
        """Take the lock, or raise ProjectBusyError naming its live holder. Returns the record of
        a dead holder it took over (None when there was none)."""
        try:
            self._put(create=True)
            return None
        except FileExistsError:
            pass
        held, etag = self._current()
        if held is None:  # released meanwhile
            self._put(create=True)
            return None
        ours = held.get("host") == self.holder["host"] and held.get("root") == self.holder["root"]
        if not ours and float(held.get("expires_at", 0)) > time.time():
            run = f", flow run {held['flow_run_id']}" if held.get("flow_run_id") else ""
            raise ProjectBusyError(
                f"another coordinator is indexing into {self.store.shown} (pid {held.get('pid')} on {held.get('host')}, "
                f"project {held.get('root')}{run}; its lease ends in {float(held['expires_at']) - time.time():.0f} s "
                f"unless renewed): one run per output URL (setting output.dir)")
        try:
            self._put(if_match=etag)
        except (FileExistsError, OSError) as exc:
            raise ProjectBusyError(f"another coordinator took the lock of {self.store.shown} at the same moment "
                                   f"({type(exc).__name__}); one run per output URL (setting output.dir)") from None
        return held

    def renew(self) -> None:
        """Extend the lease; LeaseLostError if another coordinator holds the lock now."""
        if self._lost:
            raise LeaseLostError(f"the lock of {self.store.shown} was taken over by another coordinator")
        try:
            self._put(if_match=self._etag)
        except OSError as exc:  # a failed If-Match is an OSError (errno EINVAL) from s3fs
            held, _ = self._current()
            if held is not None and {k: held.get(k) for k in self.holder} == self.holder:
                raise  # still ours: the store is unreachable, not taken over
            self._lost = True
            raise LeaseLostError(f"the lock of {self.store.shown} was taken over by another coordinator "
                                 f"({type(exc).__name__}); this run publishes nothing") from None

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.lease_s / 3):
            try:
                self.renew()
            except LeaseLostError:
                return
            except Exception:  # unreachable for a moment: the next renewal tries again within the lease
                continue

    def release(self) -> None:
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(timeout=10)
        if self._lost:
            return
        held, etag = self._current()
        if held is not None and {k: held.get(k) for k in self.holder} == self.holder:
            try:
                self.store.fs().rm_file(self.key)
            except FileNotFoundError:
                pass

    def __enter__(self) -> "LeaseLock":
        self.acquire()
        self._renewer = threading.Thread(target=self._renew_loop, name="output-lock-lease", daemon=True)
        self._renewer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
