"""Settings of a project directory: `settings.yaml`, overridden by `GRAPHRAG_FLOW_<SECTION>__<KEY>`.

Unknown keys are errors that name the key, because a typo in a nightly job's settings
should stop the first run, not silently fall back to a default for months.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict
from pydantic_settings import SettingsError as EnvParseError

from graphrag_flow.errors import SettingsError

#: GraphRAG's own blocks, kept in settings.yaml so the directory is also a `graphrag query` root.
GRAPHRAG_QUERY_BLOCKS = ("completion_models", "embedding_models")
SETTINGS_FILE = "settings.yaml"
ENV_PREFIX = "GRAPHRAG_FLOW_"
#: Bolt URI schemes the Neo4j sink accepts (the driver's preview HTTP support is not used).
NEO4J_SCHEMES = ("bolt", "bolt+s", "bolt+ssc", "neo4j", "neo4j+s", "neo4j+ssc")

# Bounds a user would expect, and upper ones where a larger value breaks a library or the
# machine (each says which). Every bound is checked when settings load: `check` and the first
# second of `index` fail on them, never a stage hours in.
#: Each request in flight holds a socket, and a process may open 1,024 files by default.
MAX_CONCURRENCY = 512
#: OpenAI's limit of inputs per embedding request.
MAX_EMBEDDING_BATCH = 2048
#: graspologic's Leiden takes max_cluster_size as a 32-bit unsigned integer.
MAX_CLUSTER_SIZE = 2**32 - 1
#: A name a setting can have (unknown keys are named in errors only when they look like one:
#: a mistyped line can make a key of a secret, e.g. `sk-...: x`).
_SETTING_NAME = re.compile(r"[a-z_][a-z0-9_]{0,63}", re.IGNORECASE)
#: llm.* settings that change what a run may spend, never what it makes.
SPENDING_KEYS = ("price_per_million_tokens", "max_run_tokens", "max_run_cost_usd")
#: Prefect block document names: lowercase letters, digits and dashes.
_BLOCK_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,127}")
#: An Azure OpenAI data-plane api-version: a date, optionally "-preview" (2024-10-21, 2025-04-01-preview).
_AZURE_API_VERSION = re.compile(r"\d{4}-\d{2}-\d{2}(-preview)?")


def _finite(**bounds: Any) -> Any:
    return Field(allow_inf_nan=False, **bounds)


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain a NUL character")
    return value


def _http_url(value: str | None) -> str | None:
    """An http(s) URL with a host. The message never repeats the value: it may carry a password."""
    if value is None:
        return None
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(value)
        host = parts.hostname
    except ValueError:
        host = None
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not host or any(c.isspace() for c in value):
        raise ValueError("must be an http:// or https:// URL with a host, e.g. https://api.openai.com/v1")
    return value


def _block_name(value: str | None) -> str | None:
    if value is not None and not _BLOCK_NAME.fullmatch(value):
        # Not repeated: a key pasted here by mistake must not be printed.
        raise ValueError("must be the name of a Prefect Secret block (lowercase letters, digits and dashes)")
    return value


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, str_min_length=1)


class InputSettings(_Section):
    dir: str = "input"
    #: NoDecode: an environment value is not JSON-decoded by pydantic-settings; `_patterns`
    #: takes a JSON list or one plain pattern (GRAPHRAG_FLOW_INPUT__PATTERNS='**/*.txt').
    #: The default reads every type a reader exists for (stages/load/readers/; a test checks the two agree).
    patterns: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["**/*.txt", "**/*.md", "**/*.rst", "**/*.pdf", "**/*.docx", "**/*.html",
                                 "**/*.htm", "**/*.csv", "**/*.json", "**/*.jsonl"],
        min_length=1,
    )
    max_file_mb: float | None = _finite(default=None, gt=0)
    #: CSV, JSON and JSON Lines records, named as GraphRAG names them: the column holding a
    #: record's text, the one naming it (else its row number), those carried into documents.parquet.
    text_column: str = Field("text", min_length=1)
    title_column: str | None = None
    metadata_columns: Annotated[list[str], NoDecode] = Field(default_factory=list)
    #: Readers run in worker processes (stages/load/workers.py): a file whose reading needs more
    #: memory (a decompression bomb) or time is skipped with a warning, and the run goes on.
    #: The memory is what one file may take beyond the worker's libraries.
    reader_memory_mb: int = Field(2048, ge=64, le=1_048_576)
    reader_timeout_s: float = _finite(default=600.0, gt=0, le=86_400)
    #: Links that lead out of input.dir are not followed unless this is set: what is read is
    #: sent to the chat API and written to the outputs (stages/load/listing.py).
    follow_links_outside: bool = False

    _dir_no_nul = field_validator("dir")(classmethod(lambda cls, v: _no_nul(v)))

    @field_validator("patterns", "metadata_columns", mode="before")
    @classmethod
    def _one_pattern_or_a_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            if value.lstrip().startswith("["):
                try:
                    return json.loads(value)
                except ValueError:
                    raise ValueError("is neither a JSON list of patterns nor one pattern") from None
            return [value]
        return value

    @field_validator("patterns")
    @classmethod
    def _relative_globs(cls, value: list[str]) -> list[str]:
        for i, pattern in enumerate(value):
            _no_nul(pattern)
            if PurePosixPath(pattern).is_absolute() or PureWindowsPath(pattern).is_absolute():
                raise ValueError(f"pattern {i + 1} is absolute: patterns are relative to input.dir")
            if ".." in PurePosixPath(pattern.replace("\\", "/")).parts:
                raise ValueError(f"pattern {i + 1} has a '..' part: patterns stay inside input.dir")
        return value


#: A URL's scheme: `s3://`, `gs://`, `az://`, `file://` (any fsspec protocol) in input.dir and output.dir.
_URL_SCHEME = re.compile(r"[a-z][a-z0-9+.-]*://", re.IGNORECASE)
#: storage.options names that hold a secret: they come from the environment or a Prefect block,
#: never from settings in clear (settings.yaml is committed, printed, copied).
_SECRET_OPTION = re.compile(r"secret|token|password|passwd|credential|connection_string|sas|account_key|private",
                            re.IGNORECASE)


def is_url(value: str) -> bool:
    """`value` names a store by URL (fsspec), not a local folder."""
    return bool(_URL_SCHEME.match(value))


class OutputSettings(_Section):
    #: `output` (the project's output/ folder: a symlink may put it on another disk) or an
    #: fsspec URL (`s3://bucket/prefix`): generations and a pointer there (storage/published.py).
    dir: str = "output"

    @field_validator("dir")
    @classmethod
    def _folder_or_url(cls, value: str) -> str:
        _no_nul(value)
        if value.rstrip("/") != "output" and not is_url(value):
            raise ValueError("must be `output` (the project's output/ folder; make it a symlink to put it on another "
                             "disk) or a storage URL such as s3://bucket/prefix or file:///srv/index")
        return value.rstrip("/") if not is_url(value) else value


class StorageSettings(_Section):
    #: fsspec options of the store(s) in input.dir and output.dir (s3fs: endpoint_url,
    #: client_kwargs.region_name, config_kwargs, ...). Credentials come from the environment
    #: (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, ...), never from here.
    #: NoDecode: `_json_object` decodes GRAPHRAG_FLOW_STORAGE__OPTIONS, so a bad value names this key.
    options: Annotated[dict[str, Any], NoDecode] = Field(default_factory=dict)
    #: The output URL's lock object is renewed every third of this; another coordinator takes over
    #: a lock not renewed for this long (a coordinator killed on another machine).
    lock_lease_s: float = _finite(default=300.0, ge=10, le=86_400)
    #: The name of a prefect-aws AwsCredentials block: its key pair (and region) reach s3fs and
    #: LanceDB alike, resolved once at the start of a run or `check` (flows/secret_lookup.py).
    aws_credentials_block: str | None = None
    #: What the block resolved to (key, secret, token, region): never a field, so never dumped,
    #: fingerprinted or printed.
    _credentials: dict[str, str] = PrivateAttr(default_factory=dict)

    _block = field_validator("aws_credentials_block")(classmethod(lambda cls, v: _block_name(v)))

    def with_credentials(self, credentials: dict[str, str]) -> "StorageSettings":
        copy = self.model_copy()
        copy._credentials = dict(credentials)
        return copy

    @property
    def credentials(self) -> dict[str, str]:
        return dict(self._credentials)

    @field_validator("options", mode="before")
    @classmethod
    def _json_object(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                raise ValueError("must be a JSON object of fsspec options") from None
            if not isinstance(value, dict):
                raise ValueError("must be a JSON object of fsspec options")
        return value

    @field_validator("options")
    @classmethod
    def _no_secrets(cls, value: dict[str, Any]) -> dict[str, Any]:
        def walk(options: dict[str, Any], prefix: str) -> None:
            for name, item in options.items():
                if _SECRET_OPTION.search(str(name)):
                    shown = f"'{prefix}{name}'" if _SETTING_NAME.fullmatch(str(name)) else "an option"
                    raise ValueError(f"{shown} holds a secret: put credentials in the environment (AWS_ACCESS_KEY_ID, "
                                     "AWS_SECRET_ACCESS_KEY, ...), not in settings")
                if isinstance(item, dict):
                    walk(item, f"{prefix}{name}.")

        walk(value, "")
        return value


class ChunkSettings(_Section):
    #: Bounded: a window is tokenized whole, and an embedding model sees a few thousand tokens.
    size: int = Field(1200, gt=0, le=1_000_000)
    #: validate_default: the default overlap (100) must also be checked against a small size.
    overlap: int = Field(100, ge=0, validate_default=True)

    @field_validator("overlap")
    @classmethod
    def _overlap_below_size(cls, v: int, info: Any) -> int:
        size = info.data.get("size")
        if size is not None and v >= size:
            raise ValueError(f"must be smaller than chunks.size ({size}); it is {v}")
        return v


class TokenPrices(_Section):
    """What a provider charges, in US dollars per million tokens: chat prompt and completion
    tokens, embedding input tokens. No table is shipped (prices change); a run's cost is null
    while these are not set."""

    prompt: float = _finite(ge=0)
    completion: float = _finite(ge=0)
    embedding: float = _finite(ge=0)


#: Where provider openai sends requests when llm.api_base is not set.
OPENAI_API_BASE = "https://api.openai.com/v1"


class LLMSettings(_Section):
    #: offline (no network), openai (any OpenAI-compatible API: OpenAI, vLLM, Ollama, a proxy) or
    #: azure (Azure OpenAI: deployments, api-version, `api-key` or Microsoft Entra ID).
    provider: Literal["offline", "openai", "azure"] = "offline"
    api_base: str | None = None
    #: azure: the data-plane api-version every request carries (required there, e.g. 2024-10-21).
    api_version: str | None = None
    #: azure: `api_key` (the `api-key` header) or `entra_id` (a Microsoft Entra ID token from
    #: azure-identity's DefaultAzureCredential: `pip install graphrag-flow[azure]`).
    azure_auth: Literal["api_key", "entra_id"] = "api_key"
    api_key: SecretStr | None = None
    api_key_secret: str | None = None
    chat_model: str = "gpt-4.1-mini"
    embedding_model: str = "text-embedding-3-small"
    embedding_dimensions: int | None = Field(None, gt=0, le=65_536)
    #: OpenAI's range; other values are refused by the API at the first request.
    temperature: float = _finite(default=0.0, ge=0.0, le=2.0)
    max_concurrency: int = Field(16, gt=0, le=MAX_CONCURRENCY)
    prefect_concurrency_limit: str | None = None
    #: The provider's limits, held across the whole run (graphrag_flow/llm/pacing.py): a request
    #: waits until it fits in the last minute's budget. null: no limit of that kind. Several runs
    #: on one key each see the others' usage in the server's x-ratelimit-* headers.
    tokens_per_minute: int | None = Field(None, gt=0, le=1_000_000_000)
    requests_per_minute: int | None = Field(None, gt=0, le=10_000_000)
    #: What a chat request's answer is counted for against tokens_per_minute, beside its prompt
    #: (providers count the request's max_tokens, which graphrag-flow does not send, or an estimate).
    expected_completion_tokens: int = Field(1000, ge=0, le=1_000_000)
    request_timeout_s: float = _finite(default=60, gt=0, le=3600)
    max_retries: int = Field(6, ge=0, le=100)
    #: A request unanswered after 2x the p95 latency is sent again beside the first when a
    #: request slot is idle (a stage's tail); the first answer wins. Costs a few duplicates.
    hedge_slow_requests: bool = True
    embedding_batch_size: int = Field(16, gt=0, le=MAX_EMBEDDING_BATCH)
    embedding_batch_max_tokens: int = Field(8191, gt=0, le=1_000_000)
    prompts_dir: str | None = None
    #: At least room for a few entities; at most what a chat model's context holds.
    report_max_input_tokens: int = Field(8000, ge=100, le=2_000_000)
    #: null: a run's cost is unknown (null), never 0 (graphrag_flow/usage.py).
    price_per_million_tokens: TokenPrices | None = None
    #: A run stops sending before it crosses either (README, "Estimate and budget"); null = none.
    max_run_tokens: int | None = Field(None, gt=0)
    max_run_cost_usd: float | None = _finite(default=None, gt=0)

    _url = field_validator("api_base")(classmethod(lambda cls, v: _http_url(v)))
    _block = field_validator("api_key_secret")(classmethod(lambda cls, v: _block_name(v)))
    _prompts_no_nul = field_validator("prompts_dir")(classmethod(lambda cls, v: v if v is None else _no_nul(v)))

    @field_validator("api_version")
    @classmethod
    def _azure_api_version(cls, value: str | None) -> str | None:
        if value is not None and not _AZURE_API_VERSION.fullmatch(value):
            raise ValueError("must be an Azure OpenAI api-version such as 2024-10-21 or 2025-04-01-preview")
        return value

    @property
    def uses_entra_id(self) -> bool:
        """Azure with a Microsoft Entra ID token per request instead of a key."""
        return self.provider == "azure" and self.azure_auth == "entra_id"

    @model_validator(mode="after")
    def _azure_needs_its_settings(self) -> "LLMSettings":
        if self.provider != "azure":
            return self
        if self.api_version is None:
            raise ValueError("llm.provider azure needs llm.api_version, the api-version every request carries "
                             "(e.g. 2024-10-21)")
        if self.api_base is not None and "/openai" in self.api_base.rstrip("/").lower().split("://", 1)[-1]:
            raise ValueError("with llm.provider azure, llm.api_base is the resource endpoint "
                             "(https://NAME.openai.azure.com), without /openai/...")
        if self.azure_auth == "entra_id" and (self.api_key is not None or self.api_key_secret is not None):
            raise ValueError("llm.azure_auth is entra_id, which sends no key: remove llm.api_key and "
                             "llm.api_key_secret, or set llm.azure_auth: api_key")
        return self

    @property
    def base_url(self) -> str | None:
        """Where requests go: `api_base`, else OpenAI's API for provider openai. The setting
        itself stays unset, so GraphRAG's query blocks (whose default is OpenAI too) agree."""
        return self.api_base or (OPENAI_API_BASE if self.provider == "openai" else None)

    def require_base_url(self) -> str:
        """`base_url`, or SettingsError naming llm.api_base with an example for the provider."""
        if not self.base_url:
            example = "https://NAME.openai.azure.com" if self.provider == "azure" else OPENAI_API_BASE
            raise SettingsError(f"llm.api_base is not set (e.g. {example})")
        return self.base_url


