"""`graphrag-flow init`: a commented settings.yaml and an input folder."""

from __future__ import annotations

from pathlib import Path

from graphrag_flow.config import LLMSettings
from graphrag_flow.graphrag_query import render_graphrag_blocks

SETTINGS_TEMPLATE = """\
# graphrag-flow settings. Every key can be overridden by an environment variable
# GRAPHRAG_FLOW_<SECTION>__<KEY>, e.g. GRAPHRAG_FLOW_LLM__API_BASE. Unknown keys are errors.

input:
  dir: input                 # documents to index, relative to this folder, or a URL: s3://bucket/prefix
  patterns: ["**/*.txt", "**/*.md", "**/*.rst", "**/*.pdf", "**/*.docx", "**/*.html", "**/*.htm", "**/*.csv", "**/*.json", "**/*.jsonl"]
  max_file_mb: null          # skip (with a warning) files larger than this; null = no limit
  text_column: text          # CSV/JSON records: the column with the text (one document per record)
  title_column: null         # CSV/JSON records: the column naming a record (null: its row number)
  metadata_columns: []       # CSV/JSON records: columns carried into documents.parquet (raw_data)
  reader_memory_mb: 2048     # memory one PDF/DOCX/HTML file may take to parse (else skipped with a warning)
  reader_timeout_s: 600      # seconds one PDF/DOCX/HTML file may take to parse (else skipped with a warning)
  follow_links_outside: false   # read links that lead out of the input folder (else: skipped with a warning)

output:
  dir: output                # this folder's output/, or a URL: s3://bucket/prefix (README, "Object storage")

storage:                     # for input.dir / output.dir URLs; credentials come from the environment (AWS_*)
  options: {}                # fsspec options, e.g. {endpoint_url: "http://127.0.0.1:9000"}; no secrets here
  lock_lease_s: 300          # one coordinator per output URL: its lock object's lease

chunks:                      # text units, in cl100k tokens
  size: 1200
  overlap: 100

llm:
  provider: offline          # offline (no network, no key) | openai (any OpenAI-compatible API) | azure (Azure OpenAI)
  api_base: null             # unset: https://api.openai.com/v1; a local server: http://127.0.0.1:8000/v1; azure: https://NAME.openai.azure.com
  api_version: null          # azure: the api-version every request carries, e.g. 2024-10-21
  azure_auth: api_key        # azure: api_key | entra_id (a Microsoft Entra ID token; pip install 'graphrag-flow[azure]')
  api_key: null              # prefer OPENAI_API_KEY (azure: AZURE_OPENAI_API_KEY) or a Prefect Secret block
  api_key_secret: null       # name of a Prefect Secret block that holds the key
  chat_model: gpt-4.1-mini    # azure: the deployment names
  embedding_model: text-embedding-3-small
  embedding_dimensions: null
  temperature: 0.0
  max_concurrency: 16        # requests in flight across the whole run
  prefect_concurrency_limit: null   # a Prefect global concurrency limit shared by runs
  tokens_per_minute: null    # the provider's TPM limit: requests are paced to stay under it (null: none)
  requests_per_minute: null  # the provider's RPM limit (null: none)
  expected_completion_tokens: 1000   # what a chat answer counts for against tokens_per_minute
  request_timeout_s: 60
  max_retries: 6
  hedge_slow_requests: true  # at a stage's end, send a slow request again beside the first (first answer wins)
  embedding_batch_size: 16
  embedding_batch_max_tokens: 8191
  prompts_dir: null          # a folder with graph_extraction.txt, entity_summary.txt, community_report.txt
  report_max_input_tokens: 8000
  price_per_million_tokens: null   # your provider's, in US dollars, e.g. {prompt: 0.4, completion: 1.6, embedding: 0.02}
  max_run_tokens: null       # a run stops sending before it crosses this (null: no budget)
  max_run_cost_usd: null     # the same in dollars (needs prices); `index --max-cost USD` overrides it

embed:
  offline_model: minilm-static   # minilm-static (fast, whole texts) | minilm (the transformer)
  long_text: truncate        # minilm only: truncate | mean_windows for texts past its 256 tokens

graph:
  max_cluster_size: 10
  seed: 42

neo4j:                       # the sink is off while uri is null
  uri: null
  user: neo4j
  password: null             # prefer GRAPHRAG_FLOW_NEO4J__PASSWORD or password_secret
  password_secret: null
  database: null
  batch_size: 1000

"""


GRAPHRAG_BLOCKS_HEADER = """\
# GraphRAG 3.3.0's own model blocks: they make this folder a `graphrag query --root` folder
# (README, "Query your index"). graphrag-flow ignores them; keep them in line with llm.*
# (`graphrag-flow check` warns when they differ): model = llm.chat_model / llm.embedding_model,
# api_base: <llm.api_base> in both when it is set, call_args: {dimensions: N} in the embedding
# block when llm.embedding_dimensions is set. GraphRAG reads the key from the environment
# variable named here; never put the key itself in this file.
"""


def settings_template(llm: LLMSettings | None = None) -> str:
    """settings.yaml as init writes it: our sections, then GraphRAG's blocks matching llm.*."""
    return SETTINGS_TEMPLATE + GRAPHRAG_BLOCKS_HEADER + render_graphrag_blocks(llm or LLMSettings())


def init_project(root: Path) -> list[Path]:
    """Create what is missing; never overwrite a user's settings."""
    root.mkdir(parents=True, exist_ok=True)
    made = []
    settings = root / "settings.yaml"
    if not settings.exists():
        settings.write_text(settings_template(), encoding="utf-8")
        made.append(settings)
    input_dir = root / "input"
    if not input_dir.exists():
        input_dir.mkdir()
        made.append(input_dir)
    return made
