"""A real HTTP fake of an OpenAI-compatible API, for tests and benchmarks.

It serves what graphrag-flow's client asks of an OpenAI-compatible API (graphrag_flow/llm/):
``POST /v1/embeddings``, ``POST /v1/chat/completions`` (structured output by
``response_format.json_schema.name``), ``GET /v1/models``, plus control
endpoints ``GET /stats``, ``POST /reset`` and ``POST /config`` (never behind the API key). The
``mode`` knob makes it Azure OpenAI, vLLM or Ollama instead (below).

Pure asyncio (no web framework), so faults act on the socket itself: a "disconnect" closes
the connection with no response (httpx sees ``RemoteProtocolError: Server disconnected``), a
"hang" never answers until the client gives up or the server stops.

In process::

    with FakeOpenAIServer(FakeConfig(latency_s=0.05, capacity=8)) as srv:
        srv.base_url        # "http://127.0.0.1:PORT/v1"
        srv.configure(p_429=0.2)
        srv.stats(); srv.reset()

As a subprocess (from the repo root)::

    python -m tests.fake_openai --port 0 --latency 0.2 --capacity 64 --p-disconnect 0.1
    # prints "LISTENING http://127.0.0.1:PORT/v1" and serves until killed

or ``proc, base_url = start_fake_server_process(latency_s=0.2)``; ``fetch_stats(base_url)``,
``configure_remote(base_url, p_hang=0.1)``, ``stop_fake_server_process(proc)``.
``python -m tests.fake_openai`` needs no ``tests/__init__.py`` (``tests`` is a namespace
package from the repo root); the helper also puts the repo root on ``PYTHONPATH``.

Knobs are the fields of ``FakeConfig``; each is a CLI flag (``--p-disconnect``; aliases
``--latency``, ``--per-item-latency``, ``--retry-after``, ``--context-limit``), a key of
``--config-json`` and of ``POST /config``. Faults are drawn per request, in arrival order,
from ``random.Random(seed)``, so a run is repeatable; ``hang``/``disconnect``/``429``/``500``/
``malformed`` share one draw (their probabilities add up, at most 1).

GraphRAG's own query engine (``graphrag query``, 3.3.0) is answered too: chat requests without
one of our schemas are recognised by their prompts (``graphrag_query_kind``) and answered in
the shape GraphRAG parses — global map ``{"points": [{"description", "score"}]}``, the DRIFT
primer's ``PrimerResponse`` json_schema, DRIFT's local JSON, and plain answers starting with
``GRAPHRAG_ANSWER_PREFIX`` — as server-sent events when the request has ``"stream": true``.

Usage and billing (issue #21). Every 200 answer carries ``usage`` as OpenAI sends it, in cl100k
tokens: chat ``prompt_tokens`` by OpenAI's per-message rule (3 per message + its role, content
and name, a name 1 more, 3 priming the reply: tests/fake_usage.py; it gives the 129 tokens the
OpenAI API counted for the openai-cookbook's example), ``completion_tokens`` the answer's
content; embeddings the inputs' tokens. ``"stream": true`` answers carry it only when
``stream_options.include_usage`` asks, in a last chunk without choices, as OpenAI's do. The knob
``usage: false`` sends none (some local servers) and the ledger still counts. The ledger bills an
answer when it is generated (a 200 made within its latency), even when the client has gone, as
a provider bills work done; errors, 429s and injected faults are not billed. ``billed_delivered``
counts the billed answers written to a connection the client still had open, so a test compares
the usage its client recorded with that, exactly, and ``billed_total`` with what a bill says.

Rate limits (issue #22; rules in tests/fake_ratelimit.py). With ``rpm`` and/or ``tpm`` set,
requests count in a window sliding over ``rate_window_s`` seconds (default 60) from their
admission, for their prompt tokens (as ``usage`` counts them) plus their completion allowance:
``max_completion_tokens``, else ``max_tokens`` (times ``n``), else ``rate_completion_tokens``
(embeddings: none), as OpenAI and Azure count the tokens a request may use when it arrives. Over
a limit: 429 with ``Retry-After`` (whole seconds, rounded up) and OpenAI's body (``type``
``requests`` or ``tokens``, ``code`` ``rate_limit_exceeded``); a refused request is not counted.
One that alone exceeds ``tpm`` gets "Request too large" and no ``Retry-After``. Every answer
after admission carries ``x-ratelimit-limit-requests``/``-tokens``, ``x-ratelimit-remaining-*``
and ``x-ratelimit-reset-*`` (when the window is empty again, OpenAI's format: ``6m0s``, ``1s``,
``20ms``) for the limits configured.

Azure OpenAI (``mode: azure``, issue #22). Serves ``POST /openai/deployments/{deployment}/
chat/completions?api-version=...`` and ``.../embeddings`` and nothing else: any other path (the
OpenAI routes too) and a missing or unsupported ``api-version`` (``azure_api_versions``) get 404
``{"error": {"code": "404", "message": "Resource not found"}}``, before the credentials are
checked. Credentials (when ``api_key`` or ``azure_ad_token`` is set): the ``api-key`` header, or
``Authorization: Bearer <azure_ad_token>`` (an Entra ID token); a wrong key gets 401 ``{"error":
{"code": "401", "message": "Access denied due to invalid subscription key or wrong API
endpoint..."}}``, a wrong token 401 ``{"statusCode": 401, "message": "Unauthorized. Access token
is missing, invalid, audience is incorrect (https://cognitiveservices.azure.com), or have
expired."}``. Deployments map to models (``azure_deployments``, ``{"deployment": "model"}``;
unset: each of ``models`` is a deployment of its own name); an unknown one gets 404
``DeploymentNotFound``; the body's ``model`` is ignored. A chat prompt holding one of
``content_filter_markers`` gets 400 ``code: content_filter`` with
``innererror.content_filter_result`` (violence filtered, severity medium; fault
``content_filter``). ``json_schema`` on an api-version before 2024-08-01-preview gets a 400
"response_format value as json_schema is enabled only for api versions 2024-08-01-preview and
later". Chat answers carry ``prompt_filter_results`` and ``content_filter_results``, every answer ``apim-request-id`` and ``x-ms-region``. 429s (rate limits and ``p_429``) have
Azure's body ("Requests to the ChatCompletions_Create Operation under Azure OpenAI API version
... have exceeded token rate limit ... Please retry after N seconds ...") and ``retry-after``
plus ``retry-after-ms`` (``p_429``: when ``retry_after_s`` is set). Other errors keep OpenAI's
body, as Azure passes the model's errors through.

Local servers (issue #22). ``mode: vllm``: errors in vLLM's shape (``{"object": "error",
"message", "type": "BadRequestError"|"NotFoundError", "param", "code": <status>}``; a wrong key
``{"error": "Unauthorized"}``), unknown models "The model `x` does not exist.", ``/v1/models`` as
vLLM lists them (``owned_by: vllm``, ``root``, ``max_model_len``, ``permission``); with
``json_schema_supported: false`` a ``json_schema`` response_format gets the 400 of vLLM before
json_schema support (PR #7654, August 2024): the pydantic ``literal_error`` "Input should be
'text' or 'json_object'"; ``json_object`` works. ``mode: ollama``: Ollama's OpenAI-compatible
errors (``type`` ``invalid_request_error``/``not_found_error``/``api_error``, ``code`` null),
``model "x" not found, try pulling it first`` (404), ``/v1/models`` with ``owned_by`` the name's
namespace (``library``), and no credentials check (Ollama has none). Give either mode its own
model ids with ``models`` (e.g. ``llama3.1:8b``, ``nomic-embed-text:latest``). ``prose_json:
fenced`` or ``trailing`` is a server that ignores ``response_format`` (as Ollama before 0.5
ignored ``json_schema``): it accepts any, checks none, and answers the JSON in a fenced
```` ```json ```` block between sentences, or followed by a sentence.

Where the providers' behaviour comes from. OpenAI: the openai-cookbook notebook "How to count
tokens with tiktoken" (the message rule, and the API's own count of its example), the
rate-limit guide ("your rate limit is calculated as the maximum of max_tokens and the estimated
number of tokens based on the character count of your request"), the ``x-ratelimit-*`` headers
and 429 bodies as clients print them, ``stream_options.include_usage`` from the API reference.
Azure: Microsoft's quota page (TPM counts the prompt, ``max_tokens`` and ``best_of`` estimated
when the request arrives, not the billed usage), its content-filtering page (the 400 body; also
openai/openai-agents-python#806), and the bodies users quote: MicrosoftDocs/azure-docs#114602
(no api-version: 404), langchain-ai/langchain#13284 (unsupported api-version: 404 "Resource not
found"), MicrosoftDocs/azure-docs#114013 (DeploymentNotFound), microsoft/semantic-kernel#10337
(401 key), Azure-Samples/azure-search-openai-demo#458 (401 token), openai/openai-python#937 and
the 429 messages in many issues; the openai SDK's ``AzureOpenAI`` (routes, ``api-key``, reads
``retry-after-ms``). vLLM: ``entrypoints/openai/protocol.py`` (ErrorResponse, ModelCard),
vllm-project/vllm#7654 (json_schema added) and #10015 (a validation 400 as sent). Ollama:
``openai/openai.go`` (errors, model list) and ``server/routes.go`` (the model-not-found text);
structured outputs came in 0.5.0, and users saw ``json_schema`` ignored before
(dottxt-ai/outlines#1221, callstackincubator/fabrice-ai#118).

``stats()`` / ``GET /stats`` (``?log=0`` leaves the log out) returns:

- ``requests``: per endpoint (``embeddings``, ``chat``, ``models``, ``other``) requests received;
  ``chat_schemas``: per schema name; ``embedding_inputs``: inputs received;
- ``in_flight`` / ``max_in_flight``: requests received and not yet answered (what the client's
  concurrency limit controls); ``active`` / ``max_active``: those holding a capacity slot;
- ``faults``: injected, per kind: ``hang``, ``disconnect``, ``rate_limit`` (429),
  ``server_error`` (500), ``malformed``, ``shuffle``, ``missing_vector``, ``context_limit``,
  ``fail_input``, ``fail_chat``, ``content_filter``;
- ``ok``: 200 responses fully written, per endpoint; ``status_counts``: per final status;
- ``first_request_t`` / ``last_response_t`` / ``now_t``: ``time.monotonic()`` of the server
  process, to measure the LLM window on the server's clock;
- ``log``: one entry per API request: ``seq, endpoint, schema, model, body_sha256`` (of the
  canonical JSON body, sorted keys), ``input_sha256s, n_inputs, t_start, t_end, status`` (an int,
  ``"disconnect"``, ``"hang"`` or ``"server_stopped"``), ``completed`` (response fully written),
  ``kind`` (which GraphRAG query step sent a chat request, else null), ``stream``, ``usage``
  (what was billed, null if nothing), ``delivered`` (billed and written to an open connection),
  ``rate_tokens`` (what the rate limit counted), ``rate_limited`` (``requests``/``tokens``/
  ``too_large`` when refused) and, with the ``log_prompts`` knob on, ``messages`` (role and text
  of each message, to check what was sent);
- ``billing``: the ledger: ``billed_total`` and ``billed_delivered`` (each ``requests,
  prompt_tokens, completion_tokens, total_tokens``), and the same two per endpoint
  (``by_endpoint``) and per chat schema (``by_schema``: graph_extraction, entity_summary,
  community_report, ``other``);
- ``rate_limit``: 429s for rate limits (``rejected``; ``rejected_requests``, ``rejected_tokens``,
  ``rejected_too_large``), the peaks over any window of requests admitted
  (``max_window_requests``), of tokens counted (``max_window_tokens_counted``) and of billed
  tokens served (``max_window_tokens_served``), and ``window_s``;
- ``config``: the knobs now (``api_key`` and ``azure_ad_token`` masked).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import copy
import dataclasses
import functools
import hashlib
import http
import json
import math
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

try:  # as tests.fake_openai (benchmarks, python -m tests.fake_openai)
    from . import fake_dialects as dialects
    from .fake_ratelimit import SlidingWindow, completion_allowance, openai_duration, retry_after_headers
    from .fake_usage import Ledger, chat_prompt_tokens, chat_usage, count_tokens, embedding_usage
except ImportError:  # as fake_openai, with tests/ on sys.path (pytest)
    import fake_dialects as dialects  # type: ignore[no-redef]
    from fake_ratelimit import SlidingWindow, completion_allowance, openai_duration, retry_after_headers  # type: ignore[no-redef]
    from fake_usage import Ledger, chat_prompt_tokens, chat_usage, count_tokens, embedding_usage  # type: ignore[no-redef]

__all__ = [
    "FakeConfig",
    "FakeOpenAIServer",
    "fake_embedding",
    "fake_chat_answer",
    "start_fake_server_process",
    "stop_fake_server_process",
    "fetch_stats",
    "configure_remote",
    "reset_remote",
]

ENTITY_TYPES = ("PERSON", "ORGANIZATION", "CONCEPT", "EVENT")
SCHEMA_NAMES = ("graph_extraction", "entity_summary", "community_report")
DEFAULT_MODELS = ("gpt-4.1-mini", "text-embedding-3-small")
EXTRACTION_MODES = ("full", "entities_only", "empty")
SCHEMA_LINE = re.compile(r"^\s*JSON schema name:\s*([A-Za-z0-9_\-]+)\s*$", re.MULTILINE)


# --------------------------------------------------------------------------- config


@dataclass
class FakeConfig:
    latency_s: float = 0.0  # per request, while holding a capacity slot
    per_item_latency_s: float = 0.0  # extra per embedding input (chat: one item)
    capacity: int | None = None  # max requests served at once (None/0 = unlimited)
    seed: int = 0  # seeds the fault RNG
    p_disconnect: float = 0.0  # close the socket, no response
    p_hang: float = 0.0  # never answer
    p_429: float = 0.0
    retry_after_s: float | None = None  # Retry-After header on 429s (None = no header)
    p_500: float = 0.0
    p_malformed: float = 0.0  # 200 with a non-JSON body
    p_shuffle: float = 0.0  # embeddings: data in shuffled order (indexes right)
    p_missing_vector: float = 0.0  # embeddings: one data item dropped
    api_key: str | None = None  # if set, other Bearer keys get 401
    models: set[str] | None = field(default_factory=lambda: set(DEFAULT_MODELS))  # None = any
    context_limit_tokens: int | None = None  # embeddings input over N tokens -> 400
    context_limit_scope: str = "input"  # "input": each input; "request": their sum
    fail_inputs: list[str] = field(default_factory=list)  # embeddings input containing one -> 500
    fail_chat_substrings: list[str] = field(default_factory=list)  # chat input containing one -> 500
    json_schema_supported: bool = True  # False: json_schema -> 400, json_object works
    embedding_dim: int = 64  # when the request has no "dimensions"
    log_prompts: bool = False  # keep each chat request's messages in the log (GraphRAG query tests)
    #: graph_extraction answers: "full" (entities and relationships), "entities_only" (no
    #: relationships) or "empty" ({"entities": [], "relationships": []}: legal, an empty graph)
    extraction: str = "full"
    usage: bool = True  # False: answers carry no "usage" (some local servers); the ledger still bills
    #: whose API this is: "openai", "azure" (Azure OpenAI's routes, auth and errors), "vllm" or
    #: "ollama" (their error bodies and /v1/models); see the module docstring
    mode: str = "openai"
    #: "fenced" or "trailing": ignore response_format and answer the JSON inside prose
    prose_json: str = "off"
    rpm: int | None = None  # requests per rate window (None = no limit)
    tpm: int | None = None  # tokens per rate window, counted as the module docstring says
    rate_window_s: float = 60.0
    rate_completion_tokens: int = 512  # what a chat request without max_tokens is counted for
    #: azure: deployment -> model (None: each model of ``models`` is a deployment of its own name)
    azure_deployments: dict[str, str] | None = None
    azure_api_versions: list[str] = field(default_factory=lambda: list(dialects.AZURE_API_VERSIONS))
    azure_ad_token: str | None = None  # azure: the Entra ID token accepted as "Authorization: Bearer"
    content_filter_markers: list[str] = field(default_factory=list)  # azure: a prompt holding one -> 400

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            setattr(self, f.name, _coerce(f.name, getattr(self, f.name)))


_FLOAT = {"latency_s", "per_item_latency_s", "p_disconnect", "p_hang", "p_429", "p_500", "p_malformed",
          "p_shuffle", "p_missing_vector", "retry_after_s", "rate_window_s"}
_INT = {"capacity", "seed", "context_limit_tokens", "embedding_dim", "rpm", "tpm", "rate_completion_tokens"}
_LIST = {"fail_inputs", "fail_chat_substrings", "azure_api_versions", "content_filter_markers"}
_OPTIONAL = {"capacity", "retry_after_s", "api_key", "models", "context_limit_tokens", "rpm", "tpm",
             "azure_deployments", "azure_ad_token"}
_CHOICES = {"extraction": EXTRACTION_MODES, "context_limit_scope": ("input", "request"), "mode": dialects.MODES,
            "prose_json": dialects.PROSE_STYLES}
_SECRETS = ("api_key", "azure_ad_token")


def _parse_bool(value: Any) -> bool:
    if isinstance(value, str):
        v = value.strip().lower()
        if v in ("1", "true", "yes", "on"):
            return True
        if v in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"not a boolean: {value!r}")
    return bool(value)


def _coerce(name: str, value: Any) -> Any:
    if value is None or (isinstance(value, str) and value.lower() in ("none", "null") and name in _OPTIONAL):
        if name in _OPTIONAL:
            return None
        if name in _LIST:
            return []
        raise ValueError(f"{name} cannot be None")
    if name in _FLOAT:
        v = float(value)
        if name.startswith("p_") and not 0.0 <= v <= 1.0:
            raise ValueError(f"{name} must be within 0..1, got {v}")
        if name == "rate_window_s" and v <= 0:
            raise ValueError(f"rate_window_s must be positive, got {v}")
        return v
    if name in _INT:
        v = int(value)
        if name in ("rpm", "tpm") and v < 1:
            raise ValueError(f"{name} must be at least 1 (none: no limit), got {v}")
        return v
    if name in _LIST:
        if isinstance(value, str):
            return [value]
        return [str(v) for v in value]
    if name == "models":
        if isinstance(value, str):
            return {m.strip() for m in value.split(",") if m.strip()}
        return {str(m) for m in value}
    if name in ("json_schema_supported", "log_prompts", "usage"):
        return _parse_bool(value)
    if name in _CHOICES:
        if value not in _CHOICES[name]:
            raise ValueError(f"{name} must be one of {', '.join(_CHOICES[name])}, got {value!r}")
        return value
    if name == "azure_deployments":
        if isinstance(value, str):  # "deployment=model,deployment2=model2"
            pairs = [p.split("=", 1) for p in value.split(",") if p.strip()]
            if any(len(p) != 2 or not p[0].strip() or not p[1].strip() for p in pairs):
                raise ValueError(f"azure_deployments must be 'deployment=model,...', got {value!r}")
            return {d.strip(): m.strip() for d, m in pairs}
        if not isinstance(value, dict):
            raise ValueError("azure_deployments must be an object of deployment -> model")
        return {str(d): str(m) for d, m in value.items()}
    if name in _SECRETS:
        return str(value)
    return value


def _config_dict(cfg: FakeConfig) -> dict[str, Any]:
    d = dataclasses.asdict(cfg)
    d["models"] = sorted(cfg.models) if cfg.models is not None else None
    for name in _SECRETS:  # never echo a secret
        d[name] = "***" if getattr(cfg, name) else None
    return d


KNOBS = tuple(f.name for f in dataclasses.fields(FakeConfig))


# --------------------------------------------------------------------------- content


def _h(*parts: str) -> int:
    return int(hashlib.sha256("\x00".join(parts).encode("utf-8")).hexdigest()[:12], 16)


@functools.lru_cache(maxsize=65536)
def _fake_embedding(model: str, text: str, dim: int) -> tuple[float, ...]:
    seed = hashlib.sha256(f"{model}\x00{text}".encode("utf-8")).digest()
    raw = array("I", hashlib.shake_256(seed).digest(4 * dim))
    vec = [x / 2147483648.0 - 1.0 for x in raw]  # uniform in [-1, 1)
    norm = math.sqrt(sum(x * x for x in vec)) or 1.0
    return tuple(round(x / norm, 7) for x in vec)


def fake_embedding(model: str, text: str, dim: int = 64) -> list[float]:
    """Deterministic unit vector (to 7 decimals) from sha256(model, text)."""
    return list(_fake_embedding(model, text, int(dim)))


_CAP_PHRASE = re.compile(r"\b[A-Z][\w'\-]*(?:[ \t]+[A-Z][\w'\-]*)*")
def _norm(text: str) -> str:
    return " ".join(text.split())


_STOP = frozenset("""a an the this that these those it its they them their he she his her we our you your i
in on at of for to by with from and or but if when while as after before then there here so not no yes
what which who how why where all some any each every one two many most more also however thus although""".split())


def _entities(text: str, limit: int = 8) -> list[str]:
    seen: list[str] = []
    for m in _CAP_PHRASE.finditer(text):
        words = m.group(0).strip(" -'").split()
        while words and words[0].lower() in _STOP:
            words = words[1:]
        name = " ".join(words)
        if len(name) < 2 or name in seen:
            continue
        seen.append(name)
        if len(seen) >= limit:
            break
    return seen


_RUN = re.compile(r"([^.!?\n]+)([.!?]+)?")


def _sentences(text: str) -> list[str]:
    """What `re.findall(r"[^.!?\\n]+(?:[.!?]+|$)", text)` finds, in linear time.

    That regex backtracks through every suffix of a line that ends without punctuation
    (quadratic per line): on peps-mini the fake's own CPU made extraction answers 3x slower
    than its configured latency. A run of text counts when punctuation or the end of the
    text follows it (`$` also matches before a final newline).
    """
    out = []
    end = len(text)
    for m in _RUN.finditer(text):
        if m.group(2) or m.end() == end or (m.end() == end - 1 and text[-1] == "\n"):
            out.append(m.group(0))
    return out


def _sentence_of(text: str, name: str) -> str:
    for s in _sentences(text):
        if name in s:
            return _norm(s)[:200]
    return _norm(text)[:200]


def fake_chat_answer(schema: str, text: str, extraction: str = "full") -> dict[str, Any]:
    """The answer for a structured-output schema, deterministic from the input text;
    `extraction` leaves out what the `extraction` knob says."""
    if schema == "graph_extraction":
        names = [] if extraction == "empty" else _entities(text)
        entities = [
            {
                "name": n,
                "type": ENTITY_TYPES[_h("type", n) % len(ENTITY_TYPES)],
                "description": f'{n} is mentioned in: "{_sentence_of(text, n)}"',
            }
            for n in names
        ]
        relationships = [
            {
                "source": a,
                "target": b,
                "description": f"{a} and {b} appear together in the text",
                "strength": 1 + _h("strength", a, b) % 10,
            }
            for a, b in zip(names, names[1:])
            if extraction == "full"
        ]
        return {"entities": entities, "relationships": relationships}
    if schema == "entity_summary":
        return {"description": _norm(text)[:300]}
    if schema == "community_report":
        names = _entities(text, 3) or ["Unnamed"]
        body = _norm(text)
        rating = _h("rating", body) % 11
        return {
            "title": "Community of " + ", ".join(names),
            "summary": f"This community centres on {', '.join(names)}. {body[:200]}",
            "rating": rating,
            "rating_explanation": f"Rated {rating} out of 10 by the fake server.",
            "findings": [
                {"summary": f"{names[0]} is central", "explanation": f"{names[0]} appears in: {body[:150]}"},
                {"summary": f"{len(body)} characters of input", "explanation": f"The report input has {len(body.split())} words."},
            ],
        }
    raise KeyError(schema)


# ---- GraphRAG's query prompts (graphrag query --method global|local|drift|basic, 3.3.0)

#: Every plain answer to a GraphRAG query prompt starts with this, so a test can tell it from
#: GraphRAG's canned "I am sorry but I am unable to answer..." (its answer on an empty context).
GRAPHRAG_ANSWER_PREFIX = "Answer from the fake OpenAI server"


def graphrag_query_kind(system_text: str, user_text: str) -> str | None:
    """Which GraphRAG query step sent these messages (None: not a GraphRAG query prompt).

    GraphRAG sends no response_format for most of them (its json_object flag never reaches
    litellm), so the prompt text is what tells them apart.
    """
    if "intermediate_answer" in user_text and "follow_up_queries" in user_text:
        return "drift_primer"
    if user_text.startswith("Create a hypothetical answer to the following query"):
        return "drift_expand"
    if '"points"' in system_text:
        return "global_map"
    if "---Analyst Reports---" in system_text:
        return "global_reduce"
    if "'follow_up_queries'" in system_text:
        return "drift_local"
    if "---Data Reports---" in system_text:
        return "drift_reduce"
    if "---Data tables---" in system_text:
        return "search_answer"  # local or basic search
    return None


def graphrag_query_answer(kind: str, system_text: str, user_text: str) -> str:
    """The answer GraphRAG parses for that step, deterministic from the prompt."""
    context = _norm(system_text if kind != "drift_primer" else user_text)
    digest = hashlib.sha256(context.encode("utf-8")).hexdigest()[:8]
    said = f"{GRAPHRAG_ANSWER_PREFIX} ({kind}, context {digest}, {len(context)} characters)"
    if kind == "global_map":
        return json.dumps({"points": [{"description": f"{said}: the reports are relevant [Data: Reports (0)]",
                                       "score": 50}]})
    if kind == "drift_primer":
        return json.dumps({"intermediate_answer": f"# Primer\n\n{said}.", "score": 80,
                           "follow_up_queries": ["Which entities do the reports name?"]})
    if kind == "drift_local":
        return json.dumps({"response": f"{said}.", "score": 60, "follow_up_queries": []})
    if kind == "drift_expand":
        return f"A hypothetical answer: {_norm(user_text)[60:260]}"
    return f"{said}. The question was: {_norm(user_text)[:200]}"


def _event_stream(completion: dict[str, Any], content: str, usage: dict[str, int] | None = None) -> bytes:
    """The answer as server-sent events, the way OpenAI streams ``"stream": true`` answers
    (with ``usage``: a last chunk that has no choices, as ``stream_options.include_usage`` asks)."""
    base = {"id": completion["id"], "object": "chat.completion.chunk", "created": completion["created"],
            "model": completion["model"]}
    pieces = [content[i:i + 40] for i in range(0, len(content), 40)] or [""]
    chunks = [dict(base, choices=[{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])]
    chunks += [dict(base, choices=[{"index": 0, "delta": {"content": p}, "finish_reason": None}]) for p in pieces]
    chunks.append(dict(base, choices=[{"index": 0, "delta": {}, "finish_reason": "stop"}]))
    if usage is not None:
        chunks.append(dict(base, choices=[], usage=usage))
    return _EventStream(b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks) + b"data: [DONE]\n\n")


class _EventStream(bytes):
    """A response body sent as ``text/event-stream``."""


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(p.get("text", "") for p in content if isinstance(p, dict))
    return "" if content is None else str(content)


def _canon_sha(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")).hexdigest()


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _err(status: int, message: str, type_: str = "invalid_request_error", code: str | None = None) -> tuple[int, dict, dict]:
    return status, {"error": {"message": message, "type": type_, "param": None, "code": code}}, {}


# --------------------------------------------------------------------------- HTTP core


_ROUTES = {"/v1/embeddings": ("embeddings", "POST"), "/v1/chat/completions": ("chat", "POST"),
           "/v1/models": ("models", "GET")}


def _billing_schema(entry: dict[str, Any]) -> str | None:
    """The ledger's schema row of a request: its schema, ``other`` for other chats."""
    if entry["endpoint"] != "chat":
        return None
    return entry["schema"] if entry["schema"] in SCHEMA_NAMES else "other"


