"""The stages of an index run, one module (or package) each, in flow order: load, chunk, extract,
summarize, communities, reports, embed, write, neo4j.

Each holds its stage's logic on explicit inputs and outputs (frames, records, paths), with the
offline and LLM strategies side by side, and no Prefect import: `tasks/<stage>.py` wraps it in a
Prefect task (cache key, retries, progress). docs/architecture.md shows how they connect.
"""
