"""Talking to OpenAI-compatible APIs as shared/docs/llm-contract.md specifies."""