class _Close:
    """Sentinel results: drop the connection (disconnect) or hang."""


DISCONNECT = _Close()
HANG = _Close()


class _Request:
    __slots__ = ("method", "path", "query", "headers", "body")

    def __init__(self, method: str, path: str, query: dict, headers: dict, body: bytes):
        self.method, self.path, self.query, self.headers, self.body = method, path, query, headers, body


class _Core:
    """The server state; every coroutine runs on one event loop, stats are read under a lock."""

    def __init__(self, config: FakeConfig):
        self.cfg = config
        self.lock = threading.Lock()
        self.rng = random.Random(config.seed)
        self._new_stats()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.server: asyncio.base_events.Server | None = None
        self.stopping: asyncio.Event | None = None
        self.waiters: collections.deque[asyncio.Future] = collections.deque()
        self.active = 0
        self.conn_tasks: set[asyncio.Task] = set()
        self.port = 0

    # ---- state
    def _new_stats(self) -> None:
        self.seq = 0
        self.st: dict[str, Any] = {
            "requests": {},
            "chat_schemas": {},
            "embedding_inputs": 0,
            "in_flight": 0,
            "max_in_flight": 0,
            "active": 0,
            "max_active": 0,
            "connections": 0,
            "faults": {},
            "ok": {},
            "status_counts": {},
            "first_request_t": None,
            "last_response_t": None,
        }
        self.log: list[dict[str, Any]] = []
        self.ledger = Ledger()
        self.window = SlidingWindow()

    def reset(self) -> None:
        with self.lock:
            in_flight, active = self.st["in_flight"], self.st["active"]
            for e in self.log:  # what is still in flight is billed and delivered in the new ledger, or not at all
                if e["t_end"] is None:
                    e["usage"] = None
                e["delivered"] = False
            self._new_stats()
            self.st["in_flight"] = self.st["max_in_flight"] = in_flight
            self.st["active"] = self.st["max_active"] = active
            self.rng = random.Random(self.cfg.seed)

    def stats(self, with_log: bool = True) -> dict[str, Any]:
        with self.lock:
            out = copy.deepcopy(self.st)
            if with_log:
                out["log"] = copy.deepcopy(self.log)
            out["now_t"] = time.monotonic()
            out["billing"] = self.ledger.snapshot()
            out["rate_limit"] = dict(self.window.stats, window_s=self.cfg.rate_window_s)
            out["config"] = _config_dict(self.cfg)
            return out

    def configure(self, changes: dict[str, Any]) -> dict[str, Any]:
        unknown = set(changes) - set(KNOBS)
        if unknown:
            raise ValueError(f"unknown knob(s): {', '.join(sorted(unknown))}; known: {', '.join(KNOBS)}")
        coerced = {k: _coerce(k, v) for k, v in changes.items()}
        with self.lock:
            for k, v in coerced.items():
                setattr(self.cfg, k, v)
            if "seed" in coerced:
                self.rng = random.Random(self.cfg.seed)
        if self.loop is not None:
            try:
                self.loop.call_soon_threadsafe(self._wake)
            except RuntimeError:
                pass
        return _config_dict(self.cfg)

    def _bump(self, key: str, sub: str, n: int = 1) -> None:
        d = self.st[key]
        d[sub] = d.get(sub, 0) + n

    # ---- capacity: a FIFO limiter whose size can change at run time
    def _wake(self) -> None:
        while self.waiters and self._has_slot():
            fut = self.waiters.popleft()
            if not fut.done():
                self.active += 1
                fut.set_result(None)
        with self.lock:
            self.st["active"] = self.active
            self.st["max_active"] = max(self.st["max_active"], self.active)

    def _has_slot(self) -> bool:
        cap = self.cfg.capacity
        return not cap or self.active < cap

    async def _acquire(self) -> None:
        if not self.waiters and self._has_slot():
            self.active += 1
        else:
            fut = self.loop.create_future()
            self.waiters.append(fut)
            try:
                await fut
            except asyncio.CancelledError:
                if fut.done() and not fut.cancelled():
                    self._release()  # the slot was handed over just as we were cancelled
                else:
                    try:
                        self.waiters.remove(fut)
                    except ValueError:
                        pass
                raise
        with self.lock:
            self.st["active"] = self.active
            self.st["max_active"] = max(self.st["max_active"], self.active)

    def _release(self) -> None:
        self.active -= 1
        self._wake()

    # ---- lifecycle
    async def start(self, host: str, port: int) -> None:
        self.loop = asyncio.get_running_loop()
        self.stopping = asyncio.Event()
        self.server = await asyncio.start_server(self._on_conn, host, port, limit=1 << 20, backlog=1024)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self.stopping is not None:
            self.stopping.set()
        if self.server is not None:
            self.server.close()
        tasks = [t for t in self.conn_tasks if not t.done()]
        await asyncio.sleep(0)  # let hung requests see the stop and log themselves
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=2)
        with self.lock:
            open_entries = [e for e in self.log if e.get("t_end") is None]
        for e in open_entries:  # cut short by the stop (e.g. during their latency)
            self._finish(e, "server_stopped", False)
        if self.server is not None:
            try:
                await asyncio.wait_for(self.server.wait_closed(), 2)
            except (asyncio.TimeoutError, Exception):
                pass

    # ---- connection
    async def _on_conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self.conn_tasks.add(task)
        with self.lock:
            self.st["connections"] += 1  # accepted, so a test can tell pooled from fresh
        try:
            while not self.stopping.is_set():
                req = await self._read_request(reader)
                if req is None:
                    break
                keep = await self._serve(req, reader, writer)
                if not keep:
                    break
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, asyncio.CancelledError):
            pass
        finally:
            self.conn_tasks.discard(task)
            try:
                writer.close()
            except Exception:
                pass

    async def _read_request(self, reader: asyncio.StreamReader) -> _Request | None:
        """Parse one HTTP/1.1 request (keep-alive: the client's pool reuses connections); None at EOF."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return None
        lines = head.decode("latin-1").split("\r\n")
        method, target, _version = lines[0].split(" ", 2)
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if not line:
                continue
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
                if size == 0:
                    while (await reader.readuntil(b"\r\n")) != b"\r\n":
                        pass
                    break
                chunks.append(await reader.readexactly(size))
                await reader.readexactly(2)
            body = b"".join(chunks)
        else:
            n = int(headers.get("content-length", "0") or 0)
            body = await reader.readexactly(n) if n else b""
        parts = urlsplit(target)
        return _Request(method.upper(), parts.path.rstrip("/") or "/", parse_qs(parts.query), headers, body)

    async def _write(self, writer: asyncio.StreamWriter, status: int, body: bytes, headers: dict, keep: bool,
                     content_type: str = "application/json") -> None:
        try:
            reason = http.HTTPStatus(status).phrase
        except ValueError:
            reason = "Unknown"
        head = [f"HTTP/1.1 {status} {reason}", f"Content-Type: {content_type}", f"Content-Length: {len(body)}",
                "Connection: " + ("keep-alive" if keep else "close")]
        head += [f"{k}: {v}" for k, v in headers.items()]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
        await writer.drain()

    async def _serve(self, req: _Request, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Answer one request; False closes the connection (after a fault or ``Connection: close``)."""
        keep = req.headers.get("connection", "").lower() != "close"
        path = req.path
        control = path[3:] if path.startswith("/v1/") and path[3:] in ("/stats", "/reset", "/config") else path
        if control in ("/stats", "/reset", "/config"):
            status, obj = self._control(req, control)
            await self._write(writer, status, json.dumps(obj).encode(), {}, keep)
            return keep
        result = await self._api(req, reader)
        if result is DISCONNECT:
            writer.transport.close()  # FIN with no response: "Server disconnected"
            return False
        if result is HANG:
            return False
        status, payload, extra, entry = result
        mode = self.cfg.mode
        if mode != "openai":
            if status >= 400:
                payload = dialects.as_dialect(mode, status, payload)
            if mode == "azure":
                extra = {**dialects.azure_headers(), **extra}
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        ctype = "text/event-stream" if isinstance(payload, _EventStream) else "application/json"
        # Counted as answered before the bytes leave: a client holding the response must find
        # it in the stats (in_flight, ok, t_end); a failed write is taken back below.
        self._finish(entry, status, True, peer_gone=reader.at_eof())
        try:
            await self._write(writer, status, body, extra, keep, content_type=ctype)
        except (ConnectionError, RuntimeError):
            self._unwritten(entry)
            return False
        return keep

    def _control(self, req: _Request, path: str) -> tuple[int, Any]:
        try:
            if path == "/stats" and req.method == "GET":
                with_log = req.query.get("log", ["1"])[0].lower() not in ("0", "false", "no")
                return 200, self.stats(with_log)
            if path == "/reset" and req.method == "POST":
                self.reset()
                return 200, {"ok": True}
            if path == "/config" and req.method in ("POST", "PUT", "PATCH"):
                changes = json.loads(req.body or b"{}")
                if not isinstance(changes, dict):
                    raise ValueError("body must be a JSON object of knob changes")
                return 200, {"ok": True, "config": self.configure(changes)}
            if path == "/config" and req.method == "GET":
                return 200, {"config": _config_dict(self.cfg)}
            return 405, {"error": {"message": f"{req.method} not allowed on {path}", "type": "invalid_request_error"}}
        except (ValueError, TypeError) as e:
            return 400, {"error": {"message": str(e), "type": "invalid_request_error"}}

    # ---- API
    def _begin(self, endpoint: str) -> tuple[dict[str, Any], tuple[float, float, float, int]]:
        """Count the request as in flight from its receipt and open its log entry."""
        now = time.monotonic()
        with self.lock:
            self.seq += 1
            self._bump("requests", endpoint)
            self.st["in_flight"] += 1
            self.st["max_in_flight"] = max(self.st["max_in_flight"], self.st["in_flight"])
            if self.st["first_request_t"] is None:
                self.st["first_request_t"] = now
            entry = {"seq": self.seq, "endpoint": endpoint, "schema": None, "model": None, "body_sha256": None,
                     "input_sha256s": None, "n_inputs": 0, "t_start": now, "t_end": None, "status": None,
                     "completed": False, "kind": None, "stream": False, "usage": None, "rate_tokens": None,
                     "rate_limited": None, "delivered": False}
            self.log.append(entry)
            # Draw every request's random numbers up front, in arrival order: deterministic per seed.
            draws = (self.rng.random(), self.rng.random(), self.rng.random(), self.rng.getrandbits(32))
        return entry, draws

    def _finish(self, entry: dict, status: Any, completed: bool, peer_gone: bool = False) -> None:
        """Close a log entry exactly once (a hang may be closed by the stop and by its task).

        ``peer_gone``: the client had closed the connection before the response was written
        (the kernel may still accept the bytes, so it counts as completed, not as delivered).
        """
        now = time.monotonic()
        with self.lock:
            if entry.get("t_end") is not None:
                return
            entry["t_end"] = now
            entry["status"] = status
            entry["completed"] = completed
            self.st["in_flight"] -= 1
            self._bump("status_counts", str(status))
            if completed:
                self.st["last_response_t"] = now
                if status == 200:
                    self._bump("ok", entry["endpoint"])
                if entry["usage"] is not None and not peer_gone:
                    entry["delivered"] = True
                    self.ledger.delivered(entry["endpoint"], _billing_schema(entry), entry["usage"])

    def _unwritten(self, entry: dict) -> None:
        """The peer was gone when the response was written: not completed, not OK, not delivered."""
        with self.lock:
            entry["completed"] = False
            if entry["status"] == 200:
                self._bump("ok", entry["endpoint"], -1)
            if entry["delivered"]:
                entry["delivered"] = False
                self.ledger.delivered(entry["endpoint"], _billing_schema(entry), entry["usage"], -1)

    def _bill(self, entry: dict, usage: dict[str, int]) -> None:
        """The answer was generated: billed now, whatever becomes of the response."""
        cfg = self.cfg
        with self.lock:
            entry["usage"] = usage
            self.ledger.bill(entry["endpoint"], _billing_schema(entry), usage)
            if cfg.rpm is not None or cfg.tpm is not None:
                self.window.serve(time.monotonic(), usage["total_tokens"], cfg.rate_window_s)

    def _fault(self, entry: dict, kind: str) -> None:
        with self.lock:
            self._bump("faults", kind)

    async def _api(self, req: _Request, reader: asyncio.StreamReader):
        """One API request: deterministic checks (route, auth, model, schema) first, then the
        rate limits, then the drawn fault.

        A 429 or a hang does not take a capacity slot (a rate limiter answers at once; a hung
        request must not starve the others); a disconnect, 500 or malformed body comes after
        the latency, as a server failing mid-work would.
        """
        cfg = self.cfg
        azure = cfg.mode == "azure"
        found = dialects.AZURE_ROUTE.match(req.path) if azure else None
        if azure:
            endpoint, method = ("other", None) if found is None else (
                "embeddings" if found.group(2) == "embeddings" else "chat", "POST")
        else:
            endpoint, method = _ROUTES.get(req.path, ("other", None))
        entry, (u_fault, u_shuffle, u_missing, shuffle_seed) = self._begin(endpoint)

        def done(res):
            status, payload, extra = res
            return status, payload, extra, entry

        api_version = ""
        if azure:
            # Azure answers an unknown path and a missing or unsupported api-version alike,
            # before it looks at the credentials; the deployment is looked up after them.
            api_version = req.query.get("api-version", [""])[0]
            if found is None or req.method != method or api_version not in cfg.azure_api_versions:
                return done(dialects.azure_resource_not_found())
            refused = self._azure_refusal(req)
            if refused is not None:
                return done(refused)
            model = self._azure_model(found.group(1))
            if model is None:
                return done(dialects.azure_deployment_not_found())
        else:
            if endpoint == "other":
                return done(_err(404, f"Unknown request URL: {req.method} {req.path}. Check the API base URL (it should end in /v1).",
                                 code="unknown_url"))
            if req.method != method:
                return done(_err(405, f"{req.method} not allowed on {req.path}"))
            refused = self._openai_refusal(req)
            if refused is not None:
                return done(refused)
            if endpoint == "models":
                models = sorted(cfg.models) if cfg.models is not None else list(DEFAULT_MODELS)
                return done((200, dialects.model_list(cfg.mode, models, cfg.context_limit_tokens or 32768), {}))
        try:
            body = json.loads(req.body)
            if not isinstance(body, dict):
                raise ValueError("body is not a JSON object")
        except ValueError as e:
            return done(_err(400, f"We could not parse the JSON body of your request: {e}"))
        if not azure:  # Azure's model is the deployment's; the body's "model" is ignored
            model = body.get("model")
        with self.lock:
            entry["model"] = model
            entry["body_sha256"] = _canon_sha(body)
        if not isinstance(model, str) or not model:
            return done(_err(400, "you must provide a model parameter"))
        if cfg.models is not None and model not in cfg.models and not azure:
            return done((404, dialects.model_not_found(cfg.mode, model), {}))

        # parse the request itself
        if endpoint == "embeddings":
            inputs = body.get("input")
            if isinstance(inputs, str):
                inputs = [inputs]
            if not isinstance(inputs, list) or not inputs:
                return done(_err(400, "'input' must be a non-empty string or array of strings"))
            texts = [x if isinstance(x, str) else json.dumps(x) for x in inputs]
            with self.lock:
                entry["n_inputs"] = len(texts)
                entry["input_sha256s"] = [_sha(t) for t in texts]
                self.st["embedding_inputs"] += len(texts)
            n_items = len(texts)
        else:
            messages = body.get("messages")
            if not isinstance(messages, list) or not messages:
                return done(_err(400, "'messages' must be a non-empty array"))
            user_text = ""
            system_text = []
            for m in messages:
                if not isinstance(m, dict):
                    continue
                if m.get("role") == "user":
                    user_text = _content_text(m.get("content"))
                elif m.get("role") in ("system", "developer"):
                    system_text.append(_content_text(m.get("content")))
            rf = body.get("response_format") or {}
            rf_type = rf.get("type") if isinstance(rf, dict) else None
            schema = None
            if rf_type == "json_schema":
                schema = (rf.get("json_schema") or {}).get("name")
            else:
                found_line = SCHEMA_LINE.search("\n".join(system_text))
                schema = found_line.group(1) if found_line else None
            kind = None if schema in SCHEMA_NAMES else graphrag_query_kind("\n".join(system_text), user_text)
            with self.lock:
                entry["schema"] = schema
                entry["n_inputs"] = 1
                entry["input_sha256s"] = [_sha(user_text)]
                entry["kind"] = kind
                entry["stream"] = bool(body.get("stream"))
                if cfg.log_prompts:
                    entry["messages"] = [{"role": m.get("role"), "content": _content_text(m.get("content"))}
                                         for m in messages if isinstance(m, dict)]
                self._bump("chat_schemas", str(schema))
            if cfg.prose_json == "off":  # a server that ignores response_format checks none of it
                if rf_type == "json_schema" and not cfg.json_schema_supported:
                    if cfg.mode == "vllm":
                        return done(dialects.vllm_json_schema_rejected())
                    return done(_err(400, "response_format json_schema is not supported by this model"))
                if rf_type not in (None, "text", "json_schema", "json_object"):
                    return done(_err(400, f"Invalid response_format type: {rf_type!r}"))
                if rf_type in ("json_schema", "json_object") and schema not in SCHEMA_NAMES and kind is None:
                    return done(_err(400, f"Unknown schema name {schema!r}: the fake knows {', '.join(SCHEMA_NAMES)}"
                                     + ("" if rf_type == "json_schema" else " (put 'JSON schema name: <NAME>' on a system-message line)")))
            if azure and rf_type == "json_schema" and cfg.prose_json == "off" \
                    and api_version < dialects.AZURE_JSON_SCHEMA_SINCE:  # dates compare as text
                return done(dialects.azure_json_schema_too_old())
            if azure and cfg.content_filter_markers:
                prompt = "\n".join(_content_text(m.get("content")) for m in messages if isinstance(m, dict))
                if any(marker and marker in prompt for marker in cfg.content_filter_markers):
                    self._fault(entry, "content_filter")
                    return done(dialects.azure_content_filtered())
            n_items = 1

        rate_headers: dict[str, str] = {}
        if cfg.rpm is not None or cfg.tpm is not None:
            refused, rate_headers = self._admit(entry, endpoint, body, texts if endpoint == "embeddings" else None,
                                                model, api_version)
            if refused is not None:
                return done(refused)

        # faults decided by arrival order
        p = cfg
        kind = None
        edges = (("hang", p.p_hang), ("disconnect", p.p_disconnect), ("rate_limit", p.p_429),
                 ("server_error", p.p_500), ("malformed", p.p_malformed))
        acc = 0.0
        for name, prob in edges:
            acc += prob
            if u_fault < acc:
                kind = name
                break

        if kind == "hang":
            self._fault(entry, "hang")
            try:
                await self._hang(reader)
            finally:
                self._finish(entry, "hang", False)
            return HANG
        if kind == "rate_limit":
            self._fault(entry, "rate_limit")
            extra = dict(rate_headers)
            if azure:
                seconds = math.ceil(cfg.retry_after_s) if cfg.retry_after_s is not None else 1
                if cfg.retry_after_s is not None:
                    extra.update(retry_after_headers(cfg.retry_after_s, azure=True))
                status, payload, _ = dialects.azure_rate_limited(endpoint, api_version, "tokens", seconds)
                return status, payload, extra, entry
            if cfg.retry_after_s is not None:
                ra = cfg.retry_after_s
                extra["Retry-After"] = str(int(ra)) if float(ra).is_integer() else repr(float(ra))
            status, payload, _ = _err(429, "Rate limit reached for requests (fake). Please try again later.",
                                      type_="requests", code="rate_limit_exceeded")
            return status, payload, extra, entry

        await self._acquire()
        try:
            # The latency counts from the moment the request holds a slot, and the answer is made
            # within it: made after the sleep, 64 extraction answers built one after another on
            # this loop came back up to 70 ms late, which the benchmarks counted as the client's.
            started = time.monotonic()
            delay = cfg.latency_s + cfg.per_item_latency_s * n_items
            answer = None
            if kind is None:
                if endpoint == "embeddings":
                    answer = self._embeddings(body, model, texts, entry, u_shuffle, u_missing, shuffle_seed)
                else:
                    answer = self._chat(body, model, schema, user_text, entry, "\n".join(system_text))
            remaining = delay - (time.monotonic() - started)
            if remaining > 0:
                await asyncio.sleep(remaining)
            if kind == "disconnect":
                self._fault(entry, "disconnect")
                self._finish(entry, "disconnect", False)
                return DISCONNECT
            if kind == "server_error":
                self._fault(entry, "server_error")
                return done(_err(500, "The server had an error while processing your request (fake).", type_="server_error"))
            if kind == "malformed":
                self._fault(entry, "malformed")
                return 200, b"<html>this is not JSON {", rate_headers, entry
            status, payload, extra, usage = answer
            if usage is not None:  # generated within the latency: billed from here on
                self._bill(entry, usage)
            return status, payload, {**extra, **rate_headers} if rate_headers else extra, entry
        finally:
            self._release()

    def _openai_refusal(self, req: _Request) -> tuple[int, Any, dict] | None:
        """The credentials check of OpenAI and the local servers (Ollama checks none)."""
        cfg = self.cfg
        if cfg.api_key is None or cfg.mode == "ollama":
            return None
        if req.headers.get("authorization", "") == f"Bearer {cfg.api_key}":
            return None
        if cfg.mode == "vllm":
            return 401, {"error": "Unauthorized"}, {}
        return _err(401, "Incorrect API key provided.", code="invalid_api_key")

    def _azure_refusal(self, req: _Request) -> tuple[int, Any, dict] | None:
        """Azure's credentials: the ``api-key`` header, or an Entra ID token as ``Authorization: Bearer``."""
        cfg = self.cfg
        if cfg.api_key is None and cfg.azure_ad_token is None:
            return None
        key = req.headers.get("api-key")
        if key is not None:
            return None if cfg.api_key is not None and key == cfg.api_key else dialects.azure_key_denied()
        auth = req.headers.get("authorization", "")
        if auth.startswith("Bearer "):
            token_ok = cfg.azure_ad_token is not None and auth[len("Bearer "):] == cfg.azure_ad_token
            return None if token_ok else dialects.azure_token_denied()
        return dialects.azure_key_denied()

    def _azure_model(self, deployment: str) -> str | None:
        """The model behind a deployment (None: no such deployment)."""
        cfg = self.cfg
        if cfg.azure_deployments is not None:
            return cfg.azure_deployments.get(deployment)
        return deployment if cfg.models is None or deployment in cfg.models else None

    def _admit(self, entry: dict, endpoint: str, body: dict, texts: list[str] | None, model: str,
               api_version: str) -> tuple[tuple[int, Any, dict] | None, dict[str, str]]:
        """Count the request into the rate window: (the 429 if refused, the x-ratelimit headers)."""
        cfg = self.cfg
        if endpoint == "embeddings":
            tokens = sum(count_tokens(t) for t in texts)
        else:
            tokens = chat_prompt_tokens(body["messages"]) + completion_allowance(body, cfg.rate_completion_tokens)
        now = time.monotonic()
        with self.lock:
            entry["rate_tokens"] = tokens
            refusal = self.window.admit(now, tokens, cfg.rpm, cfg.tpm, cfg.rate_window_s)
            headers = self.window.headers(now, cfg.rpm, cfg.tpm, cfg.rate_window_s)
            if refusal is not None:
                entry["rate_limited"] = refusal.kind
        if refusal is None:
            return None, headers
        azure = cfg.mode == "azure"
        extra = dict(headers)
        if refusal.retry_after_s is not None:
            extra.update(retry_after_headers(refusal.retry_after_s, azure))
        if azure:
            seconds = int(extra.get("Retry-After", math.ceil(cfg.rate_window_s)))
            status, payload, _ = dialects.azure_rate_limited(endpoint, api_version, refusal.kind, seconds)
            return (status, payload, extra), headers
        if refusal.kind == "too_large":
            message = (f"Request too large for {model} in organization org-fake on tokens per min (TPM): Limit "
                       f"{refusal.limit}, Requested {refusal.requested}. The input or output tokens must be reduced "
                       "in order to run successfully. Visit https://platform.openai.com/account/rate-limits to learn more.")
        else:
            unit = "requests per min (RPM)" if refusal.kind == "requests" else "tokens per min (TPM)"
            message = (f"Rate limit reached for {model} in organization org-fake on {unit}: Limit {refusal.limit}, "
                       f"Used {refusal.used}, Requested {refusal.requested}. Please try again in "
                       f"{openai_duration(refusal.retry_after_s)}. Visit https://platform.openai.com/account/rate-limits "
                       "to learn more.")
        status, payload, _ = _err(429, message, type_="requests" if refusal.kind == "requests" else "tokens",
                                  code="rate_limit_exceeded")
        return (status, payload, extra), headers

    async def _hang(self, reader: asyncio.StreamReader) -> None:
        """Wait until the client closes the connection or the server stops."""
        read = asyncio.ensure_future(reader.read(1))
        stop = asyncio.ensure_future(self.stopping.wait())
        try:
            await asyncio.wait({read, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (read, stop):
                t.cancel()

    def _embeddings(self, body: dict, model: str, texts: list[str], entry: dict, u_shuffle: float,
                    u_missing: float, shuffle_seed: int) -> tuple[int, dict, dict, dict | None]:
        """Vectors for ``texts``; ``base64`` encoding too, as the openai SDK asks for it by default.
        Returns (status, body, headers, the usage billed: None when nothing was generated)."""
        cfg = self.cfg
        for t in texts:
            for s in cfg.fail_inputs:
                if s and s in t:
                    self._fault(entry, "fail_input")
                    return (*_err(500, "The server had an error while processing your request (fake fail_inputs).",
                                  type_="server_error"), None)
        # Counted here, within the latency: tokenizing (~70 us a KB) is about half of what an
        # answer costs the server (docs/performance.md, "The fake OpenAI server's own cost").
        counts = [count_tokens(t) for t in texts]
        limit = cfg.context_limit_tokens
        if limit:
            requested = sum(counts) if cfg.context_limit_scope == "request" else max(counts)
            if requested > limit:
                self._fault(entry, "context_limit")
                return (*_err(400, f"This model's maximum context length is {limit} tokens, however you requested "
                                   f"{requested} tokens ({requested} in your prompt; 0 for the completion). "
                                   "Please reduce your prompt; or completion length."), None)
        dim = body.get("dimensions") or cfg.embedding_dim
        try:
            dim = int(dim)
        except (TypeError, ValueError):
            return (*_err(400, f"'dimensions' must be an integer, got {dim!r}"), None)
        fmt = body.get("encoding_format") or "float"
        data = []
        for i, t in enumerate(texts):
            vec = fake_embedding(model, t, dim)
            emb: Any = base64.b64encode(array("f", vec).tobytes()).decode("ascii") if fmt == "base64" else vec
            data.append({"object": "embedding", "index": i, "embedding": emb})
        if len(data) > 1 and u_shuffle < cfg.p_shuffle:
            self._fault(entry, "shuffle")
            random.Random(shuffle_seed).shuffle(data)
            if [d["index"] for d in data] == list(range(len(data))):
                data.reverse()
        if u_missing < cfg.p_missing_vector:
            self._fault(entry, "missing_vector")
            data.pop(shuffle_seed % len(data))
        usage = embedding_usage(sum(counts))
        answer = {"object": "list", "data": data, "model": model}
        if cfg.usage:
            answer["usage"] = usage
        return 200, answer, {}, usage

    def _chat(self, body: dict, model: str, schema: str | None, user_text: str, entry: dict,
              system_text: str = "") -> tuple[int, Any, dict, dict | None]:
        """A chat.completion whose content is the schema's answer to the last user message
        (or the answer to a GraphRAG query prompt); server-sent events when ``"stream": true``.
        Returns (status, body, headers, the usage billed: None when nothing was generated)."""
        cfg = self.cfg
        for s in cfg.fail_chat_substrings:
            if s and s in user_text:
                self._fault(entry, "fail_chat")
                return (*_err(500, "The server had an error while processing your request (fake fail_chat_substrings).",
                              type_="server_error"), None)
        kind = entry.get("kind")
        if schema in SCHEMA_NAMES:
            content = json.dumps(fake_chat_answer(schema, user_text, cfg.extraction))
            if cfg.prose_json != "off":
                content = dialects.prose_around(content, cfg.prose_json)
        elif kind is not None:
            content = graphrag_query_answer(kind, system_text, user_text)
        else:
            content = "This is a fake reply."
        usage = chat_usage(chat_prompt_tokens(body["messages"]), content)
        completion = {
            "id": f"chatcmpl-fake-{entry['seq']}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content, "refusal": None},
                         "logprobs": None, "finish_reason": "stop"}],
        }
        if cfg.usage:
            completion["usage"] = usage
        if cfg.mode == "azure":
            dialects.azure_decorate_chat(completion)
        if body.get("stream"):
            # as OpenAI: usage only when asked for, in one last chunk with no choices
            options = body.get("stream_options")
            with_usage = cfg.usage and isinstance(options, dict) and bool(options.get("include_usage"))
            return 200, _event_stream(completion, content, usage if with_usage else None), {}, usage
        return 200, completion, {}, usage


