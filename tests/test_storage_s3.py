"""Input and outputs on S3 (moto's server, a real S3 API on 127.0.0.1), reached through the
standard AWS environment only: the outputs equal a local run's row for row, a coordinator killed
mid-publish leaves the last good generation served and the next run completes it, an incremental
run on S3 equals a fresh index, a second coordinator on one output URL is refused, and bad
storage settings fail `check` in seconds, naming the setting, never printing the secret key.

The corpus is three PEPs of peps-mini with the edits of tests/test_incremental.py's night, to
keep the suite's time: the storage path is the same for any size (peps-mini whole, by hand, on
2026-12-07: equal row for row, docs/performance.md).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from conftest import (CORPORA, PEPS_MINI, assert_same_outputs, cli_env, edit_corpus, make_project, run_cli,
                      secret_leaks)
from graphrag_flow.errors import ProjectBusyError, SettingsError
from graphrag_flow.storage.lease import LeaseLock, LeaseLostError
from graphrag_flow.storage.published import POINTER
from graphrag_flow.storage.reach import check_store
from graphrag_flow.storage.store import Store
from graphrag_flow.storage.vectors import VectorTable
from graphrag_flow.tables import SCHEMAS, VECTOR_FIELDS
from tests.moto_s3 import S3Server, moto_s3
from tests.processes import free_port

pytestmark = pytest.mark.timeout(900)

DOCS = ("pep-0020.rst", "pep-0257.rst", "pep-0602.rst")
CHANGED, REMOVED, ADDED = "pep-0257.rst", "pep-0602.rst", CORPORA / "peps-extra" / "pep-0004.rst"
BUCKET = "graphrag-flow-test"


@pytest.fixture(scope="module")
def s3() -> S3Server:
    with moto_s3() as server:
        server.bucket(BUCKET)
        yield server


# --------------------------------------------------------------------------- helpers


def _index(root: Path, prefect_api, s3: S3Server, **env: str):
    home, api = prefect_api
    return run_cli(["index", "--root", str(root)], home, timeout=400, PREFECT_API_URL=api, **s3.env(**env))


def _dates_from_store(folder: Path, s3: S3Server, prefix: str) -> None:
    """Give each local file its object's date on the store (a document's creation_date is its
    file's mtime, an object's its upload), so a local run is the S3 run's reference."""
    for item in s3.client().list_objects_v2(Bucket=BUCKET, Prefix=prefix + "/").get("Contents", []):
        path = folder / item["Key"][len(prefix) + 1:]
        stamp = item["LastModified"].timestamp()
        os.utime(path, (stamp, stamp))


def _sync_input(folder: Path, s3: S3Server, prefix: str) -> None:
    """The store's input prefix made to hold exactly `folder`'s files (uploading only changed ones)."""
    client = s3.client()
    listed = {o["Key"]: o for o in client.list_objects_v2(Bucket=BUCKET, Prefix=prefix + "/").get("Contents", [])}
    wanted = {f"{prefix}/{p.name}": p for p in folder.iterdir()}
    for key in listed.keys() - wanted.keys():
        client.delete_object(Bucket=BUCKET, Key=key)
    for key, path in wanted.items():
        if key not in listed or client.get_object(Bucket=BUCKET, Key=key)["Body"].read() != path.read_bytes():
            client.upload_file(str(path), BUCKET, key)
    _dates_from_store(folder, s3, prefix)


def _local_outputs(out: Path) -> dict:
    tables = {name: pq.read_table(out / f"{name}.parquet").sort_by("id") for name in SCHEMAS}
    for field in VECTOR_FIELDS:
        tables[f"lancedb/{field}"] = VectorTable(out / "lancedb", field).read().sort_by("id")
    return tables


def _pointer(s3: S3Server, prefix: str) -> dict | None:
    client = s3.client()
    try:
        return json.loads(client.get_object(Bucket=BUCKET, Key=f"{prefix}/{POINTER}")["Body"].read())
    except client.exceptions.NoSuchKey:
        return None


def _served_outputs(s3: S3Server, prefix: str, into: Path) -> dict:
    """What a reader of the store gets: the pointer, then the generation it names, downloaded
    with boto3 (another client than the one that wrote it)."""
    pointer = _pointer(s3, prefix)
    assert pointer is not None, "no generation is served"
    client = s3.client()
    gen = f"{prefix}/generations/{pointer['generation']}/"
    if into.exists():
        shutil.rmtree(into)
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=gen):
        for item in page.get("Contents", []):
            target = into / item["Key"][len(gen):]
            target.parent.mkdir(parents=True, exist_ok=True)
            client.download_file(BUCKET, item["Key"], str(target))
    return _local_outputs(into)


def _s3_project(root: Path, prefix: str) -> Path:
    """Input and output on the store; no storage settings: the AWS environment says where and who."""
    return make_project(root, input={"dir": f"s3://{BUCKET}/{prefix}/input"},
                        output={"dir": f"s3://{BUCKET}/{prefix}/index"})


