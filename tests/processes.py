"""Subprocess helpers shared by the tests and the benchmarks: a free port, killing a process
group, and a real `prefect server` on 127.0.0.1 (what a nightly deployment runs against)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL a process started with start_new_session=True and everything it started."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(30)


def start_prefect_server(env: dict[str, str], port: int, timeout_s: float = 120.0, log=subprocess.DEVNULL
                         ) -> tuple[subprocess.Popen, str]:
    """`prefect server start` in its own session (stop it with `kill_group`); returns it and its
    API URL once /api/health answers, or kills it and raises RuntimeError."""
    url = f"http://127.0.0.1:{port}/api"
    proc = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT if log is not subprocess.DEVNULL else subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url + "/health", timeout=2):
                return proc, url
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                kill_group(proc)
                raise RuntimeError(f"prefect server on port {port} did not answer /api/health in {timeout_s:g} s "
                                   f"(exit code {proc.returncode})") from None
            time.sleep(0.3)


def run_flow_subprocess(runner: str, root: Path) -> tuple[dict, float]:
    """`python -c runner root` (a script that runs the index flow and prints one
    "SUMMARY {json}" line), for the benchmarks: the run summary and the wall seconds.
    A failed run prints its output's end and exits with its code."""
    env = dict(os.environ, PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_LOGGING_LEVEL="WARNING")
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", runner, str(root)], cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.monotonic() - start
    if proc.returncode != 0:
        print(proc.stdout[-3000:], proc.stderr[-5000:], file=sys.stderr)
        raise SystemExit(proc.returncode)
    summary = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("SUMMARY "))[8:])
    return summary, wall