# --------------------------------------------------------------------------- in-process server


class FakeOpenAIServer:
    """The fake on 127.0.0.1 in a background thread with its own event loop."""

    def __init__(self, config: FakeConfig | None = None, *, host: str = "127.0.0.1", port: int = 0, **knobs: Any):
        config = copy.deepcopy(config) if config is not None else FakeConfig()
        self._core = _Core(config)
        if knobs:
            self._core.configure(knobs)
        self._host, self._port = host, port
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.base_url = ""

    @property
    def config(self) -> FakeConfig:
        return self._core.cfg

    @property
    def port(self) -> int:
        return self._core.port

    def start(self) -> "FakeOpenAIServer":
        if self._thread is not None:
            return self
        ready = threading.Event()
        error: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._core.start(self._host, self._port))
            except BaseException as e:  # noqa: BLE001
                error.append(e)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(self._core.stop())
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._thread = threading.Thread(target=run, name="fake-openai", daemon=True)
        self._thread.start()
        ready.wait(30)
        if error:
            self._thread.join()
            self._thread = None
            raise error[0]
        self.base_url = f"http://{self._host}:{self._core.port}/v1"
        return self

    def stop(self) -> None:
        if self._thread is None:
            return
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(loop.stop)
        self._thread.join(10)
        self._thread = None

    close = stop

    def __enter__(self) -> "FakeOpenAIServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def stats(self, with_log: bool = True) -> dict[str, Any]:
        return self._core.stats(with_log)

    def reset(self) -> None:
        self._core.reset()

    def configure(self, **changes: Any) -> dict[str, Any]:
        return self._core.configure(changes)


