"""Providers as users run them, against the real HTTP fake server in their dialects
(tests/fake_openai.py `mode`): Azure OpenAI (deployments, api-version, `api-key`, Microsoft
Entra ID, its error bodies), and local servers (vLLM without json_schema, servers that answer
JSON inside prose).

The whole index on Azure settings, `check` included, runs through the CLI in
tests/test_providers_cli.py; the rate budgets are in tests/test_rate_budget.py.
"""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

import pytest

try:
    from tests.fake_openai import FakeConfig, FakeOpenAIServer, fake_embedding
except ImportError:  # plain `pytest` puts tests/ itself on sys.path
    from fake_openai import FakeConfig, FakeOpenAIServer, fake_embedding  # type: ignore[no-redef]

from pydantic import ValidationError

from graphrag_flow.config import LLMSettings
from graphrag_flow.errors import FatalLLMError, ItemFailedError
from graphrag_flow.llm import LLMStats, OpenAICompatibleClient, RequestLimiter
from graphrag_flow.llm.entra import SCOPE, EntraToken

KEY = "azk-test-SECRET-7f3a9c"
TOKEN = "eyJ0eXAi.ENTRA-SECRET.sig"
VERSION = "2024-10-21"
#: Azure deployments are named by the user; the model behind each is the resource's business.
DEPLOYMENTS = {"extract-4o": "gpt-4.1-mini", "embed-small": "text-embedding-3-small"}
MESSAGES = [{"role": "system", "content": "Merge the descriptions of one entity."},
            {"role": "user", "content": "Entity: Ada Lovelace\nDescriptions:\n- a mathematician\n- a writer"}]


def azure_settings(srv: FakeOpenAIServer, **kw) -> LLMSettings:
    base = dict(provider="azure", api_base=srv.base_url.removesuffix("/v1"), api_version=VERSION,
                chat_model="extract-4o", embedding_model="embed-small", request_timeout_s=2.0, max_retries=2,
                max_concurrency=4)
    return LLMSettings(**(base | kw))


def client(settings: LLMSettings, key: str | None = KEY, **kw) -> OpenAICompatibleClient:
    return OpenAICompatibleClient(settings, key, RequestLimiter(settings.max_concurrency), kw.pop("stats", LLMStats()),
                                  None, backoff_base_s=0.02, backoff_max_s=0.2, **kw)


def azure_server(**knobs) -> FakeOpenAIServer:
    return FakeOpenAIServer(FakeConfig(mode="azure", api_key=KEY, azure_deployments=DEPLOYMENTS, **knobs))


# ---- settings


def test_azure_settings_need_an_api_version_and_the_resource_endpoint():
    with pytest.raises(ValidationError, match="llm.api_version"):
        LLMSettings(provider="azure", api_base="https://res.openai.azure.com")
    with pytest.raises(ValidationError, match="2024-10-21"):
        LLMSettings(provider="azure", api_base="https://res.openai.azure.com", api_version="v1")
    with pytest.raises(ValidationError, match="resource endpoint"):
        LLMSettings(provider="azure", api_base="https://res.openai.azure.com/openai/deployments/x",
                    api_version=VERSION)
    with pytest.raises(ValidationError, match="entra_id, which sends no key"):
        LLMSettings(provider="azure", api_base="https://res.openai.azure.com", api_version=VERSION,
                    azure_auth="entra_id", api_key="k")


# ---- Azure OpenAI


def test_azure_requests_go_to_the_deployments_with_the_api_key_header():
    """The fake in azure mode serves only Azure's routes with the api-version, and only to the
    `api-key` header: answers prove the URL, the query string and the header."""
    with azure_server(log_prompts=True) as srv:
        async def go():
            async with client(azure_settings(srv)) as c:
                answer = await c.chat("summarize", "entity_summary", MESSAGES, "Ada Lovelace")
                vectors = await c.embed("embed", ["Ada", "Grace"], "batch 0")
                mode = await c.check()
            return answer, vectors, mode

        answer, vectors, mode = asyncio.run(go())
        assert answer.description
        assert vectors[1] == pytest.approx(fake_embedding("text-embedding-3-small", "Grace", 64))
        assert mode == "json_schema"
        stats = srv.stats()
        assert stats["status_counts"].get("404", 0) == 0 and stats["status_counts"].get("401", 0) == 0
        models = {e["model"] for e in stats["log"] if e["status"] == 200}
        assert models == {"gpt-4.1-mini", "text-embedding-3-small"}  # reached through the deployments


