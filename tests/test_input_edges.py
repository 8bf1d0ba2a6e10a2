"""Through the CLI, as a user meets it: legal input that makes an empty graph (issue #19, item 6).

Against the real fake server (its own process) and the session's Prefect server; the run
summary is checked in the CLI's output and in the `graphrag-flow-summary` artifact.
"""

from __future__ import annotations

import asyncio
import json
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pyarrow.parquet as pq

from conftest import make_project, run_cli
from graphrag_flow.storage.vectors import VectorTable
from graphrag_flow.tables import SCHEMAS, VECTOR_FIELDS

try:
    from tests.fake_openai import fetch_stats, start_fake_server_process, stop_fake_server_process
except ImportError:  # plain `pytest` puts tests/ itself on sys.path
    from fake_openai import fetch_stats, start_fake_server_process, stop_fake_server_process  # type: ignore[no-redef]

KEY = "sk-test-input-edges-5150"
TEXT = {
    "a.txt": "Ada Lovelace wrote the first program for the Analytical Engine of Charles Babbage.",
    "sub/b.md": "Alan Turing described the Turing Machine at Cambridge.",
}


@contextmanager
def fake_server(**knobs) -> Iterator[str]:
    proc, url = start_fake_server_process(api_key=KEY, log_prompts=True, **knobs)
    try:
        yield url
    finally:
        stop_fake_server_process(proc)


def _llm(url: str) -> dict:
    return dict(provider="openai", api_base=url, api_key=KEY, max_concurrency=8, request_timeout_s=10, max_retries=1)


def _index(root: Path, prefect_home: Path):
    result = run_cli(["index", "--root", str(root)], prefect_home)
    output = " ".join((result.stdout + "\n" + result.stderr).split())  # rich wraps long lines
    return result.returncode, output


def _status_verified(root: Path, prefect_home: Path) -> None:
    result = run_cli(["status", "--root", str(root)], prefect_home)
    assert result.returncode == 0, result.stdout + result.stderr
    assert ": verified" in result.stdout


def _summary_artifact(prefect_api, root: Path) -> str:
    """The markdown of the `graphrag-flow-summary` artifact of the run that wrote `root`'s outputs."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey, FlowRunFilter, FlowRunFilterId
    from prefect.settings import PREFECT_API_URL, temporary_settings

    run_id = json.loads((root / "output" / "_manifest.json").read_text())["run_id"]

    async def read():
        with temporary_settings(updates={PREFECT_API_URL: prefect_api[1]}):
            async with get_client() as client:
                return await client.read_artifacts(
                    artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["graphrag-flow-summary"])),
                    flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])),
                )

    artifacts = asyncio.run(read())
    assert len(artifacts) == 1, artifacts
    return " ".join(artifacts[0].data.split())


def _assert_tables_written(root: Path, rows: dict[str, int]) -> None:
    for name, schema in SCHEMAS.items():
        table = pq.read_table(root / "output" / f"{name}.parquet")
        assert table.schema.names == schema.names, name
        assert [f.type for f in table.schema] == [f.type for f in schema], name
        if name in rows:
            assert table.num_rows == rows[name], name
    dims = set()
    for field in VECTOR_FIELDS:
        table = VectorTable(root / "output" / "lancedb", field)
        assert table.exists(), f"lancedb/{field} was not written"
        dims.add(table.state().dimension)
    assert len(dims) == 1 and None not in dims


def test_an_api_that_finds_nothing_gives_an_empty_verified_graph(tmp_path, prefect_home, prefect_api):
    with fake_server(extraction="empty") as url:
        root = make_project(tmp_path / "project", files={k: v.encode() for k, v in TEXT.items()}, llm=_llm(url))
        code, output = _index(root, prefect_home)
    assert code == 0, output
    _assert_tables_written(root, {"documents": 2, "entities": 0, "relationships": 0, "communities": 0,
                                  "community_reports": 0})
    for field in ("entity_description", "community_full_content"):
        assert VectorTable(root / "output" / "lancedb", field).state().rows == 0
    for shown in (output, _summary_artifact(prefect_api, root)):
        assert "no entities were found: the graph is empty" in shown
        assert "llm.chat_model" in shown and "graph_extraction prompt" in shown
    _status_verified(root, prefect_home)


def test_an_api_that_finds_no_relationships_gives_one_community_per_entity(tmp_path, prefect_home):
    with fake_server(extraction="entities_only") as url:
        root = make_project(tmp_path / "project", files={k: v.encode() for k, v in TEXT.items()}, llm=_llm(url))
        code, output = _index(root, prefect_home)
    assert code == 0, output
    entities = pq.read_table(root / "output" / "entities.parquet").num_rows
    assert entities > 3
    _assert_tables_written(root, {"relationships": 0, "communities": entities, "community_reports": entities})
    assert f"no relationships were found: each of the {entities} entities is a community of its own" in output
    _status_verified(root, prefect_home)


def test_offline_a_corpus_without_entities_gives_an_empty_verified_graph(tmp_path, prefect_home):
    root = make_project(tmp_path / "project", files={"ok.txt": b"ok."})
    code, output = _index(root, prefect_home)
    assert code == 0, output
    _assert_tables_written(root, {"documents": 1, "text_units": 1, "entities": 0, "community_reports": 0})
    assert "no entities were found: the graph is empty (1 document(s), 1 text unit(s) read" in output
    assert "the offline rules" in output
    _status_verified(root, prefect_home)
    # a second run on it reuses everything and stays verified
    code, output = _index(root, prefect_home)
    assert code == 0 and "no changes since the last completed run" in output, output
    _status_verified(root, prefect_home)