# --------------------------------------------------------------------------- the runs


def test_s3_outputs_survive_kills_and_equal_a_fresh_local_run_after_an_incremental_night(tmp_path, s3, prefect_api,
                                                                                      prefect_home):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name in DOCS:
        shutil.copy2(PEPS_MINI / name, corpus / name)
    _sync_input(corpus, s3, "night/input")
    project = _s3_project(tmp_path / "s3-project", "night")

    first = _index(project, prefect_api, s3)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "s3://" in first.stdout and "index/generations/" in first.stdout
    served = _served_outputs(s3, "night/index", tmp_path / "served-1")
    assert len(served["entities"]) > 10

    # the night's edits on the store; the incremental run is killed once its generation is uploaded:
    # readers still get the first generation, whole; killed again after its pointer is written,
    # before its local copy is switched in: readers get the new generation, whole
    first_generation = _pointer(s3, "night/index")["generation"]
    edit_corpus(corpus, CHANGED, REMOVED, ADDED)
    _sync_input(corpus, s3, "night/input")
    killed_early = _index(project, prefect_api, s3, GRAPHRAG_FLOW_TEST_KILL_AT="publish:verified")
    assert killed_early.returncode != 0
    assert _pointer(s3, "night/index")["generation"] == first_generation
    assert_same_outputs(_served_outputs(s3, "night/index", tmp_path / "served-killed"), served, "served after a kill")
    killed = _index(project, prefect_api, s3, GRAPHRAG_FLOW_TEST_KILL_AT="publish:pointer")
    assert killed.returncode != 0
    assert _pointer(s3, "night/index")["generation"] != first_generation
    # its local output/ is behind the store: copied from it first, and it is the night's generation
    again = _index(project, prefect_api, s3)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "no changes since the last completed run" in again.stdout
    incremental = _served_outputs(s3, "night/index", tmp_path / "served-2")

    # the reference: a plain local run, from scratch, of the same documents (dated as on the store)
    fresh = make_project(tmp_path / "fresh-project", input_dir=corpus)
    result = _index(fresh, prefect_api, s3)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert_same_outputs(incremental, _local_outputs(fresh / "output"), "incremental S3 run vs a fresh local run")

    # two generations are kept (the served one and the one before, for readers mid-switch)
    listed = s3.client().list_objects_v2(Bucket=BUCKET, Prefix="night/index/generations/", Delimiter="/")
    assert len(listed.get("CommonPrefixes", [])) == 2
    assert not any(o["Key"].endswith("_lock.json")
                   for o in s3.client().list_objects_v2(Bucket=BUCKET, Prefix="night/index/").get("Contents", []))

    # the secret key reached every part that touched the store, and is nowhere it must not be
    texts = (first.stdout, first.stderr, killed_early.stdout, killed_early.stderr, killed.stdout, killed.stderr,
             again.stdout, again.stderr)
    assert secret_leaks(s3.secret_key, project, prefect_home, tmp_path / "served-2", texts=texts) == []


# --------------------------------------------------------------------------- the lock


def _store(s3: S3Server, prefix: str, **options) -> Store:
    return Store(f"s3://{BUCKET}/{prefix}", {"endpoint_url": s3.endpoint, "key": s3.access_key,
                                             "secret": s3.secret_key, "skip_instance_cache": True, **options})


def test_one_coordinator_per_output_url(tmp_path, s3):
    store = _store(s3, "locked")
    first = LeaseLock(store, tmp_path / "a", "run-a", lease_s=60)
    with first:
        second = LeaseLock(store, tmp_path / "b", "run-b", lease_s=60)
        with pytest.raises(ProjectBusyError, match=r"another coordinator is indexing into s3://.*output.dir"):
            second.acquire()
        # the same project on the same machine: the local project lock proves that holder dead
        assert LeaseLock(store, tmp_path / "a", "run-a2", lease_s=60).acquire()["flow_run_id"] == "run-a"
        with pytest.raises(LeaseLostError):
            first.renew()  # taken over: the first run must publish nothing now


def test_a_lock_not_renewed_for_its_lease_is_taken_over(tmp_path, s3):
    store = _store(s3, "lease")
    dead = LeaseLock(store, tmp_path / "a", "run-a", lease_s=10)
    dead.acquire()  # never renewed: its holder was killed on another machine
    with pytest.raises(ProjectBusyError):
        LeaseLock(store, tmp_path / "b", "run-b", lease_s=10).acquire()
    record = json.loads(s3.client().get_object(Bucket=BUCKET, Key="lease/_lock.json")["Body"].read())
    record["expires_at"] = time.time() - 1
    s3.client().put_object(Bucket=BUCKET, Key="lease/_lock.json", Body=json.dumps(record).encode())
    assert LeaseLock(store, tmp_path / "b", "run-b", lease_s=10).acquire()["flow_run_id"] == "run-a"


# --------------------------------------------------------------------------- check


