"""Settings validation, property-style (hypothesis): whatever a user writes, settings either
load or fail with a SettingsError that names a key (or the file or variable), and no error
message carries a secret.

- random values for every key, from settings.yaml and from the environment;
- random section-level environment values (JSON-ish text);
- random edits of a valid settings.yaml that holds secrets (a stray quote, colon, tab or
  bracket next to the key), i.e. random YAML documents a typo makes.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from unittest import mock

import yaml
from hypothesis import HealthCheck, given, settings, strategies as st

from graphrag_flow.config import Settings, load_settings
from graphrag_flow.errors import SettingsError

#: Recognisable secrets; dashes every few characters, so no setting name (letters, digits, _)
#: can hold 6 characters of one in a row.
API_KEY = "sk-Q7x-Zr9-Wp4-Lm2-Yt6"
PASSWORD = "pw-K3v-Hn8-Bc5-Rd1"
SECRETS = (API_KEY, PASSWORD)

KEYS = [(section, key) for section, info in Settings.model_fields.items()
        for key in info.annotation.model_fields]  # type: ignore[union-attr]
SECTIONS = list(Settings.model_fields)

PROFILE = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def leaks(message: str) -> bool:
    return any(s[i:i + 6] in message for s in SECRETS for i in range(len(s) - 5))


def load(yaml_text: str | None = None, env: dict[str, str] | None = None) -> Settings | SettingsError:
    """Load settings from a fresh folder; a SettingsError is returned, any other error raised."""
    with tempfile.TemporaryDirectory() as root, mock.patch.dict(os.environ, env or {}):
        for name in [n for n in os.environ if n.startswith("GRAPHRAG_FLOW_") and n not in (env or {})]:
            del os.environ[name]
        if yaml_text is not None:
            Path(root, "settings.yaml").write_text(yaml_text, encoding="utf-8", errors="surrogatepass")
        try:
            return load_settings(Path(root))
        except SettingsError as exc:
            return exc


def assert_names_a_key_and_no_secret(result: Settings | SettingsError, *names: str) -> None:
    if isinstance(result, Settings):
        return
    message = str(result)
    assert not leaks(message), message
    assert any(name in message for name in names), message


# Values of every JSON/YAML kind, strings often carrying a secret.
scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(), st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(SECRETS),
    st.builds(lambda a, s, b: a + s + b, st.text(max_size=5), st.sampled_from(SECRETS), st.text(max_size=5)),
    st.sampled_from(["", "1e21", "-1", "0", "nan", "true", "[]", "{}", "http://u:" + API_KEY + "@h/v1",
                     "bolt://neo4j:" + PASSWORD + "@db", "**/*.txt", "../x", "/abs"]),
)
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                        st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                      max_leaves=6)


@PROFILE
@given(st.lists(st.tuples(st.sampled_from(KEYS), values), min_size=1, max_size=4))
def test_random_values_per_key_in_settings_yaml(assignments):
    doc: dict = {"llm": {"api_key": API_KEY}, "neo4j": {"password": PASSWORD}}
    for (section, key), value in assignments:
        doc.setdefault(section, {})[key] = value
    text = yaml.safe_dump(doc, allow_unicode=True)
    result = load(text)
    names = [f"{section}.{key}" for (section, key), _ in assignments]
    assert_names_a_key_and_no_secret(result, *names)


def _env_text(value) -> str:
    return value if isinstance(value, str) else yaml.safe_dump(value, default_flow_style=True).strip()


@PROFILE
@given(st.lists(st.tuples(st.sampled_from(KEYS), values), min_size=1, max_size=4))
def test_random_values_per_key_in_the_environment(assignments):
    env = {"GRAPHRAG_FLOW_LLM__API_KEY": API_KEY, "GRAPHRAG_FLOW_NEO4J__PASSWORD": PASSWORD}
    for (section, key), value in assignments:
        env[f"GRAPHRAG_FLOW_{section.upper()}__{key.upper()}"] = _env_text(value).replace("\x00", "")
    result = load(env=env)
    names = [f"{section}.{key}" for (section, key), _ in assignments]
    assert_names_a_key_and_no_secret(result, *names)


json_ish = st.one_of(
    st.text(alphabet='{}[]":, 0123456789abcdefghijklmnopqrstuvwxyz_-.', max_size=40),
    st.builds(lambda head, tail: head + tail,
              st.sampled_from(['{"api_key": "%s"' % API_KEY, '{"password": "%s", ' % PASSWORD, '["%s"' % API_KEY]),
              st.text(alphabet='{}[]":, 01abc', max_size=10)),
    values.map(lambda v: yaml.safe_dump(v, default_flow_style=True).strip()),
)


@PROFILE
@given(st.sampled_from(SECTIONS), json_ish)
def test_random_section_values_in_the_environment(section, text):
    result = load(env={f"GRAPHRAG_FLOW_{section.upper()}": text.replace("\x00", "")})
    assert_names_a_key_and_no_secret(result, f"GRAPHRAG_FLOW_{section.upper()}", f"setting '{section}")


VALID = f"""\
input:
  dir: input
  patterns: ["**/*.txt", "**/*.md"]
chunks:
  size: 300
  overlap: 50
llm:
  provider: openai
  api_base: https://api.example.com/v1
  api_key: "{API_KEY}"
  chat_model: gpt-4.1-mini
  temperature: 0.2
neo4j:
  uri: bolt://localhost:7687
  password: {PASSWORD}
graph:
  max_cluster_size: 10
"""
TYPO = st.sampled_from(list("\"'{}[]:,-#&*!|>%@?`\t\n\\ ") + ["  ", ": ", "- ", "!!int ", "*a", "&a ", "---\n",
                                                               "\x07", "\u2028"])


@PROFILE
@given(st.lists(st.tuples(st.integers(0, len(VALID)), TYPO, st.booleans()), min_size=1, max_size=4))
def test_random_yaml_documents_a_typo_makes(edits):
    text = VALID
    for pos, typo, replace in sorted(edits, reverse=True):
        text = text[:pos] + typo + text[pos + (1 if replace else 0):]
    result = load(text)
    assert_names_a_key_and_no_secret(result, "settings.yaml", "setting '", "GRAPHRAG_FLOW_")


@PROFILE
@given(st.text(max_size=200))
def test_random_text_as_settings_yaml(text):
    result = load(text.replace("\x00", ""))
    assert_names_a_key_and_no_secret(result, "settings.yaml", "setting '")


def test_the_valid_document_loads():
    result = load(VALID)
    assert isinstance(result, Settings), result
    assert result.llm.api_key.get_secret_value() == API_KEY

