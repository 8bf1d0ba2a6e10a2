"""`graphrag-flow init`: a commented settings.yaml and an input folder."""

from __future__ import annotations

from pathlib import Path

from graphrag_flow.config import LLMSettings
from graphrag_flow.graphrag_query import render_graphrag_blocks

SETTINGS_TEMPLATE = """\
# graphrag-flow settings. Every key can be overridden by an environment variable
# GRAPHRAG_FLOW_<SECTION>__<KEY>, e.g. GRAPHRAG_FLOW_LLM__API_BASE. Unknown keys are errors.

input:
  dir: input                 # documents to index, relative to this folder
  patterns: ["**/*.txt", "**/*.md", "**/*.rst"]
  max_file_mb: null          # skip (with a warning) files larger than this; null = no limit
  follow_links_outside: false   # read links that lead out of the input folder (else: skipped with a warning)

chunks:                      # text units, in cl100k tokens
  size: 1200
  overlap: 100

llm:
  provider: offline          # offline (no network, no key) | openai (any OpenAI-compatible API)
  api_base: null             # unset: https://api.openai.com/v1; a local server: http://127.0.0.1:8000/v1
  api_key: null              # prefer OPENAI_API_KEY or a Prefect Secret block (api_key_secret)
  api_key_secret: null       # name of a Prefect Secret block that holds the key
  chat_model: gpt-4.1-mini
  embedding_model: text-embedding-3-small
  embedding_dimensions: null
  temperature: 0.0
  max_concurrency: 16        # requests in flight across the whole run
  prefect_concurrency_limit: null   # a Prefect global concurrency limit shared by runs
  request_timeout_s: 60
  max_retries: 6
  hedge_slow_requests: true  # at a stage's end, send a slow request again beside the first (first answer wins)
  embedding_batch_size: 16
  embedding_batch_max_tokens: 8191
  prompts_dir: null          # a folder with graph_extraction.txt, entity_summary.txt, community_report.txt
  report_max_input_tokens: 8000

embed:
  long_text: truncate        # truncate | mean_windows: texts longer than the offline model's 256 tokens

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
