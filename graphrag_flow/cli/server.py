"""The local Prefect server `index` records its runs on, started once and reused.

Without a Prefect API configured (PREFECT_API_URL, or a profile that sets it), Prefect runs a
flow on a temporary server it starts and stops around the run: 8-16 s of a 2-core machine per
run, most of an unchanged re-index, and the UI is gone when the run ends. So the first `index`
starts `prefect server start` in the background, in its own session, under the user's
PREFECT_HOME (the same database the temporary server used), and says so; later runs find it
through `$PREFECT_HOME/graphrag-flow-server.json` and reuse it. The UI is then at its address
(http://127.0.0.1:4200 when that port is free) between runs too. `graphrag-flow server stop`
stops it; GRAPHRAG_FLOW_PREFECT_SERVER=temporary keeps Prefect's temporary server instead.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator

from rich.console import Console

#: The port Prefect's own `prefect server start` uses, so the UI is where Prefect's docs say.
DEFAULT_PORT = 4200
MODE_ENV = "GRAPHRAG_FLOW_PREFECT_SERVER"
STATE_FILE = "graphrag-flow-server.json"
LOG_FILE = "graphrag-flow-server.log"
START_TIMEOUT_S = 180.0


def prefect_home() -> Path:
    from prefect.settings import get_current_settings

    return Path(get_current_settings().home).expanduser()


@contextlib.contextmanager
def prefect_api(console: Console) -> Iterator[str | None]:
    """Within: Prefect's settings point at the API runs are recorded on; yields its URL, or None
    when Prefect starts its temporary server (GRAPHRAG_FLOW_PREFECT_SERVER=temporary)."""
    from prefect.settings import PREFECT_API_URL, get_current_settings, temporary_settings

    configured = get_current_settings().api.url
    if configured:
        yield configured
        return
    if os.environ.get(MODE_ENV, "") == "temporary":
        console.print(f"[dim]{MODE_ENV}=temporary: Prefect starts a temporary server for this run[/]", highlight=False)
        yield None
        return
    url = ensure_server(prefect_home(), console)
    with temporary_settings(updates={PREFECT_API_URL: url}):
        yield url


def ensure_server(home: Path, console: Console) -> str:
    """The URL of the background server of `home`, started when none answers."""
    home.mkdir(parents=True, exist_ok=True)
    with _locked(home):  # two runs starting at once start one server
        state = read_state(home)
        if state and _healthy(state["url"]):
            console.print(f"[dim]Prefect server: {_ui(state['url'])} (the UI; `graphrag-flow server stop` "
                          "stops it)[/]", highlight=False)
            return state["url"]
        port = DEFAULT_PORT if _port_free(DEFAULT_PORT) else _free_port()
        url = f"http://127.0.0.1:{port}/api"
        log = home / LOG_FILE
        console.print(f"starting a Prefect server in the background, for this run and the next ones: UI at "
                      f"{_ui(url)} (`graphrag-flow server stop` stops it; its log: {log})", highlight=False)
        # Logs streamed out: `prefect deployment run --watch` then shows a run's log lines, not
        # only its events (both settings are off in a plain `prefect server start`).
        env = dict(os.environ, PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false",
                   PREFECT_SERVER_LOGS_STREAM_OUT_ENABLED="true", PREFECT_SERVER_LOGS_STREAM_PUBLISHING_ENABLED="true")
        env.pop("PREFECT_API_URL", None)
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=home,
                start_new_session=True,  # not stopped by the Ctrl-C meant for the run
            )
        with console.status("waiting for the Prefect server to answer (once)"):
            deadline = time.monotonic() + START_TIMEOUT_S
            while not _healthy(url):
                if proc.poll() is not None or time.monotonic() > deadline:
                    _stop_group(proc.pid)
                    raise RuntimeError(f"the Prefect server did not start (exit code {proc.poll()}); see {log}, "
                                       f"or set {MODE_ENV}=temporary")
                time.sleep(0.25)
        _write_state(home, {"pid": proc.pid, "url": url})
        return url


def stop_server(home: Path) -> str:
    """Stop the background server of `home`; says what it did."""
    with _locked(home):
        state = read_state(home)
        (home / STATE_FILE).unlink(missing_ok=True)
        if not state:
            return f"no graphrag-flow Prefect server recorded in {home}"
        if not _is_prefect_server(state["pid"]) or not _stop_group(state["pid"]):
            return f"the Prefect server (pid {state['pid']}) was not running"
        return f"stopped the Prefect server at {_ui(state['url'])} (pid {state['pid']})"


def read_state(home: Path) -> dict | None:
    try:
        state = json.loads((home / STATE_FILE).read_text())
        return state if isinstance(state, dict) and {"pid", "url"} <= set(state) else None
    except (OSError, ValueError):
        return None


def _write_state(home: Path, state: dict) -> None:
    tmp = home / f".{STATE_FILE}.tmp"
    tmp.write_text(json.dumps(state))
    tmp.replace(home / STATE_FILE)


@contextlib.contextmanager
def _locked(home: Path) -> Iterator[None]:
    with open(home / f"{STATE_FILE}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _is_prefect_server(pid: int) -> bool:
    """Whether `pid` is still the server started (a pid of a server long gone may be reused)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"prefect" in cmdline and b"server" in cmdline


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def _stop_group(pid: int) -> bool:
    """SIGTERM the server's session (uvicorn and its workers), then SIGKILL what is left after 10 s."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return False
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return True
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    return True


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ui(url: str) -> str:
    return url.removesuffix("/api")