class EmbedSettings(_Section):
    #: The offline provider's model: `minilm-static` (word-piece vectors distilled from MiniLM:
    #: whole texts, ~100x faster) or `minilm` (the transformer itself, the first 256 word pieces
    #: or windows of them per `long_text`). docs/offline-quality.md compares their retrieval.
    offline_model: Literal["minilm-static", "minilm"] = "minilm-static"
    long_text: Literal["truncate", "mean_windows"] = "truncate"

    @model_validator(mode="after")
    def _long_text_is_the_transformers(self) -> "EmbedSettings":
        if self.long_text != "truncate" and self.offline_model != "minilm":
            raise ValueError(f"embed.long_text: {self.long_text} applies to embed.offline_model: minilm (the "
                             f"transformer reads 256 word pieces at a time); {self.offline_model} reads the whole "
                             "text: set embed.offline_model: minilm, or remove embed.long_text")
        return self


class GraphSettings(_Section):
    max_cluster_size: int = Field(10, gt=1, le=MAX_CLUSTER_SIZE)
    seed: int = Field(42, ge=0, le=2**32 - 1)


def _require_scheme(value: str | None, schemes: tuple[str, ...]) -> str | None:
    """`value` (a URL setting) unchanged when unset or of one of `schemes`; else ValueError.
    The value is not repeated in the message: a URL may carry a password."""
    if value is not None and value.partition("://")[0].lower() not in schemes:
        raise ValueError(f"must start with one of {', '.join(s + '://' for s in schemes)}")
    return value


