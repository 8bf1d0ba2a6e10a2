"""A project directory as a GraphRAG 3.3.0 query root (`graphrag query --root DIR`).

GraphRAG reads the same settings.yaml as graphrag-flow. It needs two blocks of its own,
`completion_models.default_completion_model` and `embedding_models.default_embedding_model`;
everything else it needs (output/ for the parquet tables, output/lancedb for the vectors, the
vector table names, its query prompts) is GraphRAG's default and matches what we write, and it
ignores graphrag-flow's own sections. graphrag-flow ignores those two blocks (config.py drops
them), so they are generated from `llm.*` here, and `check` compares them with `llm.*`: a
question embedded with another model than the index's vectors finds nothing relevant.

The key is always an environment reference (`${OPENAI_API_KEY}`, `${AZURE_OPENAI_API_KEY}` for
Azure, which GraphRAG substitutes when it loads the file), never the literal key. For Azure the
blocks name the deployment (`azure_deployment_name`) and `api_version`, and with Entra ID
GraphRAG's `auth_method: azure_managed_identity` (graphrag-llm's ModelConfig fields).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from graphrag_flow.config import SETTINGS_FILE, LLMSettings
from graphrag_flow.urls import safe_url

COMPLETION_BLOCK = ("completion_models", "default_completion_model")
EMBEDDING_BLOCK = ("embedding_models", "default_embedding_model")
API_KEY_REFERENCE = "${OPENAI_API_KEY}"
AZURE_KEY_REFERENCE = "${AZURE_OPENAI_API_KEY}"
_ENV_REFERENCE = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*\}$")


def graphrag_blocks(llm: LLMSettings) -> dict[str, dict[str, dict[str, Any]]]:
    """GraphRAG's two model blocks for these llm settings (an OpenAI-compatible API, or Azure)."""

    def block(model: str) -> dict[str, Any]:
        if llm.provider == "azure":
            out: dict[str, Any] = {"model_provider": "azure", "model": model, "azure_deployment_name": model,
                                   "api_version": llm.api_version}
            out |= ({"auth_method": "azure_managed_identity"} if llm.uses_entra_id else
                    {"auth_method": "api_key", "api_key": AZURE_KEY_REFERENCE})
        else:
            out = {"model_provider": "openai", "model": model, "auth_method": "api_key", "api_key": API_KEY_REFERENCE}
        if llm.api_base:
            out["api_base"] = llm.api_base
        return out

    embedding = block(llm.embedding_model)
    if llm.embedding_dimensions:
        embedding["call_args"] = {"dimensions": llm.embedding_dimensions}
    return {
        COMPLETION_BLOCK[0]: {COMPLETION_BLOCK[1]: block(llm.chat_model)},
        EMBEDDING_BLOCK[0]: {EMBEDDING_BLOCK[1]: embedding},
    }


def render_graphrag_blocks(llm: LLMSettings) -> str:
    return yaml.safe_dump(graphrag_blocks(llm), sort_keys=False, default_flow_style=False)


def read_graphrag_blocks(root: Path) -> dict[str, Any]:
    """The two blocks as settings.yaml has them ({} where missing)."""
    path = Path(root) / SETTINGS_FILE
    data = yaml.safe_load(path.read_text(encoding="utf-8")) if path.exists() else None
    data = data if isinstance(data, dict) else {}
    return {name: data.get(name) for name in (COMPLETION_BLOCK[0], EMBEDDING_BLOCK[0])}


def _norm_base(url: Any) -> str | None:
    return str(url).rstrip("/") if url else None


def query_block_warnings(root: Path, llm: LLMSettings) -> list[str]:
    """Where GraphRAG's blocks disagree with llm.* (or are missing); never echoes a key."""
    blocks = read_graphrag_blocks(root)
    warnings: list[str] = []
    wanted = graphrag_blocks(llm)
    offline = llm.provider == "offline"
    for (section, name), setting in ((COMPLETION_BLOCK, "llm.chat_model"), (EMBEDDING_BLOCK, "llm.embedding_model")):
        key = f"{section}.{name}"
        block = (blocks.get(section) or {}).get(name) if isinstance(blocks.get(section), dict) else None
        if not isinstance(block, dict):
            warnings.append(f"settings.yaml has no {key} block: `graphrag query --root {root}` cannot run "
                            "(`graphrag-flow init` on a new folder writes it)")
            continue
        want = wanted[section][name]
        embedding = section == EMBEDDING_BLOCK[0]
        if embedding and offline:
            warnings.append("llm.provider is offline: the vectors come from the local model, so graphrag query "
                            "can answer --method global only (local, drift and basic embed the question)")
            continue
        if block.get("model") != want["model"]:
            warnings.append(f"{key}.model is {block.get('model')!r} but {setting} is {want['model']!r}")
        if _norm_base(block.get("api_base")) != _norm_base(llm.api_base):
            shown = [safe_url(v) if isinstance(v, str) else v for v in (block.get("api_base"), llm.api_base)]
            warnings.append(f"{key}.api_base is {shown[0]!r} but llm.api_base is {shown[1]!r}")
        if block.get("model_provider") != want["model_provider"]:
            warnings.append(f"{key}.model_provider is {block.get('model_provider')!r}; graphrag-flow's provider "
                            f"is {want['model_provider']!r} (llm.provider)")
        for field in ("azure_deployment_name", "api_version", "auth_method") if llm.provider == "azure" else ():
            if block.get(field) != want[field]:
                warnings.append(f"{key}.{field} is {block.get(field)!r} but llm.* say {want[field]!r}")
        api_key = block.get("api_key")
        if api_key is not None and not _ENV_REFERENCE.match(str(api_key)):
            warnings.append(f"{key}.api_key holds a literal key: use an environment reference such as "
                            f"{API_KEY_REFERENCE}")
        if embedding:
            dims = (block.get("call_args") or {}).get("dimensions") if isinstance(block.get("call_args"), dict) else None
            if dims != llm.embedding_dimensions:
                warnings.append(f"{key}.call_args.dimensions is {dims!r} but llm.embedding_dimensions is "
                                f"{llm.embedding_dimensions!r}: question vectors would not match the index's")
    return warnings
