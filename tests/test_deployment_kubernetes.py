"""The cluster deployment (deployments/kubernetes.prefect.yaml), checked without a cluster.

Kubernetes cannot run here. What can be checked is what the worker would do first: render the
work pool's base job template (Prefect's default for the `kubernetes` type, from
prefect-kubernetes) with the deployment's job variables, with prefect-kubernetes' own code, and
read the Job manifest it would create."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import yaml

from conftest import REPO
from graphrag_flow.config import Settings

pytest.importorskip("prefect_kubernetes", reason="prefect-kubernetes (a test dependency) is not installed")

PREFECT_FILE = REPO / "deployments" / "kubernetes.prefect.yaml"


def _deployment() -> dict:
    (deployment,) = yaml.safe_load(PREFECT_FILE.read_text(encoding="utf-8"))["deployments"]
    return deployment


def _rendered_job(api_url: str) -> dict:
    """The Job manifest a kubernetes worker would create for a run of the deployment (rendering
    resolves block references through the API: the session's server, which holds none)."""
    from prefect.client.schemas.objects import FlowRun
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect_kubernetes.worker import KubernetesWorker, KubernetesWorkerJobConfiguration

    template = KubernetesWorker.get_default_base_job_template()
    values = _deployment()["work_pool"]["job_variables"]
    unknown = set(values) - set(template["variables"]["properties"])
    assert not unknown, f"job variables the kubernetes template does not have (ignored silently): {unknown}"
    with temporary_settings({PREFECT_API_URL: api_url}):
        config = asyncio.run(KubernetesWorkerJobConfiguration.from_template_and_values(template, values))
        flow_run = FlowRun(id=uuid.uuid4(), name="index-nightly-run", flow_id=uuid.uuid4())
        config.prepare_for_flow_run(flow_run)
    return config.job_manifest


def test_the_deployment_runs_the_index_flow_on_the_kubernetes_pool():
    from prefect.flows import load_flow_from_entrypoint

    deployment = _deployment()
    flow = load_flow_from_entrypoint(str(REPO / deployment["entrypoint"]))
    assert flow.name == "index"
    flow.validate_parameters(dict(deployment["parameters"]))
    assert deployment["work_pool"]["name"] == "graphrag-flow-k8s"


def test_the_job_template_renders_with_the_image_and_the_dask_settings(prefect_api):
    job = _rendered_job(prefect_api[1])
    assert job["kind"] == "Job" and job["metadata"]["namespace"] == "graphrag-flow"
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == "registry.example.com/graphrag-flow:0.1.0"
    assert pod["serviceAccountName"] == "graphrag-flow"
    assert job["spec"]["ttlSecondsAfterFinished"] == 86400
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["PREFECT__FLOW_RUN_ID"]  # the worker's own variables are there too
    # The flow in that pod reads these as its settings: a Dask run on the scheduler's Service.
    ours = {k: v for k, v in env.items() if k.startswith("GRAPHRAG_FLOW_")}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in ours.items():
            patch.setenv(name, value)
        settings = Settings()
    assert settings.execution.task_runner == "dask"
    assert settings.execution.dask_address == "tcp://dask-scheduler.graphrag-flow.svc.cluster.local:8786"
    # No secret in the deployment: credentials reach the coordinator through a Secret block or
    # the service account, never a job variable.
    assert not any(word in name for name in env for word in ("KEY", "PASSWORD", "SECRET", "TOKEN"))
