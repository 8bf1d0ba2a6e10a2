"""`graphrag-flow check` and the preflight `index` runs: fail in seconds, not at hour three.

The preflight asks only `GET /models` (the key is accepted, the URL is right, both models
exist), so a re-run of a finished index still sends no chat or embedding request; `check`
also has each model answer one tiny request.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from graphrag_flow.config import Settings
from graphrag_flow.errors import FatalLLMError
from graphrag_flow.urls import safe_url, scrub_url

#: The preflight and check must answer fast even against a hung server.
CHECK_TIMEOUT_S = 4.0


async def run_check(root: Path, settings: Settings, quick: bool) -> list[str]:
    """`check` (quick=False): the project's folders writable, the prompts found, the secrets
    resolved, the LLM provider, and Neo4j when neo4j.uri is set.

    The index preflight (quick=True) leaves Neo4j out on purpose: the sink runs last, after the
    parquet and LanceDB outputs are saved, so a Neo4j outage must not stop the indexing.
    """
    from flows.secret_lookup import resolve_secrets
    from graphrag_flow.prompts import describe_prompts
    from graphrag_flow.storage.paths import ProjectPaths
    from graphrag_flow.storage.reach import check_stores
    from graphrag_flow.storage.writable import require_writable

    folders = ProjectPaths(root).written_by_a_run()
    await asyncio.to_thread(require_writable, folders)
    prompts = describe_prompts(settings.llm.prompts_dir, root)
    settings = await resolve_secrets(settings)  # a missing Secret block fails here, naming its setting
    stores = await asyncio.to_thread(check_stores, settings)  # in seconds, naming input.dir / output.dir
    lines = await _check_llm(root, settings, quick)
    lines.append(f"{', '.join(str(f) for f in folders)} are writable")
    lines.extend(stores)
    lines.append(prompts)
    if settings.neo4j.uri and not quick:
        lines.append(await check_neo4j(settings))
    return lines


async def check_neo4j(settings: Settings) -> str:
    """Connect and authenticate (verify_connectivity) in a thread; errors name neo4j.uri/neo4j.password.

    `settings` has its secrets resolved (flows/secret_lookup.py)."""
    from graphrag_flow.config import secret_value
    from graphrag_flow.stages.neo4j import Neo4jSink, safe_uri

    password = secret_value(settings.neo4j.password)

    def connect() -> None:
        with Neo4jSink(settings.neo4j, password, connection_timeout_s=CHECK_TIMEOUT_S,
                       max_retry_time_s=CHECK_TIMEOUT_S) as sink:
            sink.verify_connectivity()

    await asyncio.to_thread(connect)
    return f"Neo4j at {safe_uri(settings.neo4j.uri or '')} accepted the credentials of neo4j.user={settings.neo4j.user!r}"


async def _check_llm(root: Path, settings: Settings, quick: bool) -> list[str]:
    lines = [f"settings in {root} are valid"]
    if settings.llm.provider == "offline":
        from graphrag_flow.stages.embed.backends import OfflineBackend

        embedder = await asyncio.to_thread(lambda: OfflineBackend(settings).embedder)
        lines.append(f"offline provider: local embedding model {embedder.model_name} loaded ({embedder.dimension}-d)")
        return lines
    azure = settings.llm.provider == "azure"
    base_url = settings.llm.require_base_url()
    from graphrag_flow.config import secret_value
    from graphrag_flow.llm import LLMStats, OpenAICompatibleClient, RequestLimiter
    from graphrag_flow.llm.entra import run_token

    llm = settings.llm.model_copy(update={"max_retries": 0})
    client = OpenAICompatibleClient(
        llm, api_key=secret_value(settings.llm.api_key), limiter=RequestLimiter(2), stats=LLMStats(), cache=None,
        timeout_cap=(CHECK_TIMEOUT_S, "`graphrag-flow check` and the index preflight"), entra=run_token(llm),
    )
    api_base = safe_url(base_url)
    async with client:
        try:
            if azure:  # Azure lists no deployments to a key: each deployment is probed instead
                await client.probe_deployments()
                models = []
            else:
                models = await client.list_models()
        except FatalLLMError:
            raise
        except Exception as exc:  # connection refused, timeout, bad answer
            raise FatalLLMError(f"cannot reach {api_base} (setting llm.api_base): "
                                f"{scrub_url(str(exc), base_url)}") from None
        if azure:
            credential = "the Entra ID token" if llm.uses_entra_id else "the key"
            lines.append(f"{api_base} (Azure OpenAI, api-version {llm.api_version}) has deployments "
                         f"{llm.chat_model} and {llm.embedding_model}; {credential} was accepted")
        else:
            lines.append(f"{api_base} answered GET /models; the key was accepted")
        for setting, model in (("llm.chat_model", llm.chat_model), ("llm.embedding_model", llm.embedding_model)):
            if models and model not in models:
                raise FatalLLMError(
                    f"model '{model}' (setting {setting}) is not served by {api_base}"
                )
        if not quick:
            mode = await client.check()
            lines.append(f"{llm.chat_model} and {llm.embedding_model} each answered a tiny request")
            lines.append(STRUCTURED_OUTPUT[mode])
    return lines


#: What `check` says of the structured-output mode the chat model accepted.
STRUCTURED_OUTPUT = {
    "json_schema": "structured output: the server accepted response_format json_schema (strict)",
    "json_object": "structured output: the server refused response_format json_schema; runs use json_object "
                   "with the schema in the system prompt (answers are still validated against it)",
    "prose": "structured output: the server ignores response_format and answered the JSON inside prose; runs "
             "take the JSON object out of the text and validate it against the schema (expect more retries)",
}


def query_block_warnings(root: Path, settings: Settings) -> list[str]:
    """Where settings.yaml's GraphRAG query blocks disagree with llm.* (printed by `check`)."""
    from graphrag_flow.graphrag_query import query_block_warnings as warnings

    return warnings(root, settings.llm)

