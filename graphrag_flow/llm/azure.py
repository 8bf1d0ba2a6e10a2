"""Azure OpenAI's own error bodies, read into the error table (graphrag_flow/llm/outcomes.py).

| Azure answers | outcome |
| --- | --- |
| 401/403 to an `api-key` (`"Access denied due to invalid subscription key or wrong API endpoint..."`) | `FatalLLMError` naming llm.api_key, llm.api_key_secret and AZURE_OPENAI_API_KEY |
| 401/403 to an Entra ID token (`{"statusCode": 401, "message": "Unauthorized. Access token is missing, invalid, ..."}`, `PermissionDenied`) | `FatalLLMError` naming llm.azure_auth and the role the identity needs |
| 404 `DeploymentNotFound` | `FatalLLMError` naming the deployment and its setting (llm.chat_model or llm.embedding_model) |
| 404 `Resource not found` (an api-version the resource does not serve, or a wrong path) | `FatalLLMError` naming llm.api_version, then llm.api_base |
| 400 `content_filter` (the prompt tripped the content filter) | `BadRequest`: that item fails, naming the categories filtered; never retried |
| 400 naming the api-version (one the deployment's model does not take) | `FatalLLMError` naming llm.api_version, unless it is about json_schema (an api-version before 2024-08-01-preview): `BadRequest`, and the client falls back to json_object |
| 429 with `retry-after-ms` | the generic row: retried after it (outcomes.py `retry_after` reads it first) |
| anything else | the generic table |

`check` and the index preflight cannot list an Azure resource's deployments with the key
(`GET /models` is not served): `PROBES` are bodies Azure refuses with a 400 after it has checked
the route, the api-version, the key and the deployment, so a 400 proves all four, generates
nothing and bills nothing.
"""

from __future__ import annotations

from typing import Any, Callable

from graphrag_flow.config import LLMSettings
from graphrag_flow.errors import FatalLLMError
from graphrag_flow.llm.outcomes import BadRequest, Reply, says_json_schema_unsupported, server_message, status_failure

#: Per request path: a body every deployment refuses as invalid (400), after the checks above.
PROBES = {"chat/completions": {"messages": []}, "embeddings": {"input": []}}
#: The role an identity needs on the resource to call its deployments with an Entra ID token.
ENTRA_ROLE = "Cognitive Services OpenAI User"


def azure_failure(reply: Reply, shown_base: str, model_setting: tuple[str, str] | None,
                  scrub: Callable[[str], str], *, settings: LLMSettings, key_sent: bool = True) -> Exception:
    """The error table's outcome of a non-200 reply from Azure OpenAI, to raise."""
    status = reply.status
    payload = _json(reply)
    error = payload.get("error") if isinstance(payload, dict) else None
    code = str(error.get("code") or "") if isinstance(error, dict) else ""
    message = server_message(reply, scrub)
    if status in (401, 403):
        if settings.azure_auth == "entra_id":
            return FatalLLMError(f"{shown_base} refused the Microsoft Entra ID token (llm.azure_auth: entra_id; "
                                 f"HTTP {status}): {message} The identity DefaultAzureCredential found needs the "
                                 f"'{ENTRA_ROLE}' role on the resource.")
        return FatalLLMError(f"API key rejected by {shown_base} (Azure OpenAI); set llm.api_key, llm.api_key_secret "
                             f"or AZURE_OPENAI_API_KEY, the key of this resource (HTTP {status})")
    if status == 404:
        if code == "DeploymentNotFound" and model_setting is not None:
            setting, deployment = model_setting
            return FatalLLMError(f"{shown_base} has no deployment '{deployment}' (setting {setting}: with "
                                 f"llm.provider azure it names a deployment of the resource, not a model). "
                                 f"Server said: {message}")
        return FatalLLMError(f"{shown_base} answered 404 (Resource not found) for api-version {settings.api_version}: "
                             f"check llm.api_version (a data-plane version the resource serves, e.g. 2024-10-21), "
                             f"then llm.api_base (the resource endpoint https://NAME.openai.azure.com). "
                             f"Server said: {message}")
    if status == 400 and code == "content_filter":
        return BadRequest(status, content_filter_message(error))
    # An api-version too old for json_schema says so too: that one falls back to json_object.
    names_version = "api version" in message.lower().replace("-", " ")
    if status == 400 and names_version and not says_json_schema_unsupported(message):
        return FatalLLMError(f"{shown_base} refused api-version {settings.api_version} (setting llm.api_version): "
                             f"{message}")
    return status_failure(reply, shown_base, model_setting, scrub, key_sent=key_sent)


def content_filter_message(error: dict) -> str:
    """What the content filter said, by category: `violence (medium)`."""
    inner = error.get("innererror") if isinstance(error.get("innererror"), dict) else {}
    results = inner.get("content_filter_result") or inner.get("content_filter_results") or {}
    flagged = [f"{name} ({verdict.get('severity', 'filtered')})" for name, verdict in sorted(results.items())
               if isinstance(verdict, dict) and verdict.get("filtered")]
    what = ", ".join(flagged) or "no category given"
    return f"Azure OpenAI's content filter refused the prompt: {what} (code content_filter; not retried)"


def _json(reply: Reply) -> Any:
    try:
        return reply.json()
    except ValueError:
        return None
