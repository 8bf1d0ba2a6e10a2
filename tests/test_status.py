"""`graphrag-flow status` on a project whose extraction was cut short: it counts the text units
whose answers are in the answer cache, with the very keys the extract stage looks up."""

from __future__ import annotations

import asyncio

import pandas as pd
import pytest

from graphrag_flow.config import load_settings
from graphrag_flow.llm.answer_cache import AnswerCache
from graphrag_flow.status import project_status
from graphrag_flow.storage.paths import ProjectPaths
from graphrag_flow.storage.stages import StageStore

try:
    from tests.fake_openai import FakeConfig, FakeOpenAIServer
except ImportError:  # plain `pytest` puts tests/ itself on sys.path
    from fake_openai import FakeConfig, FakeOpenAIServer  # type: ignore[no-redef]

from conftest import make_project

UNITS = ["Guido van Rossum created Python.", "Barry Warsaw wrote PEP 8 with Guido.", "Tim Peters wrote PEP 20."]


def _chunked_project(tmp_path, llm: dict | None = None):
    root = make_project(tmp_path / "project", **({"llm": llm} if llm else {}))
    frame = pd.DataFrame({"id": [f"u{i}" for i in range(len(UNITS))], "text": UNITS, "n_tokens": [8] * len(UNITS)})
    StageStore(ProjectPaths(root).stages).save("chunk", "k", {"text_units": frame})
    return root


def _extract_row(root):
    report = project_status(root, load_settings(root))
    return next(r for r in report.rows if r.item == "stage extract")


def test_offline_extraction_cut_short_shows_the_units_done(tmp_path):
    from graphrag_flow.stages.extract.offline import offline_extractor

    root = _chunked_project(tmp_path)
    assert _extract_row(root).progress == "0/3"  # no answer cache yet
    cache = AnswerCache(root / "cache" / "llm_answers.sqlite")
    extract = offline_extractor(cache)
    for text in UNITS[:2]:
        asyncio.run(extract("u", text))
    cache.close()
    row = _extract_row(root)
    assert (row.progress, row.verified) == ("2/3", False)


@pytest.mark.parametrize("answered", [0, 1, 3])
def test_llm_extraction_cut_short_shows_the_units_done(tmp_path, answered):
    from graphrag_flow.llm.client import OpenAICompatibleClient
    from graphrag_flow.llm.limiter import RequestLimiter
    from graphrag_flow.llm.stats import LLMStats
    from graphrag_flow.stages.extract.llm import llm_extractor
    from graphrag_flow.prompts import load_prompt

    with FakeOpenAIServer(FakeConfig()) as srv:
        root = _chunked_project(tmp_path, llm={"provider": "openai", "api_base": srv.base_url, "api_key": "sk-x"})
        settings = load_settings(root)

        async def extract_some() -> None:
            cache = AnswerCache(root / "cache" / "llm_answers.sqlite")
            client = OpenAICompatibleClient(settings.llm, "sk-x", RequestLimiter(4), LLMStats(), cache)
            async with client:
                extract = llm_extractor(client, load_prompt("graph_extraction", None, root), settings.chunks.size)
                for text in UNITS[:answered]:
                    await extract("u", text)
            cache.close()

        asyncio.run(extract_some())
    row = _extract_row(root)
    assert row.progress == f"{answered}/3"
    assert row.verified is False
