"""How other OpenAI-compatible providers answer, for the fake server's ``mode`` and
``prose_json`` knobs (tests/fake_openai.py). Every body here is copied from what the provider
documents or was seen sending (sources in the module docstring of tests/fake_openai.py).
"""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import Any

MODES = ("openai", "azure", "vllm", "ollama")
PROSE_STYLES = ("off", "fenced", "trailing")

# --------------------------------------------------------------------------- Azure OpenAI

#: Azure's data-plane routes: POST {endpoint}/openai/deployments/{deployment}/{operation}?api-version=...
AZURE_ROUTE = re.compile(r"^/openai/deployments/([^/]+)/(chat/completions|embeddings)$")
AZURE_OPERATIONS = {"chat": "ChatCompletions_Create", "embeddings": "Embeddings_Create"}
#: GA and preview data-plane versions the fake accepts unless told otherwise (api_versions knob).
AZURE_API_VERSIONS = ("2024-02-01", "2024-06-01", "2024-10-21", "2024-12-01-preview", "2025-01-01-preview",
                      "2025-03-01-preview", "2025-04-01-preview")
AZURE_REGION = "Fake Region"


def azure_error(status: int, code: str, message: str) -> tuple[int, dict, dict]:
    return status, {"error": {"code": code, "message": message}}, {}


def azure_resource_not_found() -> tuple[int, dict, dict]:
    """Unknown path, missing or unsupported api-version: Azure answers all three the same."""
    return azure_error(404, "404", "Resource not found")


def azure_deployment_not_found() -> tuple[int, dict, dict]:
    return azure_error(404, "DeploymentNotFound", "The API deployment for this resource does not exist. If you created "
                                                  "the deployment within the last 5 minutes, please wait a moment and try again.")


def azure_key_denied() -> tuple[int, dict, dict]:
    return azure_error(401, "401", "Access denied due to invalid subscription key or wrong API endpoint. Make sure to "
                                   "provide a valid key for an active subscription and use a correct regional API "
                                   "endpoint for your resource.")


def azure_token_denied() -> tuple[int, dict, dict]:
    """A bad Entra ID token: Azure's body has no ``error`` object, only these two fields."""
    return 401, {"statusCode": 401, "message": "Unauthorized. Access token is missing, invalid, audience is incorrect "
                                               "(https://cognitiveservices.azure.com), or have expired."}, {}


_SAFE = {"filtered": False, "severity": "safe"}


def azure_filter_results(violence: dict | None = None) -> dict[str, Any]:
    return {"hate": dict(_SAFE), "self_harm": dict(_SAFE), "sexual": dict(_SAFE),
            "violence": violence or dict(_SAFE)}


def azure_content_filtered() -> tuple[int, dict, dict]:
    """The prompt tripped the content filter (Microsoft's documented 400 body)."""
    results = azure_filter_results({"filtered": True, "severity": "medium"})
    results["jailbreak"] = {"filtered": False, "detected": False}
    return 400, {"error": {
        "message": "The response was filtered due to the prompt triggering Azure OpenAI's content management policy. "
                   "Please modify your prompt and retry. To learn more about our content filtering policies please "
                   "read our documentation: https://go.microsoft.com/fwlink/?linkid=2198766",
        "type": None, "param": "prompt", "code": "content_filter", "status": 400,
        "innererror": {"code": "ResponsibleAIPolicyViolation", "content_filter_result": results},
    }}, {}


#: The first data-plane api-version whose chat completions take response_format json_schema.
AZURE_JSON_SCHEMA_SINCE = "2024-08-01-preview"


def azure_json_schema_too_old() -> tuple[int, dict, dict]:
    """json_schema on an older api-version: a 400 (as users quote it; the client falls back)."""
    return azure_error(400, "BadRequest", "response_format value as json_schema is enabled only for api versions "
                                          f"{AZURE_JSON_SCHEMA_SINCE} and later")


def azure_rate_limited(endpoint: str, api_version: str, kind: str, seconds: int) -> tuple[int, dict, dict]:
    limit = "call rate limit" if kind == "requests" else "token rate limit"
    return azure_error(429, "429", f"Requests to the {AZURE_OPERATIONS.get(endpoint, 'ChatCompletions_Create')} "
                                   f"Operation under Azure OpenAI API version {api_version} have exceeded {limit} of "
                                   f"your current OpenAI S0 pricing tier. Please retry after {seconds} seconds. Please "
                                   "go here: https://aka.ms/oai/quotaincrease if you would like to further increase the "
                                   "default rate limit.")


