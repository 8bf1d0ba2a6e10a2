"""The offline batch work on a real Dask cluster (execution.task_runner: dask): a LocalCluster of
two worker processes, shared by the module, that the runs reach through execution.dask_address,
so a test can kill one of its workers mid-run. The flow runs through the real CLI against the
session's Prefect server.

Two of the runs use the offline transformer (`embed.offline_model: minilm`), whose embedding
batches are the CPU-heavy work a cluster is for (and run long enough to kill a worker during
one); the run on S3 uses the default static model, which embeds on the coordinator."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from conftest import REPO, cli_env, make_project, run_cli
from test_index_offline import corpus  # noqa: F401  (a fixture: its four PEPs, copied once per module)

distributed = pytest.importorskip("distributed", reason="the graphrag-flow[dask] extra is not installed")

sys.path.insert(0, str(REPO / "benchmarks"))
from compare_outputs import compare  # noqa: E402  (benchmarks/compare_outputs.py)


@pytest.fixture(scope="module")
def cluster():
    """Two worker processes of one thread each, as `execution.dask_workers: 2` starts them. The
    scheduler runs in this process and keeps every transition (which worker got which batch)."""
    import dask

    with dask.config.set({"distributed.admin.low-level-log-length": 100_000}), distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  env={"GRAPHRAG_FLOW_EMBED_THREADS": "1"}) as local:
        with distributed.Client(local, set_as_default=False) as client:
            yield local, client


#: The transformer: its embedding batches go to the cluster.
TRANSFORMER = {"offline_model": "minilm"}


def _local_output(base: Path, corpus: Path, prefect_home: Path, **sections) -> Path:
    root = make_project(base / "project", input_dir=corpus, **sections)
    result = run_cli(["index", "--root", str(root)], prefect_home)
    assert result.returncode == 0, result.stdout + result.stderr
    return root / "output"


@pytest.fixture(scope="module")
def local_output(tmp_path_factory, corpus, prefect_home) -> Path:
    return _local_output(tmp_path_factory.mktemp("local"), corpus, prefect_home, embed=TRANSFORMER)


@pytest.fixture(scope="module")
def local_static_output(tmp_path_factory, corpus, prefect_home) -> Path:
    return _local_output(tmp_path_factory.mktemp("local-static"), corpus, prefect_home)


def _dask_project(base: Path, corpus: Path, cluster) -> Path:
    return make_project(base / "project", input_dir=corpus, embed=TRANSFORMER,
                        execution={"task_runner": "dask", "dask_address": cluster[0].scheduler_address})


def _batch_runs(api_url: str, flow_run_id: str) -> list[dict]:
    """The flow run's batch task runs, each with how many times it was started (Running states)."""
    with httpx.Client(base_url=api_url, timeout=30) as http:
        runs = http.post("/task_runs/filter", json={"flow_runs": {"id": {"any_": [flow_run_id]}}, "limit": 200})
        runs.raise_for_status()
        batches = [r for r in runs.json() if "-batch-" in r["name"]]
        for run in batches:
            states = http.get("/task_run_states/", params={"task_run_id": run["id"]})
            states.raise_for_status()
            run["started"] = sum(1 for s in states.json() if s["type"] == "RUNNING")
    return batches


def _assert_same_outputs(expected: Path, got: Path) -> None:
    differences = {name: verdict for name, verdict in compare(expected, got).items() if verdict != "identical"}
    assert not differences, differences


# Each test indexes the subset once or twice on two cores shared with the cluster's workers.
pytestmark = pytest.mark.timeout(900)


def test_a_dask_run_equals_a_local_run_and_the_manifest_says_where_its_batches_ran(
        tmp_path, corpus, cluster, local_output, prefect_api):
    home, api_url = prefect_api
    root = _dask_project(tmp_path, corpus, cluster)
    result = run_cli(["index", "--root", str(root)], home)
    assert result.returncode == 0, result.stdout + result.stderr
    _assert_same_outputs(local_output, root / "output")

    manifest = json.loads((root / "output" / "_manifest.json").read_text())
    execution = manifest["execution"]
    workers = set(cluster[1].scheduler_info()["workers"])
    assert execution["task_runner"] == "dask" and execution["workers"] == 2
    assert set(execution["batches_per_worker"]) == workers, "both workers got batches"
    # The Prefect UI shows each batch as a task run of the flow run, each run once.
    runs = _batch_runs(api_url, manifest["run_id"])
    kinds = Counter(r["name"].split("-batch-")[0] for r in runs)
    assert set(kinds) == {"extract", "embed", "report"}, kinds
    assert len(runs) == sum(execution["batches_per_worker"].values())
    assert all(r["state_type"] == "COMPLETED" and r["started"] == 1 for r in runs)


