"""Offline extraction: typed entities from rules, relationships from shared sentences."""

import time

from graphrag_flow.stages.extract.rules import ENTITY_TYPES, MAX_DESCRIPTION, MAX_ENTITIES_PER_SENTENCE, extract_offline
from graphrag_flow.llm.schemas import GraphExtraction

PEP_TEXT = """\
PEP: 9999
Title: Typed Examples
Author: Guido van Rossum <guido@python.org>, Ada Lovelace <ada@example.org>
BDFL-Delegate: Grace Hopper
Status: Draft
Type: Standards Track
Requires: 484
Python-Version: 3.14

Abstract
========

This PEP extends :pep:`484` with examples. Guido van Rossum suggested that the ``typing``
module should ship a static type checker. The Python Software Foundation funds the work.
Guido van Rossum later wrote that the ``typing`` module is stable.

Example::

    def Hidden Name(x): return ``secret``

Static type checkers such as mypy read :class:`typing.Protocol` and ``asyncio.gather()``.
See `the docs <https://docs.python.org/3/>`_ and PEP 8 for more.

Rejected Ideas
==============

The end.
"""


def _by_name(answer: GraphExtraction) -> dict:
    return {e.name: e for e in answer.entities}


def _rels(answer: GraphExtraction) -> dict:
    return {(r.source, r.target): r for r in answer.relationships}


def test_header_fields_make_the_pep_its_people_and_requirements():
    ents = _by_name(extract_offline(PEP_TEXT))
    assert ents["PEP 9999"].type == "PEP"
    assert "Typed Examples" in ents["PEP 9999"].description and "Standards Track" in ents["PEP 9999"].description
    assert ents["Guido van Rossum"].type == "PERSON"
    assert ents["Ada Lovelace"].type == "PERSON"
    assert ents["Grace Hopper"].type == "PERSON"
    assert ents["Ada Lovelace"].description == "Ada Lovelace is an author of PEP 9999."
    assert ents["PEP 484"].type == "PEP"
    assert ents["Python 3.14"].type == "SOFTWARE"
    rels = _rels(extract_offline(PEP_TEXT))
    assert ("Ada Lovelace", "PEP 9999") in rels
    assert ("Grace Hopper", "PEP 9999") in rels
    assert rels[("PEP 484", "PEP 9999")].description == "PEP 9999 requires PEP 484."


def test_body_entities_are_typed():
    ents = _by_name(extract_offline(PEP_TEXT))
    assert ents["typing"].type == "MODULE"
    assert ents["asyncio"].type == "MODULE"
    assert ents["asyncio.gather"].type == "FUNCTION"
    assert ents["typing.Protocol"].type == "CLASS"
    assert ents["Python Software Foundation"].type == "ORGANIZATION"
    assert ents["static type checker"].type == "CONCEPT"
    assert ents["mypy"].type == "SOFTWARE"
    assert ents["PEP 8"].type == "PEP"
    assert {e.type for e in ents.values()} <= set(ENTITY_TYPES)


def test_case_and_plural_variants_are_one_entity():
    ents = _by_name(extract_offline(PEP_TEXT))
    # "static type checker" and "Static type checkers" share one name
    assert [n for n in ents if n.upper() == "STATIC TYPE CHECKER"] == ["static type checker"]
    assert len({n.upper() for n in ents}) == len(ents)


def test_relationships_count_shared_sentences_and_quote_the_first():
    answer = extract_offline(PEP_TEXT)
    rels = _rels(answer)
    guido_typing = rels[("Guido van Rossum", "typing")]
    assert guido_typing.strength == 2.0
    assert guido_typing.description.startswith("Guido van Rossum suggested that the typing module")
    assert rels[("static type checker", "typing")].strength == 1.0
    # "This PEP" in the header's unit links the body to the PEP itself
    assert ("PEP 484", "PEP 9999") in rels
    assert all(r.source < r.target for r in answer.relationships)
    assert all(r.source != r.target for r in answer.relationships)


def test_markup_literal_blocks_and_headings_stay_out_of_names():
    answer = extract_offline(PEP_TEXT)
    names = set(_by_name(answer))
    assert "Hidden Name" not in names and "secret" not in names
    assert "Rejected Ideas" not in names
    assert not any(ch in n for n in names for ch in "`<>@*:[]")
    assert not any("http" in n or "guido@" in n for n in names)
    for item in [*answer.entities, *answer.relationships]:
        assert "``" not in item.description and ":pep:" not in item.description
        assert len(item.description) <= MAX_DESCRIPTION


