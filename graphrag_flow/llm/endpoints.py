"""Where each request goes and how it says who sends it, per provider.

| provider | chat, embeddings | models | key |
| --- | --- | --- | --- |
| `openai` | `{api_base}/chat/completions`, `{api_base}/embeddings` | `GET {api_base}/models` | `Authorization: Bearer <key>` |
| `azure` | `{api_base}/openai/deployments/{deployment}/chat/completions?api-version={llm.api_version}` (and `/embeddings`); the deployment is `llm.chat_model` or `llm.embedding_model` | none: `check` probes each deployment instead (graphrag_flow/llm/azure.py) | `api-key: <key>`, or `Authorization: Bearer <Entra ID token>` per request (graphrag_flow/llm/entra.py) |

Azure's body needs no `model`: the deployment names it (the client still sends it; Azure ignores it).
"""

from __future__ import annotations

from yarl import URL

from graphrag_flow.config import LLMSettings

#: The requests a client makes, by the path below `llm.api_base` an OpenAI-compatible API serves them at.
PATHS = ("chat/completions", "embeddings", "models")


def request_urls(settings: LLMSettings, api_base: str) -> dict[str, URL]:
    """The URL of each request the provider serves (Azure: no `models`)."""
    if settings.provider != "azure":
        return {path: URL(f"{api_base}/{path}") for path in PATHS}
    # Azure's deployment names are letters, digits, '_', '-' and '.'; yarl quotes anything else.
    query = {"api-version": settings.api_version or ""}

    def deployment(name: str, operation: str) -> URL:
        return URL(f"{api_base}/openai/deployments/{name}/{operation}").with_query(query)

    return {"chat/completions": deployment(settings.chat_model, "chat/completions"),
            "embeddings": deployment(settings.embedding_model, "embeddings")}


def key_header(settings: LLMSettings, key: str) -> dict[str, str]:
    """The session header that carries an API key."""
    if settings.provider == "azure":
        return {"api-key": key}
    return {"Authorization": f"Bearer {key}"}