@pytest.mark.parametrize("case", ["endpoint", "secret", "key", "bucket"])
def test_bad_storage_fails_check_in_seconds_naming_the_setting(case, s3):
    options = {"endpoint": {"endpoint_url": f"http://127.0.0.1:{free_port()}"}, "secret": {"secret": "wrong" * 8},
               "key": {"key": "AKIAWRONGWRONGWRONG0"}, "bucket": {}}[case]
    url = f"s3://{'no-such-bucket' if case == 'bucket' else BUCKET}/out"
    started = time.monotonic()
    with pytest.raises(SettingsError) as error:
        check_store(Store(url, {**_store(s3, "x").options, **options}), "output.dir", write=True)
    assert time.monotonic() - started < 5
    message = str(error.value)
    assert message.startswith("output.dir: s3://")
    assert {"endpoint": "cannot be reached at http://127.0.0.1:", "secret": "credentials",
            "key": "credentials", "bucket": "bucket does not exist"}[case] in message
    assert s3.secret_key not in message


def test_check_names_the_credentials_and_never_prints_the_secret(tmp_path, s3, prefect_home):
    project = _s3_project(tmp_path / "project", "checked")
    s3.client().put_object(Bucket=BUCKET, Key="checked/input/a.txt", Body=b"a document")
    wrong = "WrongSecretKey" + "x" * 26
    started = time.monotonic()
    result = run_cli(["check", "--root", str(project)], prefect_home, timeout=60,
                     **s3.env(AWS_SECRET_ACCESS_KEY=wrong))
    seconds = time.monotonic() - started
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "input.dir" in output and "credentials" in output and wrong not in output, output[-2000:]
    assert seconds < 30, seconds  # the CLI's start included; the store check itself is bounded above
    ok = run_cli(["check", "--root", str(project)], prefect_home, timeout=120, **s3.env())
    assert "output.dir" in ok.stdout and "can be written" in ok.stdout, ok.stdout[-2000:] + ok.stderr[-2000:]


def test_secrets_in_storage_options_are_refused_naming_the_option(tmp_path, prefect_home):
    project = make_project(tmp_path / "p", storage={"options": {"endpoint_url": "http://127.0.0.1:9",
                                                                "secret": "AKsecretvalue123"}})
    result = run_cli(["check", "--root", str(project)], prefect_home, timeout=60)
    assert result.returncode != 0
    assert "storage.options" in result.stdout + result.stderr and "'secret' holds a secret" in result.stdout + result.stderr
    assert "AKsecretvalue123" not in result.stdout + result.stderr


def test_an_aws_credentials_block_reaches_s3fs_and_lancedb(tmp_path, s3, prefect_api, monkeypatch):
    """No key pair in the environment: the prefect-aws block's reach the store through `check`
    (the listing and the probe write), and LanceDB's own client through the store's options."""
    home, api = prefect_api
    save = ("from prefect_aws import AwsCredentials; import sys; "
            "AwsCredentials(aws_access_key_id=sys.argv[1], aws_secret_access_key=sys.argv[2], region_name='us-east-1')"
            ".save('moto-s3', overwrite=True)")
    saved = subprocess.run([sys.executable, "-c", save, s3.access_key, s3.secret_key], env=cli_env(home), timeout=120,
                           capture_output=True, text=True)
    assert saved.returncode == 0, saved.stderr[-2000:]
    s3.upload(CORPORA / "peps-extra", BUCKET, "blocked/input")
    project = make_project(tmp_path / "project", input={"dir": f"s3://{BUCKET}/blocked/input"},
                           output={"dir": f"s3://{BUCKET}/blocked/index"},
                           storage={"aws_credentials_block": "moto-s3"})
    endpoint_only = {"AWS_ENDPOINT_URL": s3.endpoint, "AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""}
    checked = run_cli(["check", "--root", str(project)], home, timeout=120, **endpoint_only)
    assert checked.returncode == 0, checked.stdout[-2000:] + checked.stderr[-2000:]
    assert "input.dir) can be listed" in checked.stdout and "output.dir) can be written" in checked.stdout
    without = make_project(tmp_path / "without", input={"dir": f"s3://{BUCKET}/blocked/input"})
    refused = run_cli(["check", "--root", str(without)], home, timeout=120, **endpoint_only)
    assert refused.returncode != 0 and "input.dir" in refused.stdout + refused.stderr
    assert secret_leaks(s3.secret_key, project, home, texts=(checked.stdout, checked.stderr)) == []

    # LanceDB with the block's keys in the store's options, and none in the environment
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3.endpoint)
    store = Store(f"s3://{BUCKET}/blocked/lance", {}, {"key": s3.access_key, "secret": s3.secret_key,
                                                      "region": "us-east-1"})
    table = VectorTable(store.uri("lancedb"), "t", store.lance_options())
    table.prepare(3)
    table.merge(["a", "b"], [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], ["x", "y"], "m")
    assert table.state().rows == 2
    assert s3.secret_key not in repr(store)