def test_the_openai_routes_are_not_azure():
    """Without provider azure the client asks /v1/chat/completions, which Azure does not serve."""
    with azure_server() as srv:
        s = LLMSettings(provider="openai", api_base=srv.base_url, request_timeout_s=2.0, max_retries=0)

        async def go():
            async with client(s) as c:
                await c.chat("summarize", "entity_summary", MESSAGES, "Ada")

        with pytest.raises(FatalLLMError, match="404"):
            asyncio.run(go())


@pytest.mark.parametrize("wrong, setting", [
    ({"key": "azk-wrong-key"}, "llm.api_key"),
    ({"chat_model": "no-such-deployment"}, "llm.chat_model"),
    ({"embedding_model": "no-such-embedder"}, "llm.embedding_model"),
    ({"api_version": "2023-01-01"}, "llm.api_version"),
])
def test_check_on_azure_fails_in_seconds_naming_the_setting(wrong, setting):
    with azure_server() as srv:
        key = wrong.pop("key", KEY)
        s = azure_settings(srv, **wrong)

        async def go():
            async with client(s, key=key) as c:
                await c.check()

        started = time.monotonic()
        with pytest.raises(FatalLLMError) as err:
            asyncio.run(go())
        assert time.monotonic() - started < 5
        assert setting in str(err.value), str(err.value)
        assert "azk-wrong-key" not in str(err.value) and KEY not in str(err.value)
        billed = srv.stats()["billing"]["billed_total"]["requests"]
        assert billed == 0  # the probes generate nothing


def test_a_content_filtered_prompt_fails_that_item_naming_it_and_is_not_retried():
    with azure_server(content_filter_markers=["BLOCKME"]) as srv:
        stats = LLMStats()

        async def go():
            async with client(azure_settings(srv), stats=stats) as c:
                bad = [MESSAGES[0], {"role": "user", "content": "Entity: X\nDescriptions:\n- BLOCKME"}]
                results = await asyncio.gather(c.chat("summarize", "entity_summary", bad, "entity X"),
                                               c.chat("summarize", "entity_summary", MESSAGES, "Ada"),
                                               return_exceptions=True)
            return results

        failed, fine = asyncio.run(go())
        assert isinstance(failed, ItemFailedError) and failed.item == "entity X"
        assert "content filter" in failed.reason and "violence (medium)" in failed.reason
        assert fine.description
        assert srv.stats()["faults"].get("content_filter") == 1  # asked once: no retry
        assert stats.get("summarize").retries == 0


def test_an_azure_429_waits_retry_after_ms():
    with azure_server(p_429=1.0, retry_after_s=0.4) as srv:
        async def go():
            async with client(azure_settings(srv, max_retries=3)) as c:
                task = asyncio.create_task(c.chat("summarize", "entity_summary", MESSAGES, "Ada"))
                await asyncio.sleep(0.15)
                srv.configure(p_429=0.0)
                started = time.monotonic()
                await task
                return time.monotonic() - started

        # retry-after-ms says 400 ms; the retry is not sooner (it would be ~20 ms by backoff)
        assert asyncio.run(go()) >= 0.2


class FakeCredential:
    """azure-identity's TokenCredential protocol: `get_token(*scopes)` -> .token, .expires_on."""

    def __init__(self, lifetime_s: float, clock):
        self.lifetime_s, self.clock, self.calls, self.scopes = lifetime_s, clock, 0, []

    def get_token(self, *scopes, **kwargs):
        self.calls += 1
        self.scopes.append(scopes)
        return SimpleNamespace(token=f"{TOKEN}-{self.calls}", expires_on=int(self.clock() + self.lifetime_s))


