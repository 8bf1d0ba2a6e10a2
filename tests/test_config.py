"""Settings: YAML, env overrides, and errors that name the key."""

import re

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


# --------------------------------------------------------------------------- errors never quote settings text

SECRET = "sk-Q7x-Zr9-Wp4-Lm2-Yt6"  # dashes every few characters: no key name can hold 6 of them in a row


@pytest.mark.parametrize("text", [
    f'llm:\n  provider: openai\n  api_key: "{SECRET}\n  api_base: http://127.0.0.1:9/v1\n',  # unterminated quote
    f"llm:\n  api_key: {SECRET}\n   chat_model: x\n",                 # bad indentation after the key
    f"llm:\n  api_key: {SECRET}\tx: 1\n",                             # a tab where a token starts
    f'llm:\n  api_key: "{SECRET}\\q"\n',                              # an unknown escape inside the quotes
    f"llm: {{api_key: *{SECRET}}}\n",                                 # an alias named after the key
    f"llm: {{api_key: !{SECRET} x}}\n",                               # a tag named after the key
    f"graph: {{seed: !!int {SECRET}}}\n",                             # a constructor's ValueError
    f"llm:\n  api_key: {SECRET}\x07\n",                               # a control character
    f"llm:\n  {SECRET}: 1\n",                                         # a key made of the secret
])
def test_a_settings_error_names_the_place_and_never_quotes_the_text(tmp_path, text):
    (tmp_path / "settings.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(SettingsError) as info:
        load_settings(tmp_path)
    message = str(info.value)
    assert "settings.yaml" in message
    assert not any(SECRET[i:i + 6] in message for i in range(len(SECRET) - 5)), message


def test_a_yaml_error_says_line_column_and_what_is_wrong(tmp_path):
    (tmp_path / "settings.yaml").write_text(f'llm:\n  provider: openai\n  api_key: "{SECRET}\n', encoding="utf-8")
    with pytest.raises(SettingsError) as info:
        load_settings(tmp_path)
    assert str(info.value) == (
        f"{tmp_path / 'settings.yaml'} is not valid YAML: line 4, column 1: found unexpected end of stream "
        "(while scanning a quoted scalar at line 3, column 12)"
    )


def test_settings_yaml_that_is_not_utf8_names_the_file(tmp_path):
    (tmp_path / "settings.yaml").write_bytes(b"llm:\n  api_key: \xff\xfe\n")
    with pytest.raises(SettingsError, match=r"settings.yaml is not UTF-8 text \(byte 16\)"):
        load_settings(tmp_path)


@pytest.mark.parametrize("name,value,named", [
    ("GRAPHRAG_FLOW_LLM", '{"api_key": "%s", ' % SECRET, "GRAPHRAG_FLOW_LLM"),  # JSON-ish, cut short
    ("GRAPHRAG_FLOW_NEO4J", SECRET, "GRAPHRAG_FLOW_NEO4J"),
    ("GRAPHRAG_FLOW_LLM", '{"api_key": "%s", "max_retries": -1}' % SECRET, "llm.max_retries"),
    ("GRAPHRAG_FLOW_INPUT__PATTERNS", "[" + SECRET, "input.patterns"),
    ("GRAPHRAG_FLOW_GRAPH__SEED", SECRET, "graph.seed"),
    ("GRAPHRAG_FLOW_LLM__PROVIDER", SECRET, "llm.provider"),
    ("GRAPHRAG_FLOW_LLM__API_BASE", f"https://user:{SECRET}@", "llm.api_base"),
    ("GRAPHRAG_FLOW_LLM__API_KEY_SECRET", SECRET, "llm.api_key_secret"),
    ("GRAPHRAG_FLOW_NEO4J__URI", f"http://neo4j:{SECRET}@db:7474", "neo4j.uri"),
])
def test_an_env_value_that_does_not_parse_names_the_variable_or_key_never_the_value(tmp_path, monkeypatch,
                                                                                     name, value, named):
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as info:
        load_settings(tmp_path)
    assert named in str(info.value)
    assert SECRET not in str(info.value) and "Q7x-Zr9" not in str(info.value)


# --------------------------------------------------------------------------- bounds, checked when settings load


@pytest.mark.parametrize("yaml_text,key", [
    ("chunks: {size: 50}", "chunks.overlap"),  # the default overlap (100) is checked too
    ("graph: {max_cluster_size: 1000000000000000000000}", "graph.max_cluster_size"),  # graspologic: u32
    ("graph: {max_cluster_size: 1.0e+21}", "graph.max_cluster_size"),
    ("graph: {seed: -1}", "graph.seed"),
    ("llm: {temperature: -0.5}", "llm.temperature"),
    ("llm: {temperature: 2.5}", "llm.temperature"),
    ("llm: {temperature: .nan}", "llm.temperature"),
    ("input: {max_file_mb: -1}", "input.max_file_mb"),
    ("input: {max_file_mb: .inf}", "input.max_file_mb"),
    ("input: {patterns: []}", "input.patterns"),
    ("input: {patterns: ['/etc/*.txt']}", "input.patterns"),
    ("input: {patterns: ['../other/*.txt']}", "input.patterns"),
    ("input: {patterns: ['']}", "input.patterns"),
    ("input: {dir: ''}", "input.dir"),
    ("llm: {embedding_dimensions: -3}", "llm.embedding_dimensions"),
    ("llm: {embedding_dimensions: 0}", "llm.embedding_dimensions"),
    ("llm: {max_concurrency: 100000}", "llm.max_concurrency"),
    ("llm: {request_timeout_s: 1.0e+300}", "llm.request_timeout_s"),
    ("llm: {embedding_batch_size: 5000}", "llm.embedding_batch_size"),
    ("llm: {report_max_input_tokens: 10}", "llm.report_max_input_tokens"),
    ("llm: {chat_model: ''}", "llm.chat_model"),
    ("llm: {api_base: 'api.openai.com/v1'}", "llm.api_base"),
    ("neo4j: {uri: 'localhost:7687'}", "neo4j.uri"),
    ("neo4j: {batch_size: 0}", "neo4j.batch_size"),
])
def test_a_value_out_of_bounds_fails_when_settings_load_naming_the_key(tmp_path, yaml_text, key):
    (tmp_path / "settings.yaml").write_text(yaml_text + "\n", encoding="utf-8")
    with pytest.raises(SettingsError, match=re.escape(f"setting '{key}")):
        load_settings(tmp_path)


def test_a_plain_pattern_in_the_environment_is_a_one_element_list(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHRAG_FLOW_INPUT__PATTERNS", "**/*.txt")
    assert load_settings(tmp_path).input.patterns == ["**/*.txt"]
    monkeypatch.setenv("GRAPHRAG_FLOW_INPUT__PATTERNS", '["notes/*.md", "*.txt"]')
    assert load_settings(tmp_path).input.patterns == ["notes/*.md", "*.txt"]


def test_every_settings_template_value_loads(tmp_path):
    from graphrag_flow.init_project import init_project

    init_project(tmp_path)
    assert load_settings(tmp_path).chunks.overlap == 100


def test_long_text_with_the_static_model_is_an_error_saying_what_to_set(tmp_path):
    """`long_text` belongs to the transformer; set beside the static default it would do nothing."""
    (tmp_path / "settings.yaml").write_text("embed: {long_text: mean_windows}\n")
    with pytest.raises(SettingsError, match=r"embed.long_text: mean_windows applies to embed.offline_model: minilm"):
        load_settings(tmp_path)
    (tmp_path / "settings.yaml").write_text("embed: {long_text: mean_windows, offline_model: minilm}\n")
    embed = load_settings(tmp_path).embed
    assert (embed.offline_model, embed.long_text) == ("minilm", "mean_windows")