def test_capitalised_prose_is_not_a_person():
    text = (
        "Blank Lines\n-----------\n\nSurround top-level functions with two blank lines.\n\n"
        "In Python the Garbage Collection runs often; garbage collection is cheap. "
        "Tim Peters wrote the Zen of Python on Monday March 3."
    )
    ents = _by_name(extract_offline(text))
    assert ents["Tim Peters"].type == "PERSON"
    for noise in ("Blank Lines", "Garbage Collection", "Monday March", "In Python"):
        assert noise not in ents or ents[noise].type != "PERSON"


def test_entities_per_sentence_are_capped_for_relationships():
    names = ["Alan Turing", "Grace Hopper", "Ada Lovelace", "Edsger Dijkstra", "Barbara Liskov",
             "Donald Knuth", "Niklaus Wirth", "John Backus", "Frances Allen", "Ken Thompson"]  # fmt: skip
    answer = extract_offline("We thank " + ", ".join(names) + ".")
    assert len(answer.entities) == len(names)
    k = MAX_ENTITIES_PER_SENTENCE
    assert len(answer.relationships) == k * (k - 1) // 2


def test_deterministic():
    first = extract_offline(PEP_TEXT)
    assert first == extract_offline(PEP_TEXT)
    assert first.model_dump_json() == extract_offline(PEP_TEXT).model_dump_json()


def test_empty_and_whitespace_give_empty_answers():
    for text in ("", "   \n\t \r\n ", "\n\n"):
        answer = extract_offline(text)
        assert answer.entities == [] and answer.relationships == []


def test_weird_input_does_not_crash_and_stays_fast():
    start = time.perf_counter()
    extract_offline("\x00\x01\x02 \ufffd\ufeff" * 1000)
    extract_offline(bytes(range(256)).decode("latin-1") * 40)
    long_line = extract_offline("Alan Turing met Grace Hopper and " * 5000)  # one 165k-char line
    assert {"Alan Turing", "Grace Hopper"} <= set(_by_name(long_line))
    extract_offline("`" * 5000 + ":pep:`" * 500 + "``" * 3000)
    extract_offline("A" * 100_000)
    extract_offline("PEP: 1\nAuthor: " + "x, " * 2000)
    assert time.perf_counter() - start < 5


def test_a_changed_rule_module_or_word_file_changes_the_offline_answer_key(tmp_path):
    """An answer cached by other rules is never served: the key hashes every rule module and word
    list (package data), so editing a word file re-extracts, and an untouched copy does not."""
    import shutil
    import types

    from graphrag_flow.hashing import package_files_sha256
    from graphrag_flow.stages.extract import rules
    from graphrag_flow.stages.extract.offline import offline_answer_key, offline_version

    copy = tmp_path / "rules"
    shutil.copytree(rules.__path__[0], copy, ignore=shutil.ignore_patterns("__pycache__"))
    package = types.SimpleNamespace(__path__=[str(copy)])
    assert package_files_sha256(package)[:16] == offline_version()
    stop_caps = copy / "words" / "stop_caps.txt"
    stop_caps.write_text(stop_caps.read_text(encoding="utf-8") + "Moreover\n", encoding="utf-8")
    changed = package_files_sha256(package)[:16]
    assert changed != offline_version()
    assert offline_answer_key("PEP 8", changed) != offline_answer_key("PEP 8")
    (copy / "mentions.py").write_text("# another rule set\n", encoding="utf-8")
    assert package_files_sha256(package)[:16] not in (changed, offline_version())


def test_the_word_lists_are_read_from_their_data_files():
    """words/*.txt are the lists the rules use: each file is non-empty and read whole."""
    from importlib.resources import files

    from graphrag_flow.stages.extract.rules import words

    data = files(words.__package__).joinpath("words")
    names = sorted(p.name.removesuffix(".txt") for p in data.iterdir() if p.name.endswith(".txt"))
    assert "stop_caps" in names and "acronym_expansions" in names
    for name in names:
        assert words.word_list(name), name
    assert words.ACRONYM_EXPANSIONS["global interpreter lock"] == "GIL"
    assert "API" not in words.ACRONYM_STOP and "PEP" in words.ACRONYM_STOP
    assert words.SOFTWARE["windows"] == "Windows"