# --------------------------------------------------------------------------- subprocess mode

REPO_ROOT = Path(__file__).resolve().parents[1]


def start_fake_server_process(timeout_s: float = 30.0, port: int = 0, **knobs: Any) -> tuple[subprocess.Popen, str]:
    """Start ``python -m tests.fake_openai`` in its own session; return (process, base_url)."""
    cfg = {k: (sorted(v) if isinstance(v, set) else v) for k, v in knobs.items()}
    unknown = set(cfg) - set(KNOBS)
    if unknown:
        raise ValueError(f"unknown knob(s): {', '.join(sorted(unknown))}")
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHONUNBUFFERED"] = "1"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fake_openai", "--port", str(port), "--config-json", json.dumps(cfg)],
        cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
        start_new_session=True,
    )
    result: list[str] = []

    def read_line() -> None:
        result.append(proc.stdout.readline())

    t = threading.Thread(target=read_line, daemon=True)
    t.start()
    t.join(timeout_s)
    line = result[0].strip() if result else ""
    if not line.startswith("LISTENING "):
        stop_fake_server_process(proc)
        raise RuntimeError(f"fake OpenAI server did not start (exit {proc.returncode}; first line {line!r})")
    return proc, line.split(" ", 1)[1]


def stop_fake_server_process(proc: subprocess.Popen, timeout_s: float = 10.0) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            proc.terminate()
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout_s)
    if proc.stdout is not None:
        proc.stdout.close()


