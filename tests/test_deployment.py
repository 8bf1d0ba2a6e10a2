"""graphrag-flow as a Prefect deployment, with real components: a `prefect server` on a free
port, the work pool, `prefect --no-prompt deploy --all` from prefect.yaml, a process worker
and `prefect deployment run ... --watch`; then what a user relies on, read through the
Prefect API: the run Completed, the outputs verify, the artifacts carry the right numbers.

One server serves the whole module. Every process started here runs with this module's
PREFECT_HOME and is killed at the end (the worker starts each flow run in its own session,
so killing the worker alone would leave `python -m prefect.engine` running).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import inspect
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import psutil
import pyarrow.parquet as pq
import pytest
import yaml

from conftest import REPO, cli_env, make_project, run_cli, secret_leaks
from fake_openai import configure_remote, fetch_stats, start_fake_server_process, stop_fake_server_process

PREFECT = [sys.executable, "-m", "prefect"]
POOL = "graphrag-flow"
QUOTA = "llm-quota"
EXPECTED_TASK_RUNS = {
    "load", "chunk", "extract", "summarize", "communities", "reports", "write",
    "embed-text_unit_text", "embed-entity_description", "embed-community_full_content",
}
FAIL_MARKER = "Zyxwvut Qponmlk"  # a phrase in one document of run B: the fake fails its chat requests
#: The key of the Secret-block run: in a Prefect Secret block only (llm.api_key_secret).
BLOCK_KEY = "sk-deploy-block-N4f-J7c-2Hs"
KEY_BLOCK = "graphrag-flow-deploy-key"


def _yaml() -> dict:
    return yaml.safe_load((REPO / "prefect.yaml").read_text(encoding="utf-8"))


# --------------------------------------------------------------------------- definitions (no server)


def test_every_deployment_points_at_the_index_flow_with_parameters_of_its_signature():
    from prefect.flows import Flow, load_flow_from_entrypoint
    from prefect.utilities.callables import parameter_schema_from_entrypoint

    spec = _yaml()
    pull = spec["pull"]
    assert pull == [{"prefect.deployments.steps.set_working_directory": {"directory": "{{ $PWD }}"}}]
    deployments = {d["name"]: d for d in spec["deployments"]}
    assert set(deployments) == {"index-nightly", "index-now"}
    for name, d in deployments.items():
        flow = load_flow_from_entrypoint(str(REPO / d["entrypoint"]))
        assert isinstance(flow, Flow) and flow.name == "index", name
        signature = inspect.signature(flow.fn)
        required = {p for p, v in signature.parameters.items() if v.default is inspect.Parameter.empty}
        assert set(d["parameters"]) <= set(signature.parameters), f"{name}: parameters not in the flow's signature"
        assert required <= set(d["parameters"]), f"{name}: required parameter(s) missing"
        flow.validate_parameters(dict(d["parameters"]))  # types match (raises otherwise)
        assert d["work_pool"]["name"] == POOL
        schema = parameter_schema_from_entrypoint(d["entrypoint"]).model_dump_for_openapi()
        for param, prop in schema["properties"].items():
            assert prop.get("description"), f"parameter {param} has no description for the UI"
        assert schema["properties"]["root"]["type"] == "string"
        assert schema["properties"]["full"]["type"] == "boolean"
    assert deployments["index-now"]["schedules"] == []
    with pytest.raises(Exception):
        flow.validate_parameters({"root": "x", "full": "not a bool"})


def test_nightly_schedule_is_0200_utc_every_day():
    from prefect.server.schemas.schedules import CronSchedule

    (schedule,) = {d["name"]: d for d in _yaml()["deployments"]}["index-nightly"]["schedules"]
    cron = CronSchedule(cron=schedule["cron"], timezone=schedule.get("timezone"))
    assert cron.timezone == "UTC"
    start = dt.datetime(2026, 3, 28, 12, 0, tzinfo=dt.timezone.utc)  # spans a European DST switch
    dates = asyncio.run(cron.get_dates(n=3, start=start))
    assert [d.astimezone(dt.timezone.utc) for d in dates] == [
        dt.datetime(2026, 3, day, 2, 0, tzinfo=dt.timezone.utc) for day in (29, 30, 31)
    ]


# --------------------------------------------------------------------------- a real server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrefectServer:
    def __init__(self, home: Path, port: int):
        self.home = home
        self.port = port
        self.api_url = f"http://127.0.0.1:{port}/api"
        self.procs: list[subprocess.Popen] = []

    def env(self, **extra: str) -> dict[str, str]:
        env = cli_env(self.home, PREFECT_API_URL=self.api_url, PREFECT_LOGGING_LEVEL="INFO")
        env.update(extra)
        return env

    def popen(self, args: list[str], log: Path, **env: str) -> subprocess.Popen:
        proc = subprocess.Popen(
            args, cwd=REPO, env=self.env(**env), stdout=log.open("w"), stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )
        self.procs.append(proc)
        return proc

    def prefect(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [*PREFECT, *args], cwd=REPO, env=self.env(), capture_output=True, text=True, timeout=timeout
        )
        assert result.returncode == 0, f"prefect {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
        return result

    def api(self, coro_fn):
        """Run `coro_fn(client)` with a Prefect client of this server."""
        from prefect.client.orchestration import get_client
        from prefect.settings import PREFECT_API_URL, temporary_settings

        async def main():
            with temporary_settings(updates={PREFECT_API_URL: self.api_url}):
                async with get_client() as client:
                    return await coro_fn(client)

        return asyncio.run(main())

    def ours(self) -> list[psutil.Process]:
        """Every live process started with this module's PREFECT_HOME (server, workers, engines, CLIs)."""
        found = []
        for p in psutil.process_iter():
            try:
                if p.pid != os.getpid() and p.environ().get("PREFECT_HOME") == str(self.home):
                    found.append(p)
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
        return found

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for p in self.ours():
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(self.ours(), timeout=10)
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                pass


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = tmp_path_factory.mktemp("prefect-server-home")
    srv = PrefectServer(home, _free_port())
    # The UI asks the API at PREFECT_API_URL (else at port 4200): the server needs it too.
    started = time.monotonic()
    proc = srv.popen([*PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(srv.port)],
                     home / "server.log")
    try:
        deadline = time.monotonic() + 150
        while True:
            try:
                with urllib.request.urlopen(srv.api_url + "/health", timeout=5) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            assert proc.poll() is None, (home / "server.log").read_text()
            assert time.monotonic() < deadline, "prefect server did not start:\n" + (home / "server.log").read_text()
            time.sleep(0.5)
        srv.started_s = time.monotonic() - started
        yield srv
    finally:
        srv.stop()
        assert not srv.ours(), "processes left running"


