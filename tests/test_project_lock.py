"""One index run per project at a time: a second run stops at its start, naming the first,
and a killed run leaves no lock behind (the next run resumes without any clean-up)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, make_project, run_cli
from graphrag_flow.errors import ProjectBusyError
from graphrag_flow.storage.paths import ProjectPaths
from graphrag_flow.storage.project_lock import project_lock

HOLDER_FILE = "index.lock.json"  # under cache/: who holds the lock, named in the second run's error

HOLDER = r"""
import sys, time
from pathlib import Path
from graphrag_flow.storage.paths import ProjectPaths
from graphrag_flow.storage.project_lock import project_lock
with project_lock(ProjectPaths(Path(sys.argv[1])), "flow-run-A"):
    print("HELD", flush=True)
    time.sleep(600)
"""


def _hold(root: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(root)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "HELD"
    return proc


def test_a_second_index_of_the_same_project_stops_at_once_naming_the_first(tmp_path, prefect_home):
    root = make_project(tmp_path / "project", files={"a.txt": b"Ada Lovelace wrote the first program."})
    holder = _hold(root)
    try:
        started = time.monotonic()
        run = run_cli(["index", "--root", str(root)], prefect_home, timeout=300)
        elapsed = time.monotonic() - started
    finally:
        holder.kill()
        holder.wait()
    output = run.stdout + run.stderr
    assert run.returncode == 1, output[-3000:]
    assert f"another index run of {root} is in progress (pid {holder.pid}" in " ".join(output.split()), output[-3000:]
    assert "flow run flow-run-A" in " ".join(output.split())
    assert "Traceback" not in output
    assert not (root / "output").exists(), "the second run wrote outputs beside the first"
    assert elapsed < 120, elapsed


def test_a_killed_run_leaves_no_lock_and_a_finished_one_lets_the_next_in(tmp_path):
    root = tmp_path / "project"
    holder = _hold(root)
    with pytest.raises(ProjectBusyError, match=r"pid \d+ on .*flow run flow-run-A"):
        with project_lock(ProjectPaths(root), "flow-run-B"):
            pass
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with project_lock(ProjectPaths(root), "flow-run-B"):  # the OS released the killed run's lock
        assert "flow-run-B" in (root / "cache" / HOLDER_FILE).read_text()
    with project_lock(ProjectPaths(root), "flow-run-C"):  # and a finished run's
        pass


def test_a_run_killed_with_sigkill_is_marked_crashed_by_the_next_run(tmp_path, prefect_api, prefect_home):
    """`kill -9` gives the engine no chance to report: the flow run stays Running in Prefect until
    the next index run of the project takes the lock and marks it Crashed, then resumes."""
    import asyncio
    import json
    import os

    from conftest import cli_env

    root = make_project(tmp_path / "project", files={"a.txt": b"Ada Lovelace wrote the first program.",
                                                     "b.txt": b"Grace Hopper wrote the first compiler."})
    log = (tmp_path / "first.log").open("w")
    first = subprocess.Popen([sys.executable, "-m", "graphrag_flow.cli", "index", "--root", str(root)], cwd=REPO,
                             env=cli_env(prefect_home), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    holder = root / "cache" / HOLDER_FILE
    deadline = time.monotonic() + 240
    while not (holder.exists() and json.loads(holder.read_text()).get("flow_run_id")):
        assert first.poll() is None, (tmp_path / "first.log").read_text()
        assert time.monotonic() < deadline, "the run never took the project lock"
        time.sleep(0.1)
    os.killpg(first.pid, signal.SIGKILL)  # inside the flow, holding the lock
    first.wait()
    dead_id = json.loads(holder.read_text())["flow_run_id"]

    def flow_run(run_id):
        from prefect.client.orchestration import get_client
        from prefect.settings import PREFECT_API_URL, temporary_settings

        async def read():
            with temporary_settings(updates={PREFECT_API_URL: prefect_api[1]}):
                async with get_client() as client:
                    return await client.read_flow_run(run_id)

        return asyncio.run(read())

    assert flow_run(dead_id).state.type.value == "RUNNING"  # what a kill -9 leaves behind
    second = run_cli(["index", "--root", str(root)], prefect_home, timeout=400)
    assert second.returncode == 0, second.stdout + second.stderr
    state = flow_run(dead_id).state
    assert state.type.value == "CRASHED", state
    assert "ended without reporting" in state.message and str(root) in state.message, state.message
    assert json.loads(holder.read_text())["flow_run_id"] in state.message  # names the run that took over