def test_entra_id_token_is_sent_as_bearer_and_refreshed_before_it_expires():
    now = [1_000_000.0]
    credential = FakeCredential(3600, lambda: now[0])
    token = EntraToken(credential, clock=lambda: now[0])
    with FakeOpenAIServer(FakeConfig(mode="azure", azure_ad_token=f"{TOKEN}-1",
                                     azure_deployments=DEPLOYMENTS)) as srv:
        s = azure_settings(srv, azure_auth="entra_id")

        async def chat(c):
            return await c.chat("summarize", "entity_summary", MESSAGES, "Ada")

        async def go():
            async with client(s, key=None, entra=token) as c:
                await chat(c)
                await chat(c)
                assert credential.calls == 1  # one token for the requests within its life
                now[0] += 3600 - 301  # 5 minutes and a second before it expires: still good
                await chat(c)
                assert credential.calls == 1
                now[0] += 2  # less than 5 minutes left: the next request fetches a new one first
                srv.configure(azure_ad_token=f"{TOKEN}-2")  # the old one is refused from now on
                await chat(c)
                assert credential.calls == 2
                srv.configure(azure_ad_token="something-else")
                with pytest.raises(FatalLLMError) as err:
                    await chat(c)
                return str(err.value)

        message = asyncio.run(go())
        assert credential.scopes[0] == (SCOPE,)
        assert "llm.azure_auth" in message and "Cognitive Services OpenAI User" in message
        assert TOKEN not in message and TOKEN not in repr(token)


def test_entra_id_without_azure_identity_names_the_extra(monkeypatch):
    import builtins

    from graphrag_flow.errors import SettingsError
    from graphrag_flow.llm.entra import run_token

    real_import = builtins.__import__

    def no_azure(name, *args, **kwargs):
        if name.startswith("azure"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_azure)
    s = LLMSettings(provider="azure", api_base="https://res.openai.azure.com", api_version=VERSION,
                    azure_auth="entra_id")
    with pytest.raises(SettingsError, match=r"graphrag-flow\[azure\]"):
        run_token(s)


# ---- local servers


def local_settings(srv: FakeOpenAIServer, **kw) -> LLMSettings:
    return LLMSettings(**(dict(provider="openai", api_base=srv.base_url, chat_model="llama3.1:8b",
                               embedding_model="nomic-embed-text:latest", request_timeout_s=2.0, max_retries=2,
                               max_concurrency=4) | kw))


LOCAL_MODELS = ["llama3.1:8b", "nomic-embed-text:latest"]


def test_vllm_without_json_schema_falls_back_to_json_object_and_check_says_so():
    with FakeOpenAIServer(FakeConfig(mode="vllm", models=LOCAL_MODELS, json_schema_supported=False)) as srv:
        stats = LLMStats()

        async def go():
            async with client(local_settings(srv), key=None, stats=stats) as c:
                mode = await c.check()
                answer = await c.chat("summarize", "entity_summary", MESSAGES, "Ada")
            return mode, answer

        mode, answer = asyncio.run(go())
        assert mode == "json_object" and answer.description
        assert any("json_object" in w for w in stats.get("check").warnings)


@pytest.mark.parametrize("style", ["fenced", "trailing"])
def test_json_inside_prose_is_taken_out_and_validated(style):
    with FakeOpenAIServer(FakeConfig(mode="ollama", models=LOCAL_MODELS, prose_json=style)) as srv:
        stats = LLMStats()

        async def go():
            async with client(local_settings(srv), key=None, stats=stats) as c:
                mode = await c.check()
                extraction = await c.chat("extract", "graph_extraction", [
                    {"role": "system", "content": "Extract entities and relationships."},
                    {"role": "user", "content": "Ada Lovelace worked with Charles Babbage in London."}], "unit 1")
            return mode, extraction

        mode, extraction = asyncio.run(go())
        assert mode == "prose"
        assert extraction.entities
        assert stats.get("extract").retries == 0 and stats.get("extract").failures == 0
        assert any("inside prose" in w for row in stats.as_rows() for w in row["warnings"])  # in the summary


