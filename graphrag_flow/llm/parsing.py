"""Reading a 200's body into the answer asked for, or a `BadAnswer` (a failed, retried attempt).

- Chat: `choices[0].message.content` (a string or content parts), without a ```json fence
  some json_object servers wrap it in, validated with pydantic against the schema asked for.
  A refusal or an empty answer is a bad answer. A local server that ignores `response_format`
  (vLLM, Ollama before structured outputs) may answer the JSON inside prose: a fenced block
  between sentences, or the object followed by a sentence. When the content is not JSON, the
  first fenced block, else the first JSON object in it, is what is validated (`embedded_json`).
- Embeddings: aligned by `data[i].index`, never by position (servers may reorder them): as
  many vectors as inputs, each index once, one dimension for all (and the one the run has
  seen), finite numbers only; a list of floats or base64 float32 from servers that ignore
  `encoding_format`.
- Models: the ids of GET /models.
- Usage: an answer's billed `prompt_tokens` and `completion_tokens`, handed to the caller's
  meter as soon as the reply is an answer of its kind (before validation: a provider bills an
  answer that does not validate too).

These run on the event loop, once per answer; the embedding check is numpy, not a Python loop.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any, Callable

import numpy as np
from pydantic import BaseModel, ValidationError

from graphrag_flow.llm.outcomes import BadAnswer, Reply


#: Called with an answer's billed (prompt, completion) tokens, or None when it sent no `usage`.
Meter = Callable[["tuple[int, int] | None"], None]


def billed_usage(payload: Any) -> tuple[int, int] | None:
    """(prompt_tokens, completion_tokens) of an answer's `usage`, or None when it has none (some
    local servers) or one that is not two whole numbers >= 0 (then our own count stands in)."""
    usage = payload.get("usage") if isinstance(payload, dict) else None
    if not isinstance(usage, dict):
        return None
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens", 0)
    if type(prompt) is not int or type(completion) is not int or prompt < 0 or completion < 0:
        return None
    return prompt, completion


def parse_chat(reply: Reply, model_cls: type[BaseModel], schema_name: str, meter: Meter | None = None,
               on_prose: Callable[[], None] | None = None) -> BaseModel:
    """The validated answer. `meter` gets its usage once the reply is a chat answer, before it is
    validated: an answer that does not validate was billed too. `on_prose` is called when the
    answer had to be taken out of prose (`embedded_json`)."""
    try:
        payload = reply.json()
    except ValueError:
        raise BadAnswer("the server's answer is not JSON") from None
    try:
        message = payload["choices"][0]["message"]
    except (KeyError, IndexError, TypeError):
        raise BadAnswer("the answer has no choices[0].message") from None
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, list):  # content parts
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    if meter is not None:
        meter(billed_usage(payload))
    if not content:
        refusal = message.get("refusal") if isinstance(message, dict) else None
        raise BadAnswer(f"the model refused: {str(refusal)[:200]}" if refusal else "the answer is empty")
    try:
        return model_cls.model_validate_json(strip_fences(content))
    except ValidationError as exc:
        error = exc
    if error.errors(include_input=False)[0]["type"] == "json_invalid":  # not JSON: JSON inside prose?
        embedded = embedded_json(content)
        if embedded is not None:
            try:
                answer = model_cls.model_validate_json(embedded)
            except ValidationError as exc:
                error = exc
            else:
                if on_prose is not None:
                    on_prose()
                return answer
    raise BadAnswer(f"the answer does not match schema {schema_name}: {short_validation_error(error)}")


_FENCED = re.compile(r"```[A-Za-z0-9_-]*[ \t]*\r?\n(.*?)```", re.DOTALL)
_DECODER = json.JSONDecoder()
#: How many `{` an answer in prose is searched from for its JSON object.
_MAX_OBJECT_STARTS = 32


def embedded_json(text: str) -> str | None:
    """The JSON object inside prose: the first fenced block holding one, else the first object
    that parses from a `{` on (what follows it is ignored); None when there is none."""
    for block in _FENCED.findall(text):
        block = block.strip()
        if block.startswith("{"):
            return block
    start = text.find("{")
    for _ in range(_MAX_OBJECT_STARTS):  # bounded: each try may read to the end of the text
        if start == -1:
            break
        try:
            _, end = _DECODER.raw_decode(text, start)
            return text[start:end]
        except ValueError:
            start = text.find("{", start + 1)
    return None


def strip_fences(text: str) -> str:
    """The text inside a ```json ... ``` fence, when it is wrapped in one."""
    t = text.strip()
    if t.startswith("```"):
        t = t.split("\n", 1)[1] if "\n" in t else ""
        if t.rstrip().endswith("```"):
            t = t.rstrip()[:-3]
    return t


def short_validation_error(exc: ValidationError) -> str:
    """The first three problems, by field path: enough to see what the model got wrong."""
    parts = [f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}"
             for e in exc.errors(include_input=False)[:3]]
    more = f" (+{exc.error_count() - 3} more)" if exc.error_count() > 3 else ""
    return "; ".join(parts) + more


def parse_embeddings(reply: Reply, n: int, dim: int | None, meter: Meter | None = None) -> np.ndarray:
    """Vectors (n x dim, float64) aligned by `data[i].index`; any gap, duplicate or odd vector
    fails the attempt.

    Checked with numpy, not number by number: at 1,536 dimensions a batch of 16 is 24,576
    numbers, which a check of each in Python holds the event loop for (docs/llm-client.md).
    """
    try:
        payload = reply.json()
    except ValueError:
        raise BadAnswer("the server's answer is not JSON") from None
    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(data, list):
        raise BadAnswer("the answer has no data list")
    if meter is not None:
        meter(billed_usage(payload))
    if len(data) != n:
        raise BadAnswer(f"got {len(data)} vectors for {n} inputs")
    rows: list[Any] = [None] * n
    for entry in data:
        index = entry.get("index") if isinstance(entry, dict) else None
        if type(index) is not int or not 0 <= index < n or rows[index] is not None:
            raise BadAnswer(f"bad or repeated data[].index {index!r}")
        vector = decode_vector(entry.get("embedding"))
        if vector is None:
            raise BadAnswer(f"vector {index} is missing or not a list of numbers")
        rows[index] = vector
    dims = {len(v) for v in rows}
    if len(dims) != 1:
        raise BadAnswer(f"vectors of different dimensions {sorted(dims)}")
    try:
        vectors = np.asarray(rows)
    except ValueError:  # a list nested in a vector
        vectors = np.empty(0, dtype=object)
    # numbers only: no strings (kind U), None (O), booleans (b) or nested lists
    if vectors.ndim != 2 or vectors.dtype.kind not in "fiu":
        bad = next((i for i, v in enumerate(rows) if not _all_numbers(v)), 0)
        raise BadAnswer(f"vector {bad} is missing or not a list of numbers")
    vectors = vectors.astype(np.float64, copy=False)
    finite = np.isfinite(vectors).all(axis=1)
    if not finite.all():
        raise BadAnswer(f"vector {int(np.flatnonzero(~finite)[0])} has a non-finite number")
    if dim is not None and vectors.shape[1] != dim:
        raise BadAnswer(f"vectors of dimension {vectors.shape[1]}, expected {dim}")
    return vectors


def decode_vector(value: Any) -> Any:
    """A vector as sent: a list of numbers, or base64 float32 from servers that ignore
    encoding_format; None when it is neither."""
    if isinstance(value, str):
        try:
            raw = base64.b64decode(value, validate=True)
        except ValueError:
            return None
        return np.frombuffer(raw, dtype="<f4") if raw and len(raw) % 4 == 0 else None
    return value if isinstance(value, list) and value else None


def _all_numbers(vector: Any) -> bool:
    return isinstance(vector, np.ndarray) or all(type(x) in (float, int) for x in vector)


def parse_models(reply: Reply) -> list[str]:
    try:
        payload = reply.json()
        return [str(m["id"]) for m in payload["data"]]
    except (ValueError, KeyError, TypeError):
        raise BadAnswer("GET /models did not answer a list of models") from None