def azure_decorate_chat(completion: dict[str, Any]) -> None:
    """Azure adds the content filter's verdicts to every chat answer."""
    completion["prompt_filter_results"] = [{"prompt_index": 0, "content_filter_results": azure_filter_results()}]
    for choice in completion["choices"]:
        choice["content_filter_results"] = azure_filter_results()


def azure_headers() -> dict[str, str]:
    return {"apim-request-id": str(uuid.uuid4()), "x-ms-region": AZURE_REGION}


# --------------------------------------------------------------------------- vLLM and Ollama

_VLLM_TYPES = {400: "BadRequestError", 404: "NotFoundError", 500: "InternalServerError"}
_OLLAMA_TYPES = {400: "invalid_request_error", 404: "not_found_error"}


def vllm_error(status: int, message: str) -> dict[str, Any]:
    """vLLM's ErrorResponse: top-level fields, ``code`` the HTTP status."""
    return {"object": "error", "message": message, "type": _VLLM_TYPES.get(status, "BadRequestError"),
            "param": None, "code": status}


def ollama_error(status: int, message: str) -> dict[str, Any]:
    """Ollama's OpenAI-compatible error (openai/openai.go NewError)."""
    return {"error": {"message": message, "type": _OLLAMA_TYPES.get(status, "api_error"), "param": None, "code": None}}


def vllm_json_schema_rejected() -> tuple[int, dict, dict]:
    """vLLM before json_schema support (PR #7654, August 2024): ``ResponseFormat.type`` was
    ``Literal["text", "json_object"]`` and the request validation error came back as a 400."""
    detail = [{"type": "literal_error", "loc": ("body", "response_format", "type"),
               "msg": "Input should be 'text' or 'json_object'", "input": "json_schema",
               "ctx": {"expected": "'text' or 'json_object'"}}]
    return 400, vllm_error(400, repr(detail)), {}


def model_not_found(mode: str, model: str) -> dict[str, Any]:
    if mode == "vllm":
        return vllm_error(404, f"The model `{model}` does not exist.")
    if mode == "ollama":
        return ollama_error(404, f'model "{model}" not found, try pulling it first')
    return {"error": {"message": f"The model `{model}` does not exist or you do not have access to it.",
                      "type": "invalid_request_error", "param": None, "code": "model_not_found"}}


def as_dialect(mode: str, status: int, payload: Any) -> Any:
    """An OpenAI-shaped error body in the local server's own shape (others unchanged)."""
    if mode not in ("vllm", "ollama") or not isinstance(payload, dict) or not isinstance(payload.get("error"), dict):
        return payload
    message = str(payload["error"].get("message", ""))
    return vllm_error(status, message) if mode == "vllm" else ollama_error(status, message)


def model_list(mode: str, models: list[str], max_model_len: int) -> dict[str, Any]:
    """``GET /v1/models`` as each server lists its models."""
    now = int(time.time())
    if mode == "vllm":
        data = [{"id": m, "object": "model", "created": now, "owned_by": "vllm", "root": m, "parent": None,
                 "max_model_len": max_model_len,
                 "permission": [{"id": f"modelperm-{uuid.uuid4().hex}", "object": "model_permission", "created": now,
                                 "allow_create_engine": False, "allow_sampling": True, "allow_logprobs": True,
                                 "allow_search_indices": False, "allow_view": True, "allow_fine_tuning": False,
                                 "organization": "*", "group": None, "is_blocking": False}]}
                for m in models]
    elif mode == "ollama":
        # owned_by is the name's namespace: "library" for the official models
        data = [{"id": m, "object": "model", "created": now,
                 "owned_by": m.split("/", 1)[0] if "/" in m else "library"} for m in models]
    else:
        data = [{"id": m, "object": "model", "created": 0, "owned_by": "fake"} for m in models]
    return {"object": "list", "data": data}


# --------------------------------------------------------------------------- prose around JSON


def prose_around(json_text: str, style: str) -> str:
    """What a server that ignores ``response_format`` sends back: the JSON inside prose."""
    if style == "fenced":
        pretty = json.dumps(json.loads(json_text), indent=2)
        return f"Here is the JSON you asked for:\n\n```json\n{pretty}\n```\n\nLet me know if you need anything else."
    return f"{json_text}\n\nI took these from the text above; tell me if you want more detail."
