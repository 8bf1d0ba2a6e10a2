"""The embed stage counts and verifies its table after its pass: a table reset under it (here a
dimension change, which drops and recreates the table) is repaired row by row, and when a row
cannot be repaired the stage fails naming it; it never completes with rows missing.

Real LanceDB files, the real OpenAI-compatible client and backend, the fake server in process.
"""

from __future__ import annotations

import asyncio

import pandas as pd
import pytest

from conftest import make_project
from graphrag_flow.config import load_settings
from graphrag_flow.stages.embed.field import embed_field
from graphrag_flow.stages.embed.backends import OpenAIBackend
from graphrag_flow.hashing import sha256_text
from graphrag_flow.llm.answer_cache import AnswerCache
from graphrag_flow.llm.client import OpenAICompatibleClient
from graphrag_flow.llm.limiter import RequestLimiter
from graphrag_flow.llm.stats import LLMStats
from graphrag_flow.storage.vectors import VectorTable

try:
    from tests.fake_openai import FakeConfig, FakeOpenAIServer
except ImportError:  # plain `pytest` puts tests/ itself on sys.path
    from fake_openai import FakeConfig, FakeOpenAIServer  # type: ignore[no-redef]

ROWS = 107
CHANGED = 3


def _inputs(changed: int = 0) -> pd.DataFrame:
    texts = [f"Text unit {i}: PEP {i} talks about topic {i % 7}." for i in range(ROWS)]
    for i in range(changed):
        texts[i] += " (edited)"
    return pd.DataFrame({"id": [f"row-{i:03d}" for i in range(ROWS)], "text": texts})


def _embed(root, url: str, table: VectorTable, inputs: pd.DataFrame):
    settings = load_settings(root)

    async def run():
        cache = AnswerCache(root / "cache" / "llm_answers.sqlite")
        client = OpenAICompatibleClient(settings.llm, "sk-repair", RequestLimiter(4), LLMStats(), cache)
        try:
            async with client:
                backend = OpenAIBackend(settings, client, "embed-text_unit_text")
                return await embed_field("text_unit_text", table, inputs, backend)
        finally:
            cache.close()

    return asyncio.run(run())


@pytest.fixture
def project(tmp_path):
    def make(url: str):
        llm = {"provider": "openai", "api_base": url, "api_key": "sk-repair", "max_retries": 1,
               "embedding_batch_size": 16}
        return make_project(tmp_path / "project", llm=llm)

    return make


def _current(table: VectorTable, inputs: pd.DataFrame, model: str) -> set[str]:
    state = table.state()
    wanted = {(i, sha256_text(t)) for i, t in zip(inputs["id"], inputs["text"])}
    return {i for i, s, m in state.keys if (i, s) in wanted and m == model}


def test_a_table_of_another_dimension_is_rebuilt_with_every_row(project):
    """The API's vectors change dimension under the same model id (the provider's default moved,
    or a table written by an older graphrag-flow); only three texts changed, so the pass plans
    three rows, and the table holding the other 104 is dropped by the first merge."""
    with FakeOpenAIServer(FakeConfig(embedding_dim=64)) as srv:
        root = project(srv.base_url)
        table = VectorTable(root / "output" / "lancedb", "text_unit_text")
        first = _embed(root, srv.base_url, table, _inputs())
        assert (first.embedded, table.state().rows, table.state().dimension) == (ROWS, ROWS, 64)

        srv.configure(embedding_dim=32)
        srv.reset()
        second = _embed(root, srv.base_url, table, _inputs(changed=CHANGED))
        sent = srv.stats()["embedding_inputs"]
    state = table.state()
    assert not second.failures, [str(f) for f in second.failures]
    assert (state.rows, state.dimension, state.duplicate_ids) == (ROWS, 32, 0)
    assert _current(table, _inputs(changed=CHANGED), "text-embedding-3-small") == set(_inputs()["id"])
    assert second.repaired == ROWS - CHANGED and sent == ROWS
    assert second.embedded + second.reused == ROWS and second.reused == 0


def test_rows_that_cannot_be_repaired_fail_the_pass_naming_them(project):
    """The same reset, and the server refuses two of the texts the repair must embed again:
    the pass ends with failures naming them (the stage fails), not with a short table."""
    refused = [_inputs()["text"][50], _inputs()["text"][90]]
    with FakeOpenAIServer(FakeConfig(embedding_dim=64)) as srv:
        root = project(srv.base_url)
        table = VectorTable(root / "output" / "lancedb", "text_unit_text")
        _embed(root, srv.base_url, table, _inputs())
        srv.configure(embedding_dim=32, fail_inputs=refused)
        result = _embed(root, srv.base_url, table, _inputs(changed=CHANGED))
    assert result.failures, "the pass completed with rows that have no vector"
    message = " ".join(str(f) for f in result.failures)
    assert "text_unit_text repair batch" in message, message
    missing = set(_inputs()["id"]) - _current(table, _inputs(changed=CHANGED), "text-embedding-3-small")
    assert missing and {"row-050", "row-090"} <= missing
    assert len(missing) <= 2 * 16  # only the refused texts' batches are missing