@pytest.fixture(scope="module")
def deployed(server):
    started = time.monotonic()
    # the quota is created while the pool and deployments are (each CLI call costs seconds)
    gcl = subprocess.Popen([*PREFECT, "global-concurrency-limit", "create", QUOTA, "--limit", "4"], cwd=REPO,
                           env=server.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    server.prefect("work-pool", "create", POOL, "--type", "process")
    server.prefect("--no-prompt", "deploy", "--all")
    assert gcl.wait(120) == 0, gcl.stdout.read()
    server.deployed_s = time.monotonic() - started
    print(f"server ready in {server.started_s:.1f}s, pool+deploy+gcl in {server.deployed_s:.1f}s")
    return server


def test_deploy_all_registers_both_deployments_as_prefect_yaml_says(deployed):
    """What `prefect --no-prompt deploy --all` stored: schedule, pull step, pool, parameter schema."""

    async def read(client):
        return {name: await client.read_deployment_by_name(f"index/{name}") for name in ("index-nightly", "index-now")}

    deployments = deployed.api(read)
    for name, d in deployments.items():
        assert d.work_pool_name == POOL, name
        assert d.pull_steps == [{"prefect.deployments.steps.set_working_directory": {"directory": str(REPO)}}]
        assert d.parameters["root"] == f"{REPO}/examples"
        props = d.parameter_openapi_schema["properties"]
        assert props["root"]["type"] == "string" and "settings.yaml" in props["root"]["description"]
        assert props["full"]["type"] == "boolean" and props["full"]["description"]
    (nightly,) = deployments["index-nightly"].schedules
    assert (nightly.schedule.cron, nightly.schedule.timezone, nightly.active) == ("0 2 * * *", "UTC", True)
    assert deployments["index-now"].schedules == []


def _copy_inputs(dst: Path, src: Path, names: list[str]) -> Path:
    dst.mkdir(parents=True)
    for name in names:
        shutil.copy2(src / name, dst / name)
    return dst


def _stable_task_runs(srv: PrefectServer, flow_run_id, timeout: float = 60) -> list:
    """Task runs arrive as events, after the flow run is Completed: wait until the list settles."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    async def read(client):
        return await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))

    last, deadline = None, time.monotonic() + timeout
    while True:
        runs = srv.api(read)
        key = sorted((r.name, r.state_type.value if r.state_type else "") for r in runs)
        if key == last and all(r.state_type and r.state_type.value == "COMPLETED" for r in runs) and runs:
            return runs
        if time.monotonic() > deadline:
            return runs
        last = key
        time.sleep(1.5)


def _artifacts(srv: PrefectServer, flow_run_id) -> list:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    async def read(client):
        return await client.read_artifacts(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))

    return srv.api(read)


@pytest.fixture(scope="module")
def block_key_project(deployed, tmp_path_factory):
    """A project whose API key is only in a Prefect Secret block (llm.api_key_secret), against a
    fake server that answers 401 to any other key."""
    from prefect.blocks.system import Secret

    proc, url = start_fake_server_process(api_key=BLOCK_KEY)
    try:
        deployed.api(lambda client: Secret(value=BLOCK_KEY).asave(KEY_BLOCK, overwrite=True, client=client))
        base = tmp_path_factory.mktemp("block-key-project")
        project = make_project(base / "project", files={"ada.txt": b"Ada Lovelace met Charles Babbage in London.\n"},
                               llm=dict(provider="openai", api_base=url, api_key_secret=KEY_BLOCK, max_retries=1))
        yield project, url
    finally:
        stop_fake_server_process(proc)


@pytest.fixture(scope="module")
def deployment_run(deployed, quota_runs, block_key_project, tmp_path_factory):
    """`prefect deployment run 'index/index-now' --watch`, picked up by a process worker
    (while the two quota runs, started first, go on beside it); the same worker also runs the
    Secret-block project, a second run of the deployment created beside the first."""
    srv = deployed
    base = tmp_path_factory.mktemp("deployed-project")
    project = make_project(base / "project", input_dir=_copy_inputs(base / "docs", REPO / "examples" / "input",
                                                                   sorted(os.listdir(REPO / "examples" / "input"))))
    logs = base / "logs"
    logs.mkdir()
    started = time.monotonic()
    watch = srv.popen([*PREFECT, "deployment", "run", "index/index-now", "--param", f"root={project}",
                       "--watch", "--watch-timeout", "300"], logs / "watch.log")
    # A run that fails on its settings, watched the same way: what --watch shows a user then.
    bad = make_project(base / "bad-project", files={"ada.txt": b"Ada Lovelace met Charles Babbage.\n"})
    (bad / "settings.yaml").write_text("chunks:\n  size: -5\n")
    failed_watch = srv.popen([*PREFECT, "deployment", "run", "index/index-now", "--param", f"root={bad}",
                              "--watch", "--watch-timeout", "300"], logs / "failed-watch.log")

    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

    async def scheduled(client):
        return await client.read_flow_runs(deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["index-now"])))

    async def block_key_run(client):
        deployment = await client.read_deployment_by_name("index/index-now")
        return await client.create_flow_run_from_deployment(deployment.id,
                                                            parameters={"root": str(block_key_project[0])})

    keyed = srv.api(block_key_run)
    deadline = time.monotonic() + 60
    while len(srv.api(scheduled)) < 3:
        assert watch.poll() is None, (logs / "watch.log").read_text()
        assert failed_watch.poll() is None, (logs / "failed-watch.log").read_text()
        assert time.monotonic() < deadline, "no flow run was created"
        time.sleep(0.5)
    # --run-once: the worker polls once, runs what is due, and exits when those runs are over.
    worker = srv.popen([*PREFECT, "worker", "start", "--pool", POOL, "--run-once"], logs / "worker.log",
                       PREFECT_WORKER_QUERY_SECONDS="2")
    try:
        watch.wait(320)
    except subprocess.TimeoutExpired:
        pytest.fail("deployment run --watch did not finish:\n" + (logs / "worker.log").read_text())
    elapsed = time.monotonic() - started
    watch_log = (logs / "watch.log").read_text()
    try:
        failed_watch.wait(60)
    except subprocess.TimeoutExpired:
        pytest.fail("deployment run --watch of the failing run did not finish:\n" + (logs / "worker.log").read_text())
    try:
        worker.wait(120)
    except subprocess.TimeoutExpired:
        pass
    (run,) = [r for r in srv.api(scheduled) if r.id != keyed.id and r.parameters["root"] == str(project)]
    print(f"deployment run round trip {elapsed:.1f}s")
    return dict(project=project, watch_rc=watch.returncode, watch_log=watch_log, flow_run=run, seconds=elapsed,
                worker_log=(logs / "worker.log").read_text(), block_key_run=keyed,
                failed_watch_rc=failed_watch.returncode, failed_watch_log=(logs / "failed-watch.log").read_text())


def test_deployment_run_completes_and_its_outputs_verify(deployment_run, deployed, prefect_home):
    r = deployment_run

    async def read(client):
        return await client.read_flow_run(r["flow_run"].id)

    run = deployed.api(read)
    assert run.state.is_completed(), f"{run.state}: {run.state.message}\n{r['worker_log'][-4000:]}"
    assert r["watch_rc"] == 0, r["watch_log"] + r["worker_log"]
    assert f"UUID: {r['flow_run'].id}" in r["watch_log"]
    assert run.parameters["root"] == str(r["project"]) and not run.parameters.get("full")
    assert run.name == f"index-{r['project']}"
    out = r["project"] / "output"
    for name in ("documents", "text_units", "entities", "relationships", "communities", "community_reports"):
        assert (out / f"{name}.parquet").is_file(), name
    assert pq.read_metadata(out / "documents.parquet").num_rows == 3
    status = run_cli(["status", "--root", str(r["project"])], prefect_home, timeout=180)
    assert status.returncode == 0, status.stdout + status.stderr


def test_watching_a_failed_deployment_run_shows_why_it_failed(deployment_run):
    """`prefect deployment run ... --watch` on a run that fails, against a server started as
    `prefect server start` is by default (it streams a run's events to --watch, not its logs):
    the user sees the reason (the setting at fault) before the Failed state, and the command
    exits non-zero."""
    r = deployment_run
    log = r["failed_watch_log"]
    assert r["failed_watch_rc"] == 1, log
    (line,) = [l for l in log.splitlines() if "graphrag-flow.index.failed" in l]
    assert "setting 'chunks.size'" in line and "greater than 0" in line, log
    assert log.index("graphrag-flow.index.failed") < log.index("prefect.flow-run.Failed"), log
    assert "finished in state 'Failed'" in log, log


def test_a_deployment_run_reads_its_api_key_from_a_secret_block_and_leaks_it_nowhere(
        deployment_run, deployed, block_key_project):
    project, url = block_key_project
    run_id = deployment_run["block_key_run"].id

    async def read(client):
        return await client.read_flow_run(run_id)

    deadline = time.monotonic() + 180
    while not (run := deployed.api(read)).state.is_final():
        assert time.monotonic() < deadline, f"the Secret-block run did not finish: {run.state}"
        time.sleep(1)
    assert run.state.is_completed(), f"{run.state}: {run.state.message}\n{deployment_run['worker_log'][-4000:]}"
    stats = fetch_stats(url, with_log=False)
    assert stats["requests"].get("chat", 0) > 0  # the fake answers 401 to any key but the block's
    assert (project / "output" / "entities.parquet").is_file()
    assert secret_leaks(BLOCK_KEY, project, deployed.home, texts=(deployment_run["worker_log"],)) == []


def test_task_runs_are_named_after_their_stages(deployment_run, deployed):
    runs = _stable_task_runs(deployed, deployment_run["flow_run"].id)
    names = {r.name for r in runs}
    assert names == EXPECTED_TASK_RUNS, names


def test_summary_artifacts_carry_the_numbers_of_the_outputs(deployment_run, deployed):
    out = deployment_run["project"] / "output"
    artifacts = _artifacts(deployed, deployment_run["flow_run"].id)
    by_key = {a.key: a for a in artifacts if a.key}
    from flows.artifacts import artifact_key

    stages_key, summary_key = (artifact_key(deployment_run["project"], kind) for kind in ("stages", "summary"))
    assert {stages_key, summary_key} <= set(by_key)
    assert stages_key.startswith(f"graphrag-flow-{deployment_run['project'].name.lower()}-")
    rows = {row["stage"]: row for row in json.loads(by_key[stages_key].data)}
    parquet_rows = {n: pq.read_metadata(out / f"{n}.parquet").num_rows for n in ("documents", "text_units", "entities")}
    assert rows["load"]["items"] == parquet_rows["documents"] == 3
    assert rows["chunk"]["items"] == parquet_rows["text_units"]
    assert rows["embed-entity_description"]["items"] == parquet_rows["entities"]
    for row in rows.values():
        assert set(row) >= {"items", "requests", "retries", "cache_hits", "failures", "seconds"}
        assert row["failures"] == 0
    summary = by_key[summary_key].data
    assert f"| documents | {parquet_rows['documents']} |" in summary
    assert f"| entities | {parquet_rows['entities']} |" in summary
    assert str(out) in summary
    # the long stages left progress artifacts, each at 100 % at the end
    progress = [a for a in artifacts if a.type == "progress"]
    assert all(a.key == stages_key.removesuffix("stages") + "progress-" + a.description.split(":")[0]
               .removeprefix("graphrag-flow ").replace("_", "-") for a in progress), [a.key for a in progress]
    described = {a.description.split(":")[0].removeprefix("graphrag-flow ") for a in progress}
    assert {"embed-text_unit_text", "embed-entity_description", "embed-community_full_content"} <= described
    assert all(float(a.data) == 100.0 for a in progress), [(a.description, a.data) for a in progress]


def test_deployment_runs_send_heartbeats_and_the_zombie_automation_marks_silent_ones_crashed(deployed):
    """prefect.yaml turns heartbeats on for both deployments, and deployments/zombie_automation.py
    creates (then updates, never duplicates) the automation that crashes runs whose heartbeats stop."""
    deployments = deployed.api(lambda client: asyncio.gather(
        *(client.read_deployment_by_name(f"index/{name}") for name in ("index-nightly", "index-now"))))
    for d in deployments:
        assert d.job_variables["env"]["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] == "60", d.name
    script = [sys.executable, "deployments/zombie_automation.py"]
    ids = [subprocess.run(script, cwd=REPO, env=deployed.env(), capture_output=True, text=True, timeout=120,
                          check=True).stdout.strip() for _ in range(2)]
    assert ids[0] == ids[1]

    async def read(client):
        return await client.read_automations_by_name("graphrag-flow: crash zombie flow runs")

    (automation,) = deployed.api(read)
    trigger = automation.trigger
    assert (trigger.posture.value, trigger.within.total_seconds(), trigger.for_each) == (
        "Proactive", 180, {"prefect.resource.id"})
    assert trigger.after == {"prefect.flow-run.heartbeat"} and "prefect.flow-run.heartbeat" in trigger.expect
    (action,) = automation.actions
    assert (action.type, action.state.value) == ("change-flow-run-state", "CRASHED")


# --------------------------------------------------------------------------- one quota across runs


def _cli_popen(srv: PrefectServer, root: Path, home: Path, log: Path) -> subprocess.Popen:
    """The CLI as a user runs it beside a server: PREFECT_API_URL set, so the run shows in its UI."""
    env = cli_env(home, PREFECT_API_URL=srv.api_url, OPENAI_API_KEY="sk-fake-test")
    env["PREFECT_HOME"] = str(srv.home)  # cleaned up with the module's processes
    proc = subprocess.Popen([sys.executable, "-m", "graphrag_flow.cli", "index", "--root", str(root)], cwd=REPO, env=env,
                            stdout=log.open("w"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    srv.procs.append(proc)
    return proc


def _max_overlap(intervals: list[tuple[float, float]]) -> int:
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals], key=lambda x: (x[0], x[1]))
    now = peak = 0
    for _, delta in events:
        now += delta
        peak = max(peak, now)
    return peak


class QuotaRuns:
    """Two CLI runs, started together against one fake OpenAI server and one quota of 4.

    Started before the deployment run and collected after it: they share the module's
    server, and their wall time mostly hides behind the deployment's.
    """

    #: Requests are slow until both flow runs are Running (CLIs start in 10-30 s on a busy
    #: machine, and a run alone would finish first), then fast: the runs are sure to overlap.
    SLOW_S, FAST_S = 8.0, 0.3

    def __init__(self, srv: PrefectServer, base: Path, corpus: Path):
        self.base = base
        self.fake, self.url = start_fake_server_process(
            latency_s=self.SLOW_S, models=["chat-a", "chat-b", "emb-a", "emb-b"], fail_chat_substrings=[FAIL_MARKER])
        self.roots: dict[str, Path] = {}
        for name, docs in (("a", ["pep-0257.rst", "pep-0602.rst"]), ("b", ["pep-0020.rst", "pep-0526.rst"])):
            inputs = _copy_inputs(base / f"docs-{name}", corpus, docs)
            if name == "b":  # run B fails in extract on this document's text unit
                with (inputs / "pep-0020.rst").open("a", encoding="utf-8") as f:
                    f.write(f"\n\nThe {FAIL_MARKER} clause is where this run fails.\n")
            llm = dict(provider="openai", api_base=self.url, chat_model=f"chat-{name}", embedding_model=f"emb-{name}",
                       max_concurrency=16, prefect_concurrency_limit=QUOTA, request_timeout_s=30, max_retries=1)
            self.roots[name] = make_project(base / name, input_dir=inputs, llm=llm)
        self.started = time.monotonic()
        self.procs = {n: _cli_popen(srv, root, base, base / f"cli-{n}.log") for n, root in self.roots.items()}
        self._result: dict | None = None
        self.both_running_s: float | None = None
        self._speed_up = threading.Thread(target=self._fast_once_both_run, args=(srv,), daemon=True)
        self._speed_up.start()

    def _fast_once_both_run(self, srv: PrefectServer) -> None:
        names = [f"index-{root}" for root in self.roots.values()]
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and all(p.poll() is None for p in self.procs.values()):
            body = json.dumps({"flow_runs": {"name": {"any_": names}, "state": {"type": {"any_": ["RUNNING"]}}}})
            req = urllib.request.Request(srv.api_url + "/flow_runs/filter", data=body.encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=10) as resp:
                    if len(json.loads(resp.read())) == 2:
                        self.both_running_s = time.monotonic() - self.started
                        break
            except OSError:
                pass
            time.sleep(0.5)
        configure_remote(self.url, latency_s=self.FAST_S)

    def result(self) -> dict:
        if self._result is None:
            for p in self.procs.values():
                p.wait(300)
            self._speed_up.join(30)
            seconds = time.monotonic() - self.started
            print(f"two quota runs {seconds:.1f}s (both Running after {self.both_running_s}s)")
            stats = fetch_stats(self.url)
            logs = {n: (self.base / f"cli-{n}.log").read_text() for n in self.procs}
            self._result = dict(roots=self.roots, rc={n: p.returncode for n, p in self.procs.items()}, logs=logs,
                                stats=stats, seconds=seconds, both_running_s=self.both_running_s)
        return self._result

    def stop(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
        stop_fake_server_process(self.fake)


@pytest.fixture(scope="module")
def quota_runs(deployed, peps_mini, tmp_path_factory):
    runs = QuotaRuns(deployed, tmp_path_factory.mktemp("quota"), peps_mini)
    yield runs
    runs.stop()


@pytest.fixture(scope="module")
def two_runs_one_quota(quota_runs):
    return quota_runs.result()


def test_two_runs_share_one_global_concurrency_limit_of_4(two_runs_one_quota, deployed):
    r = two_runs_one_quota
    assert r["rc"]["a"] == 0, r["logs"]["a"]
    log = [e for e in r["stats"]["log"] if e["endpoint"] in ("chat", "embeddings")]
    by_run = {n: [(e["t_start"], e["t_end"]) for e in log if e["model"].endswith(f"-{n}")] for n in "ab"}
    assert by_run["a"] and by_run["b"], "both runs sent requests"
    # the two flow runs were Running at the same time (seen through the Prefect API) ...
    # (their requests need not interleave: a global limit is not fair, so one run may hold
    # all 4 slots while the other waits for one, which is the quota doing its job)
    assert r["both_running_s"] is not None, "the two flow runs were never Running at the same time"
    # ... each allowed 16 in flight, yet together never more than the quota's 4; and the quota was used
    assert _max_overlap(by_run["a"] + by_run["b"]) == 4
    assert r["stats"]["max_in_flight"] <= 4 + 2, "only the preflight's GET /models may come on top"
    # run B's requests failed (HTTP 500) and its flow failed: no slot is left held
    quota = deployed.api(lambda client: client.read_global_concurrency_limit_by_name(QUOTA))
    assert quota.active_slots == 0


def _flow_run_named(srv: PrefectServer, name: str):
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    async def read(client):
        return await client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[name])))

    (run,) = srv.api(read)
    return run


def test_progress_artifacts_are_updated_while_a_stage_runs(two_runs_one_quota, deployed):
    """Run A's long stages (LLM requests at 0.25 s each, 4 at a time) each had a progress artifact
    that moved while the stage ran, and ended at 100 %."""
    run = _flow_run_named(deployed, f"index-{two_runs_one_quota['roots']['a']}")
    progress = [a for a in _artifacts(deployed, run.id) if a.type == "progress"]
    stages = {a.description.split(":")[0].removeprefix("graphrag-flow ") for a in progress}
    assert {"extract", "summarize", "reports", "embed-text_unit_text", "embed-entity_description"} <= stages, stages
    assert len(stages) == len(progress), "one artifact per stage"
    assert all(float(a.data) == 100.0 for a in progress)
    assert any((a.updated - a.created).total_seconds() >= 1 for a in progress), "no artifact was updated mid-stage"


def test_a_failed_run_publishes_a_summary_naming_the_stage_and_items(two_runs_one_quota, deployed):
    r = two_runs_one_quota
    assert r["rc"]["b"] != 0, r["logs"]["b"]
    assert "extract" in r["logs"]["b"]
    run = _flow_run_named(deployed, f"index-{r['roots']['b']}")
    assert run.state.is_failed(), run.state
    assert "extract" in (run.state.message or "")
    from flows.artifacts import artifact_key

    summaries = [a for a in _artifacts(deployed, run.id) if a.key == artifact_key(r["roots"]["b"], "summary")]
    assert len(summaries) == 1
    text = summaries[0].data
    assert "FAILED" in text and "Stage **extract**" in text
    assert "fake fail_chat_substrings" in text, text  # the reason, as the server gave it
    assert "resumes" in text


def test_a_quota_name_that_names_no_limit_fails_naming_the_setting(deployed, tmp_path):
    from flows.quota import require_concurrency_limit
    from graphrag_flow.config import load_settings
    from graphrag_flow.errors import SettingsError

    root = make_project(tmp_path / "p", llm=dict(prefect_concurrency_limit="no-such-quota"))
    settings = load_settings(root)
    with pytest.raises(SettingsError, match=r"llm\.prefect_concurrency_limit.*no-such-quota.*prefect gcl create"):
        deployed.api(lambda client: require_concurrency_limit(settings, client))
    ok = load_settings(make_project(tmp_path / "q", llm=dict(prefect_concurrency_limit=QUOTA)))
    deployed.api(lambda client: require_concurrency_limit(ok, client))  # exists: no error


def test_quota_slots_are_held_per_request_and_released_on_failure_and_cancellation(deployed, tmp_path):
    """The run's RequestLimiter with the real Prefect limit: one slot per request in flight, none left after."""
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate

    from flows.index import _prefect_limit
    from graphrag_flow.config import load_settings
    from graphrag_flow.llm.limiter import RequestLimiter

    name = "slot-release-check"
    settings = load_settings(make_project(tmp_path / "p", llm=dict(prefect_concurrency_limit=name)))

    async def scenario(client):
        await client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=3))

        async def active() -> int:
            return (await client.read_global_concurrency_limit_by_name(name)).active_slots

        limiter = RequestLimiter(16, extra=_prefect_limit(settings))

        async def request(fail: bool = False) -> None:
            async with limiter.slot():
                if fail:
                    raise RuntimeError("HTTP 500")
                await asyncio.sleep(120)

        held = [asyncio.create_task(request()) for _ in range(5)]
        deadline = time.monotonic() + 60
        while limiter.in_flight < 3:
            assert time.monotonic() < deadline, "slots were not granted"
            await asyncio.sleep(0.2)
        await asyncio.sleep(2)  # the other two wait for the quota, although the run allows 16
        in_flight, slots_held = limiter.in_flight, await active()
        for task in held:
            task.cancel()
        await asyncio.gather(*held, return_exceptions=True)
        after_cancel = await active()
        for _ in range(4):  # failing requests release their slot: more failures than slots still run
            with pytest.raises(RuntimeError):
                await asyncio.wait_for(request(fail=True), 60)
        return in_flight, slots_held, after_cancel, await active()

    in_flight, slots_held, after_cancel, after_failures = deployed.api(scenario)
    assert (in_flight, slots_held) == (3, 3)
    assert after_cancel == 0, "cancelled requests kept their slots"
    assert after_failures == 0, "failed requests kept their slots"