def test_graphrag_query_blocks_for_azure_name_the_deployment_and_version(tmp_path):
    """`init`'s GraphRAG blocks for Azure settings are what `check` compares with; the openai
    blocks on Azure settings are reported (GraphRAG would call api.openai.com)."""
    import yaml

    from graphrag_flow.graphrag_query import graphrag_blocks, query_block_warnings

    s = LLMSettings(provider="azure", api_base="https://res.openai.azure.com", api_version=VERSION,
                    chat_model="graph-chat", embedding_model="graph-embed")
    blocks = graphrag_blocks(s)
    chat = blocks["completion_models"]["default_completion_model"]
    assert chat == {"model_provider": "azure", "model": "graph-chat", "azure_deployment_name": "graph-chat",
                    "api_version": VERSION, "auth_method": "api_key", "api_key": "${AZURE_OPENAI_API_KEY}",
                    "api_base": "https://res.openai.azure.com"}
    (tmp_path / "settings.yaml").write_text(yaml.safe_dump(blocks))
    assert query_block_warnings(tmp_path, s) == []
    entra = s.model_copy(update={"azure_auth": "entra_id"})
    assert graphrag_blocks(entra)["embedding_models"]["default_embedding_model"]["auth_method"] == \
        "azure_managed_identity"
    openai_blocks = graphrag_blocks(s.model_copy(update={"provider": "openai"}))
    (tmp_path / "settings.yaml").write_text(yaml.safe_dump(openai_blocks))
    assert any("model_provider is 'openai'" in w for w in query_block_warnings(tmp_path, s))


def test_an_api_version_too_old_for_json_schema_falls_back_and_another_api_version_400_stops():
    from multidict import CIMultiDict, CIMultiDictProxy

    from graphrag_flow.llm.azure import azure_failure
    from graphrag_flow.llm.outcomes import BadRequest, Reply, says_json_schema_unsupported

    def reply(message: str) -> Reply:
        body = ('{"error": {"code": "BadRequest", "message": "%s"}}' % message).encode()
        return Reply(400, CIMultiDictProxy(CIMultiDict()), body)

    s = LLMSettings(provider="azure", api_base="https://res.openai.azure.com", api_version="2024-06-01")
    old = azure_failure(reply("response_format value as json_schema is enabled only for api versions "
                              "2024-08-01-preview and later"), "https://res", None, str, settings=s)
    assert isinstance(old, BadRequest) and says_json_schema_unsupported(old.message)
    other = azure_failure(reply("The api-version 2024-06-01 is not supported by this model"), "https://res", None,
                          str, settings=s)
    assert isinstance(other, FatalLLMError) and "llm.api_version" in str(other)


def test_the_azure_key_comes_from_its_own_variable_and_entra_id_reads_none(monkeypatch):
    from flows.secret_lookup import resolve_secrets
    from graphrag_flow.config import Settings

    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-not-for-azure")
    azure = LLMSettings(provider="azure", api_base="https://res.openai.azure.com", api_version=VERSION)
    resolved = asyncio.run(resolve_secrets(Settings(llm=azure)))
    assert resolved.llm.api_key is None  # an OpenAI key is never sent to Azure
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", KEY)
    assert asyncio.run(resolve_secrets(Settings(llm=azure))).llm.api_key.get_secret_value() == KEY
    entra = azure.model_copy(update={"azure_auth": "entra_id"})
    assert asyncio.run(resolve_secrets(Settings(llm=entra))).llm.api_key is None


def test_an_api_version_before_json_schema_falls_back_to_json_object_end_to_end():
    with azure_server() as srv:
        stats = LLMStats()

        async def go():
            async with client(azure_settings(srv, api_version="2024-06-01"), stats=stats) as c:
                mode = await c.check()
                answer = await c.chat("summarize", "entity_summary", MESSAGES, "Ada")
            return mode, answer

        mode, answer = asyncio.run(go())
        assert mode == "json_object" and answer.description
        assert stats.get("summarize").failures == 0