class Neo4jSettings(_Section):
    uri: str | None = None
    user: str = "neo4j"
    password: SecretStr | None = None
    password_secret: str | None = None
    database: str | None = None
    batch_size: int = Field(1000, gt=0, le=1_000_000)

    _block = field_validator("password_secret")(classmethod(lambda cls, v: _block_name(v)))

    @field_validator("uri")
    @classmethod
    def _bolt_uri(cls, value: str | None) -> str | None:
        return _require_scheme(value, NEO4J_SCHEMES)


#: Schemes of a Dask scheduler address (distributed's comm protocols).
DASK_SCHEMES = ("tcp", "tls", "ws", "wss", "ucx")


class ExecutionSettings(_Section):
    """Where the CPU-heavy batch work runs (offline extraction, offline embedding, reports).

    `local`: in the flow's process. `dask`: as Prefect task runs on a Dask cluster through
    prefect-dask (the `graphrag-flow[dask]` extra): the scheduler at `dask_address`, or else a
    `LocalCluster` of `dask_workers` worker processes started for the run. Outputs are the same
    either way, so this is not part of the settings fingerprint.
    """

    task_runner: Literal["local", "dask"] = "local"
    dask_address: str | None = None
    dask_workers: int = Field(2, gt=0, le=256)

    @field_validator("dask_address")
    @classmethod
    def _scheduler_address(cls, value: str | None) -> str | None:
        return _require_scheme(value, DASK_SCHEMES)