def test_killing_a_worker_mid_run_redoes_only_its_batches(tmp_path, corpus, cluster, local_output, prefect_api):
    home, api_url = prefect_api
    local, client = cluster
    root = _dask_project(tmp_path, corpus, cluster)
    proc = subprocess.Popen([sys.executable, "-m", "graphrag_flow.cli", "index", "--root", str(root)], cwd=REPO,
                            env=cli_env(home), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        # Mid-run: a batch has come back, and one worker has been running another for a while
        # (its Prefect task run is Running).
        since: dict[tuple[str, str], float] = {}
        seen: set[str] = set()
        victim, held = None, []
        started = time.time()
        deadline = time.monotonic() + 600
        while victim is None:
            assert proc.poll() is None and time.monotonic() < deadline, "the run ended before a worker was killed"
            # what each worker runs now (a lambda: pickled by value, the workers cannot import tests)
            executing = client.run(lambda dask_worker: [str(task.key) for task in dask_worker.state.executing])
            now = time.monotonic()
            for worker, keys in executing.items():
                seen.update(keys)
                for key in keys:
                    since.setdefault((worker, key), now)
            running_long = [(w, k) for (w, k), t in since.items() if k in executing.get(w, []) and now - t > 2]
            if len(seen) >= 3 and running_long:
                victim, running = running_long[0]
                held = set(client.processing()[victim]) | {running}  # running, and assigned to run next
            else:
                time.sleep(0.1)
        os.kill(client.run(os.getpid, workers=[victim])[victim], signal.SIGKILL)
        output, _ = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, output
    _assert_same_outputs(local_output, root / "output")

    # The scheduler's record: every batch was handed to a worker once, but for what the dead
    # worker held (the batch it was running first of all), handed out once more. Every batch it
    # had finished, and every batch of the other worker, was not run again.
    handed_out = Counter(t.key for t in list(local.scheduler.transition_log)
                         if t.finish == "processing" and t.timestamp >= started)
    redone = {str(key) for key, n in handed_out.items() if n > 1}
    assert running in redone and redone <= held, (redone, held)
    # Prefect shows each batch once, completed, and the manifest counts it once.
    manifest = json.loads((root / "output" / "_manifest.json").read_text())
    runs = _batch_runs(api_url, manifest["run_id"])
    assert all(r["state_type"] == "COMPLETED" for r in runs)
    assert len(runs) == sum(manifest["execution"]["batches_per_worker"].values()) == len(handed_out)
    # The nanny restarts the worker: the cluster has its two workers again for the next run.
    client.wait_for_workers(2, timeout=60)


def test_an_unreachable_scheduler_stops_the_run_naming_the_setting(tmp_path, corpus, prefect_home):
    from tests.processes import free_port

    address = f"tcp://127.0.0.1:{free_port()}"
    root = make_project(tmp_path / "project", input_dir=corpus,
                        execution={"task_runner": "dask", "dask_address": address})
    result = run_cli(["index", "--root", str(root)], prefect_home)
    assert result.returncode != 0
    assert "execution.dask_address" in result.stdout + result.stderr and address in result.stdout + result.stderr
    assert not (root / "output").exists()


def test_input_and_output_on_s3_with_the_dask_runner_equal_a_local_run(tmp_path, corpus, cluster, local_static_output,
                                                                         prefect_api):
    """Both halves of past-one-machine at once: the documents come from a real S3 API (moto's
    server), the batch work runs on the cluster, the generation is published to the store; what a
    reader of the store gets equals the plain local run, row for row (a document's date aside: an
    object's is its upload)."""
    from conftest import assert_same_outputs, secret_leaks
    from test_storage_s3 import BUCKET, _local_outputs, _served_outputs
    from tests.moto_s3 import moto_s3

    home, api_url = prefect_api
    with moto_s3() as s3:
        s3.bucket(BUCKET)
        s3.upload(corpus, BUCKET, "cluster/input")
        root = make_project(tmp_path / "project", input={"dir": f"s3://{BUCKET}/cluster/input"},
                            output={"dir": f"s3://{BUCKET}/cluster/index"},
                            execution={"task_runner": "dask", "dask_address": cluster[0].scheduler_address})
        result = run_cli(["index", "--root", str(root)], home, PREFECT_API_URL=api_url, **s3.env())
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        served = _served_outputs(s3, "cluster/index", tmp_path / "served")
        secret = s3.secret_key

    expected = _local_outputs(local_static_output)
    for tables in (served, expected):
        tables["documents"] = tables["documents"].drop_columns(["creation_date"])
    assert_same_outputs(served, expected, "S3 + Dask run vs a local run")
    manifest = json.loads((root / "output" / "_manifest.json").read_text())
    assert manifest["execution"]["task_runner"] == "dask"
    assert sum(manifest["execution"]["batches_per_worker"].values()) > 0
    # the static model's batches stayed on the coordinator: only extraction and reports ran there
    kinds = Counter(r["name"].split("-batch-")[0] for r in _batch_runs(api_url, manifest["run_id"]))
    assert set(kinds) == {"extract", "report"}, kinds
    assert secret_leaks(secret, root, home, tmp_path / "served", texts=(result.stdout, result.stderr)) == []
