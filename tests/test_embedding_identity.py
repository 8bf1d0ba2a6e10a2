"""Everything that changes a vector is in its key: a changed `llm.embedding_dimensions` re-embeds
every row of every field, and the vectors of the old dimension never verify again.

Real CLI runs against the fake OpenAI server (it answers with the requested `dimensions`) and
the session's Prefect server; a two-PEP corpus keeps each run to seconds.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from conftest import make_project, run_cli
from fake_openai import fetch_stats, reset_remote
from graphrag_flow.config import load_settings
from graphrag_flow.stages.embed.backends import embedding_model_id
from graphrag_flow.storage.outputs import check_vectors, read_manifest, read_table
from graphrag_flow.storage.vectors import VectorTable
from graphrag_flow.tables import SCHEMAS, VECTOR_FIELDS

FILES = ("pep-0020.rst", "pep-0602.rst")


def _index(root: Path, prefect_api, base_url: str) -> dict:
    home, api = prefect_api
    reset_remote(base_url)
    result = run_cli(["index", "--root", str(root)], home, timeout=300, PREFECT_API_URL=api)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return fetch_stats(base_url, with_log=False)


def _set_dimensions(root: Path, dimensions: int | None) -> None:
    path = root / "settings.yaml"
    settings = yaml.safe_load(path.read_text())
    settings["llm"]["embedding_dimensions"] = dimensions
    path.write_text(yaml.safe_dump(settings))


def _vector_state(root: Path) -> dict[str, tuple[int, int, set[str]]]:
    """Per field: rows, dimension, models recorded."""
    out = {}
    for field in VECTOR_FIELDS:
        arrow = VectorTable(root / "output" / "lancedb", field).read()
        out[field] = (arrow.num_rows, arrow.schema.field("vector").type.list_size, set(arrow.column("model").to_pylist()))
    return out


@pytest.fixture(scope="module")
def project(tmp_path_factory, peps_mini, fake) -> Path:
    corpus = tmp_path_factory.mktemp("corpus")
    for name in FILES:
        shutil.copy2(peps_mini / name, corpus / name)
    llm = {"provider": "openai", "api_base": fake, "api_key": "sk-dimensions-test", "max_concurrency": 8,
           "embedding_dimensions": 64}
    return make_project(tmp_path_factory.mktemp("dims") / "project", input_dir=corpus, llm=llm)


def test_changing_embedding_dimensions_reembeds_every_row_and_only_new_vectors_verify(project, prefect_api, fake):
    _index(project, prefect_api, fake)
    at64 = _vector_state(project)
    for field, (rows, dim, models) in at64.items():
        assert rows > 0 and dim == 64 and models == {"text-embedding-3-small@64d"}, (field, at64[field])

    _set_dimensions(project, 32)
    stats = _index(project, prefect_api, fake)
    at32 = _vector_state(project)
    assert stats["requests"].get("chat", 0) == 0, "only the vectors depend on the dimensions"
    # every row of every field was embedded again, at 32 dimensions, and nothing of 64 is left
    assert stats["embedding_inputs"] == sum(rows for rows, _d, _m in at64.values())
    for field, (rows, dim, models) in at32.items():
        assert (rows, dim, models) == (at64[field][0], 32, {"text-embedding-3-small@32d"}), field

    manifest = read_manifest(project / "output")
    assert manifest["embedding_model"] == "text-embedding-3-small@32d"
    assert {v["dimension"] for v in manifest["vector_tables"].values()} == {32}
    home, api = prefect_api
    status = run_cli(["status", "--root", str(project)], home, timeout=120, PREFECT_API_URL=api)
    assert status.returncode == 0, status.stdout[-3000:]

    # The 32-d vectors are not current for a 64-d setting: verification names them as outdated.
    _set_dimensions(project, 64)
    tables = {name: read_table(project / "output", name) for name in SCHEMAS}
    checks = check_vectors(tables, project / "output" / "lancedb", embedding_model_id(load_settings(project)),
                           unit_length=True)
    assert all(not c.ok and len(c.outdated) == c.source_rows for c in checks), [c.problem() for c in checks]


def test_the_model_id_carries_the_dimensions_only_when_set(tmp_path):
    (tmp_path / "settings.yaml").write_text("llm: {provider: openai, embedding_model: text-embedding-3-large}\n")
    assert embedding_model_id(load_settings(tmp_path)) == "text-embedding-3-large"
    (tmp_path / "settings.yaml").write_text(
        "llm: {provider: openai, embedding_model: text-embedding-3-large, embedding_dimensions: 256}\n")
    assert embedding_model_id(load_settings(tmp_path)) == "text-embedding-3-large@256d"
    (tmp_path / "settings.yaml").write_text("llm: {embedding_dimensions: 256}\n")  # offline: its own model id
    assert embedding_model_id(load_settings(tmp_path)) == "offline/all-MiniLM-L6-v2-static-v1"
