"""The measuring stick of benchmarks/offline_quality.py: its judge applies the noise rules of
tests/gold/noise_rules.yaml as written, its figures count what they say on real parquet files,
and the gold files hold what their corpora say."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from quality_judge import (  # noqa: E402  (benchmarks/ is not a package)
    GOLD_DIR, RULES_FILE, concept_key, judge_title, load_gold, load_rules, measure, variant_key,
)

GOLD_FILES = sorted(p for p in GOLD_DIR.glob("*.yaml") if p.name != RULES_FILE.name)


@pytest.fixture(scope="module")
def rules():
    return load_rules()


@pytest.mark.parametrize(("title", "entity_type", "verdict"), [
    # clause fragments, as the issue quotes them
    ("REPRESENT FUNCTION", "CONCEPT", "led_by_plain_verb"),
    ("HIDE FUNCTIONAL IMPLEMENTATION", "CONCEPT", "led_by_plain_verb"),
    ("REPRESENTS FUNCTION", "CONCEPT", "led_by_plain_verb"),  # third-person forms count
    ("APPLIES DEFAULT", "CONCEPT", "led_by_plain_verb"),
    ("SAID ELIZABETH", "PERSON", "led_by_plain_verb"),
    ("MAXIMAL COMPATIBILITY", "CONCEPT", "led_by_vague_adjective"),
    ("POOR JANE", "PERSON", "led_by_vague_adjective"),
    ("FOUR VERSION", "CONCEPT", "led_by_vague_adjective"),
    ("PRIDE AND", "CONCEPT", "function_word_edge"),
    ("A FOOLISH CONSISTENCY", "CONCEPT", "function_word_edge"),
    ("THEM THROUGH COMMENT", "CONCEPT", "function_word_edge"),
    ("HOWEVER", "PERSON", "function_word_edge"),
    ("42", "CONCEPT", "fragment"),
    ("UTF-", "CONCEPT", "fragment"),
    ("PEP 8 (STYLE", "CONCEPT", "fragment"),
    ("JANE--FROM JANE", "PERSON", "fragment"),
    ("BUT\u2014GOOD LORD", "PERSON", "fragment"),
    ("BEYOND EXPRESSION", "CONCEPT", "function_word_edge"),
    ("DELIGHTFUL LIBRARY", "CONCEPT", "led_by_vague_adjective"),
    # PERSON entities that are not people (the examples), and ones that are
    ("DEEP LEARNING", "PERSON", "person_not_a_name"),
    ("NURSERY SURVIVAL", "PERSON", "person_not_a_name"),
    ("INSIDE LOOK", "PERSON", "person_not_a_name"),
    ("FIXED REFCOUNT", "PERSON", "person_not_a_name"),  # an ordinary word comes first
    ("MR.", "PERSON", "person_not_a_name"),
    ("JOHN 3 SMITH", "PERSON", "person_not_a_name"),
    ("ANNA MARIA LOUISA JOSEPHINE SMITH", "PERSON", "person_not_a_name"),
    ("DEEP LEARNING", "CONCEPT", None),  # a fine concept, only no person
    ("MARK SHANNON", "PERSON", None),  # "mark" is a word, and a given name
    ("BRETT CANNON", "PERSON", None),
    ("PHILIP HOUSE", "PERSON", None),
    ("MRS. LONG", "PERSON", None),
    ("MISS KING", "PERSON", None),  # an honorific, then a name that is also one
    ("LADY CATHERINE DE BOURGH", "PERSON", None),
    ("GUIDO VAN ROSSUM", "PERSON", None),
    ("STEVEN D'APRANO", "PERSON", None),
    ("ŁUKASZ LANGA", "PERSON", None),
    ("TRAVIS E. OLIPHANT", "PERSON", None),
    # terms that look like the rules but are not noise
    ("THE ZEN OF PYTHON", "DOCUMENT", None),  # a leading "the" names works and places
    ("ASSERT STATEMENT", "CONCEPT", None),  # the verb is quoted, not used
    ("AS PATTERN", "CONCEPT", None),
    ("YIELD FROM", "CODE", None),  # a short code literal is taken as written
    ("__INIT__", "FUNCTION", None),
    ("REPRESENT THE FUNCTION OBJECT", "CODE", "led_by_plain_verb"),  # a long one is prose
    ("STANDARD LIBRARY", "CONCEPT", None),
    ("GLOBAL INTERPRETER LOCK", "CONCEPT", None),
    ("PYCON US", "ORGANIZATION", None),
])
def test_judge_applies_the_rules(rules, title, entity_type, verdict):
    assert judge_title(title, entity_type, rules) == verdict


def test_benchmark_reads_outputs_only():
    """The measuring stick imports nothing of the indexer, so it measures any version alike."""
    import ast

    for script in ("quality_judge.py", "offline_quality.py"):
        tree = ast.parse((REPO / "benchmarks" / script).read_text(encoding="utf-8"))
        imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                    for alias in node.names}
        imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                     if isinstance(node, ast.ImportFrom) and node.module}
        assert not imported & {"graphrag_flow", "flows", "tasks", "tests"}, script


def test_variant_and_concept_keys():
    assert variant_key("TYPEALIAS") == variant_key("TYPE ALIAS")
    assert variant_key("BUILT-IN TYPES") == variant_key("BUILTIN TYPE")
    assert variant_key("CONTEXT_MANAGER") == variant_key("CONTEXT MANAGER")
    assert variant_key("__LEN__") != variant_key("LEN")  # a dunder method is not the builtin
    assert variant_key("__INFER_VARIANCE__") != variant_key("INFER VARIANCE")
    assert variant_key("GREG") != variant_key("GREGORY EWING")
    assert variant_key("OS.PATH") != variant_key("OSPATH")  # only spaces, hyphens and underscores go
    assert concept_key("STEVEN D’APRANO") == concept_key("steven d'aprano")
    assert concept_key("@OVERLOAD") == concept_key("OVERLOAD")
    assert concept_key("DOCSTRINGS") == concept_key("DOCSTRING")
    assert concept_key("DOCSTRING CONVENTIONS") != concept_key("DOCSTRING")
    assert concept_key("MR. BENNET") == concept_key("MR BENNET")


def _write_outputs(folder: Path, entities: list[tuple], communities: list[tuple[int, list[int]]]) -> Path:
    """entities.parquet (title, type and degree, default 1; ids e0, e1, ...) and
    communities.parquet (level and the indexes of its entities)."""
    folder.mkdir(parents=True)
    pd.DataFrame({
        "id": [f"e{i}" for i in range(len(entities))],
        "title": [e[0] for e in entities], "type": [e[1] for e in entities],
        "degree": [e[2] if len(e) > 2 else 1 for e in entities],
    }).to_parquet(folder / "entities.parquet")
    pd.DataFrame({
        "level": [level for level, _ in communities],
        "entity_ids": [[f"e{i}" for i in members] for _, members in communities],
    }).to_parquet(folder / "communities.parquet")
    return folder


def test_measure_counts_what_it_says_on_parquet_files(tmp_path, rules):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    gold_file = tmp_path / "gold.yaml"
    gold_file.write_text(yaml.safe_dump({
        "corpus": str(corpus), "noise_rules": str(RULES_FILE),
        "concepts": [
            {"title": "GLOBAL INTERPRETER LOCK", "variants": ["GIL"], "type": "CONCEPT", "in": "a.txt"},
            {"title": "DOCSTRING", "type": "CONCEPT", "in": "a.txt"},
            {"title": "GUIDO VAN ROSSUM", "type": "PERSON", "in": ["a.txt"]},
            {"title": "METACLASS", "type": "CONCEPT", "in": "a.txt"},
        ],
        "noise": ["MAXIMAL COMPATIBILITY", {"title": "DEEP LEARNING", "type": "PERSON"},
                  {"title": "TYPE ALIAS", "type": "PERSON"}],
    }))
    gold = load_gold(gold_file)
    entities = [
        ("GIL", "CONCEPT"), ("DOCSTRINGS", "CONCEPT"), ("GUIDO VAN ROSSUM", "ORGANIZATION"),
        ("MAXIMAL COMPATIBILITY", "CONCEPT", 0), ("DEEP LEARNING", "PERSON", 0), ("TYPE ALIAS", "CONCEPT"),
        ("TYPEALIAS", "CLASS"), ("BUILT-IN TYPE", "CONCEPT"), ("BUILTIN TYPES", "CONCEPT"),
        ("REPRESENT FUNCTION", "CONCEPT", 0), ("ENSURES KEY", "CONCEPT"),
    ]
    communities = [
        (0, [3]), (0, [4]), (0, [0, 1, 2, 5, 6]), (0, [10]),  # 3 and 4 unlinked; 10 alone but linked
        (1, [0, 1, 2, 5, 6, 7, 8]), (1, [9]), (1, [3, 4, 10]), (2, [7, 8]),
    ]
    output = _write_outputs(tmp_path / "output", entities, communities)

    figures = measure(output, gold, rules, sample_size=200, seed=7)

    assert figures["entities"] == 11
    assert figures["concepts_found"] == 3 and figures["concepts_found_share"] == 0.75
    assert figures["concepts_missing"] == ["METACLASS"]
    assert figures["concepts_found_with_other_type"] == ["GUIDO VAN ROSSUM (ORGANIZATION)"]
    assert figures["gold_noise_present"] == ["MAXIMAL COMPATIBILITY", "DEEP LEARNING (PERSON)"]
    assert figures["sample_size"] == 11  # fewer entities than the sample: all are judged
    assert figures["sample_noise"] == 4 and figures["noise_share"] == round(4 / 11, 3)
    assert figures["sample_noise_by_rule"] == {"led_by_plain_verb": 2, "led_by_vague_adjective": 1,
                                               "person_not_a_name": 1}
    assert figures["verb_led_titles"] == 2
    assert sorted(figures["verb_led_examples"]) == ["ENSURES KEY", "REPRESENT FUNCTION"]
    assert figures["variant_groups"] == 2
    assert figures["variant_group_examples"] == ["BUILT-IN TYPE / BUILTIN TYPES", "TYPE ALIAS / TYPEALIAS"]
    assert figures["communities"] == 8 and figures["communities_level0"] == 4
    assert figures["single_entity_communities"] == 4
    assert figures["single_unlinked_entity_communities"] == 3
    assert figures["single_unlinked_entity_share"] == round(3 / 8, 3)
    assert figures["single_unlinked_entity_share_level0"] == 0.5
    assert figures["biggest_community_level0"] == 5 and figures["biggest_community"] == 7
    assert figures["goals_met"] == {
        "noise_share_max": False, "single_unlinked_entity_share_max": False,
        "variant_groups_max": True, "verb_led_titles_max": False, "concepts_found_share_min": False,
    }


def test_noise_sample_is_seeded_and_sized(tmp_path, rules):
    entities = [(f"ENTITY {i:03d}", "CONCEPT") for i in range(300)] + [
        (f"REPRESENT THING {i:03d}", "CONCEPT") for i in range(100)]
    output = _write_outputs(tmp_path / "output", entities, [(0, [0])])
    first = measure(output, None, rules, sample_size=50, seed=3)
    again = measure(output, None, rules, sample_size=50, seed=3)
    other = measure(output, None, rules, sample_size=50, seed=4)
    assert first["sample_size"] == 50
    assert first["sample_noise_titles"] == again["sample_noise_titles"]
    assert first["sample_noise_titles"] != other["sample_noise_titles"]
    assert first["noise_share_all_entities"] == 0.25
    assert "concepts_found_share_min" not in first["goals_met"]  # no gold file, no concept goal


def test_measure_an_empty_graph(tmp_path, rules):
    """No entity at all (a corpus the rules find nothing in) is a result, not a crash."""
    output = _write_outputs(tmp_path / "output", [], [])
    figures = measure(output, load_gold(GOLD_DIR / "examples.yaml"), rules)
    assert figures["entities"] == 0 and figures["concepts_found_share"] == 0.0
    assert figures["noise_share"] == 0.0 and figures["single_unlinked_entity_share"] == 0.0
    assert figures["biggest_community"] == 0


@pytest.mark.parametrize(("entry", "named"), [
    ({"title": "NO", "in": "a.txt"}, "concepts.0.title"),  # unquoted, YAML reads a boolean
    ({"title": "GIL", "variant": ["GLOBAL INTERPRETER LOCK"], "in": "a.txt"}, "concepts.0.variant"),
    ({"title": "GIL"}, "concepts.0.in"),
])
def test_a_malformed_gold_file_names_the_entry(tmp_path, entry, named):
    gold_file = tmp_path / "gold.yaml"
    text = yaml.safe_dump({"corpus": ".", "noise_rules": str(RULES_FILE), "concepts": [entry], "noise": []})
    gold_file.write_text(text.replace("'NO'", "NO"))
    with pytest.raises(ValueError) as err:
        load_gold(gold_file)
    assert str(gold_file) in str(err.value) and named in str(err.value)


# --------------------------------------------------------------------------- the gold files


def _occurs(name: str, text: str) -> bool:
    """`name` in `text`, ignoring case, with any punctuation or space between its words
    ("PEP 20" in "PEP: 20") and an optional plural ending."""
    body = r"[\W_]*".join(re.escape(part) for part in re.split(r"[\s-]+", name) if part)
    return re.search(r"(?<!\w)" + body + r"(?:e?s)?(?!\w)", text, re.IGNORECASE) is not None


@pytest.mark.parametrize("gold_file", GOLD_FILES, ids=lambda p: p.stem)
def test_gold_file_is_grounded_in_its_corpus(gold_file):
    gold = load_gold(gold_file)
    texts = {p.name: p.read_text(encoding="utf-8") for p in gold.corpus.iterdir() if p.is_file()}
    assert texts, f"{gold_file.name}: corpus {gold.corpus} is empty"
    absent = [f"{c.title} in {doc}" for c in gold.concepts for doc in c.docs
              if doc not in texts or not any(_occurs(n, texts[doc]) for n in c.names)]
    assert not absent, f"{gold_file.name}: concepts not found in the documents named: {absent}"
    assert all(c.docs for c in gold.concepts), f"{gold_file.name}: every concept names its documents"
    everything = "\n".join(texts.values())
    invented = [n.title for n in gold.noise if not _occurs(n.title, everything)]
    assert not invented, f"{gold_file.name}: noise titles that the corpus does not hold: {invented}"
    keys = [concept_key(c.title) for c in gold.concepts]
    assert len(keys) == len(set(keys)), f"{gold_file.name}: a concept is listed twice"
    names = {concept_key(n) for c in gold.concepts for n in c.names}
    untyped_noise = [n.title for n in gold.noise if n.type is None and concept_key(n.title) in names]
    assert not untyped_noise, f"{gold_file.name}: titles both concept and noise: {untyped_noise}"


@pytest.mark.parametrize("gold_file", GOLD_FILES, ids=lambda p: p.stem)
def test_rules_do_not_call_a_gold_concept_noise(gold_file):
    gold = load_gold(gold_file)
    judged = [f"{name} ({c.type}): {verdict}" for c in gold.concepts for name in c.names
              if (verdict := judge_title(name, c.type or "CONCEPT", gold.rules))]
    assert not judged


def test_gold_files_are_large_and_spread():
    """About 60-120 concepts per corpus, from every document (most chapters of the novel)."""
    for name, least, coverage in (("peps-mini", 60, 1.0), ("pride-and-prejudice", 60, 0.6), ("examples", 15, 1.0)):
        gold = load_gold(GOLD_DIR / f"{name}.yaml")
        documents = {p.name for p in gold.corpus.iterdir() if p.is_file()}
        named = {doc for c in gold.concepts for doc in c.docs}
        assert least <= len(gold.concepts) <= 120, name
        assert len(named & documents) >= coverage * len(documents), (name, sorted(documents - named))
