"""Settings of a project directory: `settings.yaml`, overridden by `GRAPHRAG_FLOW_<SECTION>__<KEY>`.

Unknown keys are errors that name the key, because a typo in a nightly job's settings
should stop the first run, not silently fall back to a default for months.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from graphrag_flow.errors import SettingsError

#: GraphRAG's own blocks, kept in settings.yaml so the directory is also a `graphrag query` root.
GRAPHRAG_QUERY_BLOCKS = ("completion_models", "embedding_models")
SETTINGS_FILE = "settings.yaml"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class InputSettings(_Section):
    dir: str = "input"
    patterns: list[str] = Field(default_factory=lambda: ["**/*.txt", "**/*.md", "**/*.rst"])
    max_file_mb: float | None = None
    #: Links that lead out of input.dir are not followed unless this is set: what is read is
    #: sent to the chat API and written to the outputs (documents.py).
    follow_links_outside: bool = False


class ChunkSettings(_Section):
    size: int = Field(1200, gt=0)
    overlap: int = Field(100, ge=0)

    @field_validator("overlap")
    @classmethod
    def _overlap_below_size(cls, v: int, info: Any) -> int:
        size = info.data.get("size")
        if size is not None and v >= size:
            raise ValueError(f"chunks.overlap ({v}) must be smaller than chunks.size ({size})")
        return v


class LLMSettings(_Section):
    provider: Literal["offline", "openai"] = "offline"
    api_base: str | None = None
    api_key: SecretStr | None = None
    api_key_secret: str | None = None
    chat_model: str = "gpt-4.1-mini"
    embedding_model: str = "text-embedding-3-small"
    embedding_dimensions: int | None = None
    temperature: float = 0.0
    max_concurrency: int = Field(16, gt=0)
    prefect_concurrency_limit: str | None = None
    request_timeout_s: float = Field(60, gt=0)
    max_retries: int = Field(6, ge=0)
    #: A request unanswered after 2x the p95 latency is sent again beside the first when a
    #: request slot is idle (a stage's tail); the first answer wins. Costs a few duplicates.
    hedge_slow_requests: bool = True
    embedding_batch_size: int = Field(16, gt=0)
    embedding_batch_max_tokens: int = Field(8191, gt=0)
    prompts_dir: str | None = None
    report_max_input_tokens: int = Field(8000, gt=0)


class EmbedSettings(_Section):
    long_text: Literal["truncate", "mean_windows"] = "truncate"


class GraphSettings(_Section):
    max_cluster_size: int = Field(10, gt=1)
    seed: int = 42


class Neo4jSettings(_Section):
    uri: str | None = None
    user: str = "neo4j"
    password: SecretStr | None = None
    password_secret: str | None = None
    database: str | None = None
    batch_size: int = Field(1000, gt=0)


class _YamlSource(PydanticBaseSettingsSource):
    """settings.yaml as a pydantic-settings source, below env vars in precedence."""

    def __init__(self, settings_cls: type[BaseSettings], data: dict[str, Any]):
        super().__init__(settings_cls)
        self._data = data

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._data)


class Settings(BaseSettings):
    """All settings of one project directory."""

    model_config = SettingsConfigDict(
        env_prefix="GRAPHRAG_FLOW_",
        env_nested_delimiter="__",
        extra="forbid",
        case_sensitive=False,
    )

    input: InputSettings = Field(default_factory=InputSettings)
    chunks: ChunkSettings = Field(default_factory=ChunkSettings)
    llm: LLMSettings = Field(default_factory=LLMSettings)
    embed: EmbedSettings = Field(default_factory=EmbedSettings)
    graph: GraphSettings = Field(default_factory=GraphSettings)
    neo4j: Neo4jSettings = Field(default_factory=Neo4jSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        yaml_data = _YAML_DATA.get("data", {})
        return (env_settings, _YamlSource(settings_cls, yaml_data))

    def fingerprint(self) -> str:
        """sha256 of the settings without secrets: goes into the manifest, never a key itself."""
        return sha256_json(self.public_dict())

    def public_dict(self) -> dict[str, Any]:
        """The settings as plain data, with every secret removed (not masked: removed)."""
        data = self.model_dump(mode="json")
        data["llm"].pop("api_key", None)
        data["neo4j"].pop("password", None)
        return data


# pydantic-settings builds sources from the class; the YAML document is handed over here
# for the duration of one load_settings() call.
_YAML_DATA: dict[str, Any] = {}


def sha256_json(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def read_settings_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise SettingsError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise SettingsError(f"{path} must hold a mapping of sections (input, chunks, llm, ...)")
    for block in GRAPHRAG_QUERY_BLOCKS:
        data.pop(block, None)
    return data


def load_settings(root: Path) -> Settings:
    """Read `<root>/settings.yaml` (optional) with env overrides; errors name the bad key."""
    root = Path(root)
    if not root.is_dir():
        raise SettingsError(f"project root {root} does not exist (run `graphrag-flow init --root {root}`)")
    path = root / SETTINGS_FILE
    data = read_settings_yaml(path) if path.exists() else {}
    _YAML_DATA["data"] = data
    try:
        return Settings()
    except ValidationError as exc:
        raise SettingsError(_describe_validation_error(exc, path)) from None
    finally:
        _YAML_DATA.pop("data", None)


def _describe_validation_error(exc: ValidationError, path: Path) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            lines.append(f"unknown setting '{key}' in {path.name} or GRAPHRAG_FLOW_* environment")
        else:
            # Never echo the input value: it may be a secret.
            lines.append(f"setting '{key}': {err['msg']}")
    return "invalid settings: " + "; ".join(lines)
