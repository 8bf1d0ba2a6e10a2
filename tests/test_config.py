"""Settings: YAML, env overrides, and errors that name the key."""

import pytest

from graphrag_flow.config import load_settings
from graphrag_flow.errors import SettingsError


def test_env_overrides_yaml_per_key(tmp_path, monkeypatch):
    (tmp_path / "settings.yaml").write_text("llm:\n  provider: openai\n  chat_model: m1\n")
    monkeypatch.setenv("GRAPHRAG_FLOW_LLM__API_BASE", "http://127.0.0.1:9/v1")
    settings = load_settings(tmp_path)
    assert settings.llm.provider == "openai"
    assert settings.llm.chat_model == "m1"
    assert settings.llm.api_base == "http://127.0.0.1:9/v1"


def test_unknown_key_is_an_error_naming_it(tmp_path):
    (tmp_path / "settings.yaml").write_text("chunks:\n  sise: 10\n")
    with pytest.raises(SettingsError, match="chunks.sise"):
        load_settings(tmp_path)


def test_unknown_env_key_is_an_error_naming_it(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHRAG_FLOW_GRAPH__SEEED", "1")
    with pytest.raises(SettingsError, match="graph.seeed"):
        load_settings(tmp_path)


def test_graphrag_query_blocks_are_allowed(tmp_path):
    (tmp_path / "settings.yaml").write_text("completion_models: {a: {model: x}}\nembedding_models: {}\n")
    assert load_settings(tmp_path).llm.provider == "offline"


def test_other_graphrag_blocks_are_still_unknown_keys(tmp_path):
    # Only the two model blocks init writes are GraphRAG's; any other top-level key is a typo.
    (tmp_path / "settings.yaml").write_text("completion_models: {}\nvector_store: {db_uri: output/lancedb}\n")
    with pytest.raises(SettingsError, match="vector_store"):
        load_settings(tmp_path)


def test_secrets_never_reach_the_public_settings_or_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHRAG_FLOW_LLM__API_KEY", "sk-VERY-SECRET")
    settings = load_settings(tmp_path)
    assert "sk-VERY-SECRET" not in repr(settings)
    assert "sk-VERY-SECRET" not in str(settings.public_dict())
    monkeypatch.setenv("GRAPHRAG_FLOW_LLM__MAX_CONCURRENCY", "sk-VERY-SECRET")
    with pytest.raises(SettingsError) as info:
        load_settings(tmp_path)
    assert "sk-VERY-SECRET" not in str(info.value)
    assert "llm.max_concurrency" in str(info.value)


def test_missing_root_says_so(tmp_path):
    with pytest.raises(SettingsError, match="does not exist"):
        load_settings(tmp_path / "nope")