class Settings(BaseSettings):
    """All settings of one project directory: `load_settings(root)` reads them."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        case_sensitive=False,
    )

    input: InputSettings = Field(default_factory=InputSettings)
    output: OutputSettings = Field(default_factory=OutputSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    chunks: ChunkSettings = Field(default_factory=ChunkSettings)
    llm: LLMSettings = Field(default_factory=LLMSettings)
    embed: EmbedSettings = Field(default_factory=EmbedSettings)
    graph: GraphSettings = Field(default_factory=GraphSettings)
    neo4j: Neo4jSettings = Field(default_factory=Neo4jSettings)
    execution: ExecutionSettings = Field(default_factory=ExecutionSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The keyword arguments are settings.yaml's sections (load_settings); env vars win per key.
        return (env_settings, init_settings)

    def fingerprint(self) -> str:
        """sha256 of the settings without secrets: goes into the manifest, never a key itself.
        Where the work runs (`execution`) changes no output, so it is left out."""
        data = self.public_dict()
        data.pop("execution", None)
        return sha256_json(data)

    def public_dict(self) -> dict[str, Any]:
        """The settings as plain data, with every secret removed (not masked: removed), and
        without what changes no output (prices and budgets: a raised budget is not a change
        of settings for the next run's delta)."""
        data = self.model_dump(mode="json")
        data["llm"].pop("api_key", None)
        data["neo4j"].pop("password", None)
        for key in SPENDING_KEYS:
            data["llm"].pop(key, None)
        return data


def secret_value(secret: SecretStr | None) -> str | None:
    """A resolved secret's value, to hand straight to the client that sends it (flows/secret_lookup.py
    resolves them once per run)."""
    return None if secret is None else secret.get_secret_value()


def sha256_json(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def read_settings_yaml(path: Path) -> dict[str, Any]:
    """settings.yaml's sections. Errors name the file, line and column, never a line's text:
    the line of a YAML error is often the one holding the API key."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise SettingsError(f"{path} is not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise SettingsError(f"cannot read {path}: {exc.strerror or type(exc).__name__}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        raise SettingsError(f"{path} is not valid YAML: {_describe_yaml_error(exc)}") from None
    except yaml.reader.ReaderError as exc:
        raise SettingsError(
            f"{path} is not valid YAML: {_position(text, exc.position)}: a control character YAML does not allow"
        ) from None
    except (yaml.YAMLError, ValueError, TypeError, OverflowError, RecursionError):
        # e.g. `!!int x` or a bad `!!timestamp`: the constructors' messages quote the value
        raise SettingsError(f"{path} is not valid YAML: a value cannot be read as the type its tag names") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SettingsError(f"{path} must hold a mapping of sections (input, chunks, llm, ...)")
    for block in GRAPHRAG_QUERY_BLOCKS:
        data.pop(block, None)
    for key in data:
        # `_`-keys would reach pydantic-settings' own init options (`_env_prefix`, ...)
        if not isinstance(key, str) or key.startswith("_"):
            shown = f"'{key}' " if isinstance(key, str) and _SETTING_NAME.fullmatch(key) else ""
            raise SettingsError(f"unknown setting {shown}at the top level of {path.name}: expected sections "
                                "(input, output, storage, chunks, llm, embed, graph, neo4j, execution)")
    return data


#: Quoted parts of a YAML error that are kept: token names and punctuation, never text.
_SAFE_QUOTED = re.compile(r"<[a-z ]+>|[^\w\s]{1,3}")


def _describe_yaml_error(exc: yaml.MarkedYAMLError) -> str:
    """What is wrong and where, from PyYAML's marks; PyYAML's own text quotes the line, and
    its problems may quote a value (an alias, a tag, a character): those parts are elided."""

    def unquote(text: str) -> str:
        def keep(match: re.Match) -> str:
            inner = match.group(0)[1:-1]
            return match.group(0) if _SAFE_QUOTED.fullmatch(inner) else "(elided)"

        return re.sub(r"'[^'\n]*'|\"[^\"\n]*\"", keep, text)

    where = exc.problem_mark or exc.context_mark
    parts = []
    if where is not None:
        parts.append(f"line {where.line + 1}, column {where.column + 1}")
    parts.append(unquote(exc.problem or "syntax error"))
    if exc.context and exc.context_mark is not None:
        mark = exc.context_mark
        parts[-1] += f" ({unquote(exc.context)} at line {mark.line + 1}, column {mark.column + 1})"
    return ": ".join(parts)


def _position(text: str, offset: int) -> str:
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return f"line {line}, column {column}"


def load_settings(root: Path) -> Settings:
    """Read `<root>/settings.yaml` (optional) with env overrides; errors name the bad key."""
    root = Path(root)
    if not root.is_dir():
        raise SettingsError(f"project root {root} does not exist (run `graphrag-flow init --root {root}`)")
    path = root / SETTINGS_FILE
    data = read_settings_yaml(path) if path.exists() else {}
    try:
        return Settings(**data)
    except ValidationError as exc:
        raise SettingsError(_describe_validation_error(exc, path)) from None
    except EnvParseError as exc:
        raise SettingsError(_describe_env_error(exc)) from None


def _describe_env_error(exc: EnvParseError) -> str:
    """pydantic-settings could not decode a GRAPHRAG_FLOW_<SECTION> variable as JSON. Its
    error chains the decoder's, whose document is the value: neither is shown."""
    found = re.search(r'field "([^"]+)"', str(exc))
    section = found.group(1) if found else None
    if section is None or not _SETTING_NAME.fullmatch(section):
        return "invalid settings: a GRAPHRAG_FLOW_* environment variable is not valid JSON"
    cause = exc.__cause__
    detail = f" ({cause.msg} at character {cause.pos + 1})" if isinstance(cause, json.JSONDecodeError) else ""
    return (f"invalid settings: environment variable {ENV_PREFIX}{section.upper()} (settings section '{section}') "
            f"must be a JSON object of its keys{detail}; or set one key with {ENV_PREFIX}{section.upper()}__<KEY>")


def _describe_validation_error(exc: ValidationError, path: Path) -> str:
    lines = []
    for err in exc.errors(include_input=False, include_url=False):
        shown = [str(p) for p in err["loc"]]
        if err["type"] == "extra_forbidden":
            if all(_SETTING_NAME.fullmatch(p) for p in shown):
                lines.append(f"unknown setting '{'.'.join(shown)}' in {path.name} or GRAPHRAG_FLOW_* environment")
            else:
                where = ".".join(p for p in shown[:-1] if _SETTING_NAME.fullmatch(p)) or "the top level"
                lines.append(f"an unknown setting in {where} of {path.name} or the environment; its name is not "
                             "shown because it is not a setting name (letters, digits and _)")
            continue
        key = ".".join(p for p in shown if _SETTING_NAME.fullmatch(p) or p.isdigit())
        # Never the input value: it may be a secret.
        message = err["msg"].removeprefix("Value error, ")
        lines.append(f"setting '{key}': {message}")
    return "invalid settings: " + "; ".join(lines)
