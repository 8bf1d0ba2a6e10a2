"""Prefect tasks, one module per stage, each a thin wrapper (cache key, retries, progress, run
state) around its stage in graphrag_flow/stages/; context.py, keys.py, retries.py and
llm_stage.py are what they share."""