# --------------------------------------------------------------------------- a budget in a deployment run


def test_a_deployment_run_at_its_budget_pauses_and_goes_on_once_a_new_budget_is_approved(
        deployed, peps_mini, tmp_path_factory):
    """A scheduled run that reaches its budget pauses (no one is at a terminal) with a form for a
    new budget; resumed with one through the API (what the UI's form sends), it goes on in the
    same flow run from the answers it has, pays for none twice, and completes."""
    from graphrag_flow.config import load_settings
    from graphrag_flow.estimate import estimate_project

    srv = deployed
    proc, url = start_fake_server_process()
    try:
        base = tmp_path_factory.mktemp("budget-project")
        project = make_project(base / "project", input_dir=_copy_inputs(base / "docs", peps_mini,
                                                                       sorted(os.listdir(peps_mini))),
                               llm=dict(provider="openai", api_base=url, api_key="sk-budget-test", max_concurrency=8,
                                        price_per_million_tokens={"prompt": 0.1, "completion": 2.0,
                                                                  "embedding": 0.01}))
        floor = estimate_project(project, load_settings(project))["total"]["cost_usd"]["low"]
        budget = round(2 * floor, 4)  # above the estimate's floor (the run starts), well below its cost

        async def start(client):
            deployment = await client.read_deployment_by_name("index/index-now")
            return await client.create_flow_run_from_deployment(
                deployment.id, parameters={"root": str(project), "max_cost_usd": budget})

        flow_run = srv.api(start)
        logs = base / "logs"
        logs.mkdir()
        worker = srv.popen([*PREFECT, "worker", "start", "--pool", POOL, "--run-once"], logs / "worker.log",
                           PREFECT_WORKER_QUERY_SECONDS="2")

        async def state(client):
            return (await client.read_flow_run(flow_run.id)).state

        deadline = time.monotonic() + 240
        while not (current := srv.api(state)).is_paused():
            assert not current.is_final(), f"{current}: {current.message}\n" + (logs / "worker.log").read_text()[-4000:]
            assert time.monotonic() < deadline, "the run did not pause:\n" + (logs / "worker.log").read_text()[-4000:]
            time.sleep(1)
        paused_stats = fetch_stats(url)
        assert not (project / "output" / "_manifest.json").exists()
        assert srv.api(lambda client: client.resume_flow_run(flow_run.id, run_input={"max_run_cost_usd": 50.0}))

        deadline = time.monotonic() + 300
        while not (current := srv.api(state)).is_final():
            assert time.monotonic() < deadline, "the run did not finish:\n" + (logs / "worker.log").read_text()[-4000:]
            time.sleep(1)
        try:
            worker.wait(60)
        except subprocess.TimeoutExpired:
            pass
        assert current.is_completed(), f"{current}: {current.message}\n" + (logs / "worker.log").read_text()[-4000:]
        final = fetch_stats(url)
    finally:
        stop_fake_server_process(proc)
    paid = [h for e in final["log"] if e.get("delivered")
            for h in ([e["body_sha256"]] if e["endpoint"] == "chat" else e["input_sha256s"])]
    assert len(paid) == len(set(paid)), "a prompt was paid for twice"
    before = paused_stats["billing"]["billed_total"]
    assert before["requests"] < final["billing"]["billed_total"]["requests"]
    manifest = json.loads((project / "output" / "_manifest.json").read_text())
    assert manifest["usage"]["requests"] == final["billing"]["billed_delivered"]["requests"]  # both attempts
    from flows.artifacts import artifact_key

    keys = {a.key for a in _artifacts(srv, flow_run.id)}
    assert {artifact_key(project, "usage"), artifact_key(project, "summary")} <= keys