def _root_url(base_url: str) -> str:
    base = base_url.rstrip("/")
    return base[: -len("/v1")] if base.endswith("/v1") else base


def _control(base_url: str, path: str, method: str, payload: Any = None, timeout_s: float = 10.0) -> Any:
    data = None if payload is None else json.dumps(payload).encode()
    req = urllib.request.Request(_root_url(base_url) + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout_s) as resp:
        return json.loads(resp.read())


def fetch_stats(base_url: str, with_log: bool = True) -> dict[str, Any]:
    return _control(base_url, "/stats" + ("" if with_log else "?log=0"), "GET")


def configure_remote(base_url: str, **changes: Any) -> dict[str, Any]:
    changes = {k: (sorted(v) if isinstance(v, set) else v) for k, v in changes.items()}
    return _control(base_url, "/config", "POST", changes)["config"]


def reset_remote(base_url: str) -> None:
    _control(base_url, "/reset", "POST", {})


# --------------------------------------------------------------------------- CLI

_ALIASES = {"latency_s": ["--latency"], "per_item_latency_s": ["--per-item-latency"],
            "retry_after_s": ["--retry-after"], "context_limit_tokens": ["--context-limit"]}


def _build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m tests.fake_openai", description="Fake OpenAI-compatible server "
                                 "(knobs: the module docstring of tests/fake_openai.py).")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0 = any free port")
    ap.add_argument("--config-json", default=None, help="JSON object of knobs (applied before the flags)")
    for f in dataclasses.fields(FakeConfig):
        flags = ["--" + f.name.replace("_", "-"), *_ALIASES.get(f.name, [])]
        if f.name in _LIST:
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else []
            ap.add_argument(*flags, dest=f.name, action="append", default=None,
                            help="repeatable" + (f"; replaces the default {', '.join(default)}" if default else ""))
        elif f.name == "models":
            ap.add_argument(*flags, dest=f.name, default=None, help="comma-separated model ids, or 'none' = any")
        elif f.name == "azure_deployments":
            ap.add_argument(*flags, dest=f.name, default=None,
                            help="deployment=model,... (default: each model is a deployment of its own name)")
        else:
            choices = f"one of {', '.join(_CHOICES[f.name])}; " if f.name in _CHOICES else ""
            ap.add_argument(*flags, dest=f.name, default=None, help=f"{choices}default {f.default!r}"
                            if f.default is not dataclasses.MISSING else None)
    return ap


def config_from_args(args: argparse.Namespace) -> FakeConfig:
    cfg = FakeConfig()
    changes: dict[str, Any] = json.loads(args.config_json) if args.config_json else {}
    for name in KNOBS:
        v = getattr(args, name)
        if v is not None:
            changes[name] = v
    core = _Core(cfg)
    core.configure(changes)
    return cfg


async def _amain(args: argparse.Namespace) -> None:
    core = _Core(config_from_args(args))
    await core.start(args.host, args.port)
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, done.set)
        except (NotImplementedError, RuntimeError):
            pass
    print(f"LISTENING http://{args.host}:{core.port}/v1", flush=True)
    await done.wait()
    await core.stop()


def main(argv: list[str] | None = None) -> None:
    args = _build_parser().parse_args(argv)
    asyncio.run(_amain(args))


if __name__ == "__main__":
    main()
