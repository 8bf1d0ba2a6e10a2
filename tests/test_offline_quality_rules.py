"""The offline rules of issue #25, on sentences written for these tests: clause fragments and
vague phrases are no entities, a unit's own one-word terms and names are, authors come from
headers and bylines, and variant titles merge into one entity."""

import pandas as pd

from graphrag_flow.llm import ExtractedEntity, ExtractedRelationship, GraphExtraction
from graphrag_flow.stages.communities import Clustering, compute_communities
from graphrag_flow.stages.extract import entity_id, merge_extractions, relationship_id
from graphrag_flow.stages.extract.rules import extract_offline
from graphrag_flow.stages.extract.variants import variant_keys


def _titles(text: str) -> dict[str, str]:
    return {e.name.upper(): e.type for e in extract_offline(text).entities}


def test_verb_led_and_vague_phrases_are_not_entities():
    titles = _titles(
        "A wrapper may represent function objects. Each call should ensure key expressions stay"
        " cheap, and the cache aims for maximal compatibility with the global interpreter lock."
        " The match statement reads well."
    )
    for noise in ("REPRESENT FUNCTION", "ENSURE KEY EXPRESSION", "MAXIMAL COMPATIBILITY"):
        assert noise not in titles
    assert "GLOBAL INTERPRETER LOCK" in titles or "GIL" in titles
    assert "MATCH STATEMENT" in titles, "a keyword before a construct's head is quoted, not a verb"
    assert "KEY EXPRESSION" in titles, "the phrase after the verb stays"


def test_a_units_own_one_word_terms_are_entities():
    titles = _titles(
        "Every module should have a docstring. The docstring of a script is its usage message."
        " Docstrings are read by tools, and a class docstring lists the methods. A metaclass is"
        " mentioned once. The time is short, the time is now, the time has come."
    )
    assert titles.get("DOCSTRING") == "CONCEPT"
    assert "METACLASS" not in titles, "one use is not enough"
    assert "TIME" not in titles, "an ordinary English word is no term"


def test_names_led_by_a_title_and_single_word_names():
    titles = _titles(
        "Mr. Bennet was among the earliest of those who waited on Mr. Bingley. Lady Lucas"
        " agreed. They rode from Meryton to Netherfield, and Elizabeth wrote to Darcy, then"
        " walked to Meryton again while Darcy stayed in London. The General Public License"
        " was not discussed."
    )
    assert titles.get("MR. BENNET") == "PERSON" and titles.get("MR. BINGLEY") == "PERSON"
    assert titles.get("LADY LUCAS") == "PERSON"
    assert titles.get("MERYTON") == "GEO", "twice after a preposition of place"
    assert titles.get("LONDON") == "GEO", "a place WordNet knows"
    assert titles.get("DARCY") == "PERSON"
    assert not any("GENERAL" in t for t in titles), "a title that is an English word needs a name after it"


def test_header_authors_with_obfuscated_emails_and_bylines():
    pep = "PEP: 703\nTitle: A Lock\nAuthor: Sam Gross <colesbury at gmail.com>\nStatus: Final\n\nBody text.\n"
    assert _titles(pep).get("SAM GROSS") == "PERSON"
    titled = "PEP 20 -- A Title\n=================\n\n:Author: Tim Peters <tim@example.org>\n:Status: Active\n\nText.\n"
    assert _titles(titled).get("TIM PETERS") == "PERSON", "a field block after the document's title"
    novel = "A NOVEL OF MANNERS\n\nBy Jane Austen\n\n\nChapter 1\n\nIt is a truth.\n"
    assert _titles(novel).get("JANE AUSTEN") == "PERSON"
    speech = "The Address\nAbraham Lincoln, November 19, 1863, at the cemetery.\n\nFour score.\n"
    assert _titles(speech).get("ABRAHAM LINCOLN") == "PERSON"


def test_variant_keys_group_spacing_hyphen_underscore_and_plural():
    titles = ["TYPE ALIAS", "TYPEALIAS", "TYPE ALIASES", "TYPE_ALIAS", "BUILT-IN TYPE", "BUILTIN TYPE",
              "__LEN__", "LEN", "STATUS", "CLASS", "CLASSES", "PROPERTY", "PROPERTIES"]
    keys = dict(zip(titles, variant_keys(titles)))
    assert len({keys[t] for t in ("TYPE ALIAS", "TYPEALIAS", "TYPE ALIASES", "TYPE_ALIAS")}) == 1
    assert keys["BUILT-IN TYPE"] == keys["BUILTIN TYPE"]
    assert keys["__LEN__"] != keys["LEN"], "a dunder name is not its builtin"
    assert keys["CLASS"] == keys["CLASSES"] and keys["PROPERTY"] == keys["PROPERTIES"]
    assert keys["STATUS"] == "STATUS", "no singular without its title"


def test_offline_merge_keeps_the_most_frequent_title_and_every_fact():
    def unit(name: str, other: str) -> GraphExtraction:
        return GraphExtraction(
            entities=[ExtractedEntity(name=name, type="CONCEPT", description=f"{name} here."),
                      ExtractedEntity(name=other, type="CONCEPT", description=f"{other} here.")],
            relationships=[ExtractedRelationship(source=name, target=other, description=f"{name}/{other}", strength=1.0)],
        )

    answers = [("u1", unit("type alias", "generic")), ("u2", unit("type aliases", "generic")),
               ("u3", unit("TypeAlias", "generic")), ("u4", unit("type alias", "scope"))]
    entities, relationships = merge_extractions(answers, variants=True)
    assert sorted(entities["title"]) == ["GENERIC", "SCOPE", "TYPE ALIAS"]
    row = entities.set_index("title").loc["TYPE ALIAS"]
    assert row["frequency"] == 4 and row["id"] == entity_id("TYPE ALIAS")
    assert len(row["descriptions"]) == 3
    rel = relationships.set_index(["source", "target"]).loc[("TYPE ALIAS", "GENERIC")]
    assert rel["weight"] == 3.0 and rel["id"] == relationship_id("TYPE ALIAS", "GENERIC")
    plain, _ = merge_extractions(answers)
    assert len(plain) == 5, "an LLM's titles are kept as they are"


def _graph(edges, lonely=(), units=None):
    titles = sorted({t for e in edges for t in e[:2]} | set(lonely))
    units = units or {}
    entities = pd.DataFrame({"id": [entity_id(t) for t in titles], "title": titles,
                             "text_unit_ids": [units.get(t, [f"u-{t}"]) for t in titles]})
    relationships = pd.DataFrame({
        "id": [relationship_id(s, t) for s, t, _ in edges], "source": [e[0] for e in edges],
        "target": [e[1] for e in edges], "weight": [e[2] for e in edges],
        "text_unit_ids": [[f"u-{s}"] for s, _, _ in edges],
    })
    return entities, relationships


def test_sparse_clustering_removes_the_hub_and_homes_hubs_and_unlinked_entities():
    group_a = [(f"A{i}", f"A{j}", 2.0) for i in range(5) for j in range(i + 1, 5)]
    group_b = [(f"B{i}", f"B{j}", 2.0) for i in range(5) for j in range(i + 1, 5)]
    hub = [("HUB", f"{g}{i}", 1.0) for g in "AB" for i in range(5)] + [("HUB", "A0", 5.0)]
    all_units = [f"u-{g}{i}" for g in "AB" for i in range(5)] + [f"x{i}" for i in range(20)]
    units = {"HUB": all_units, "LONELY": ["u-B3"], "NOWHERE": ["x-none"]}
    entities, relationships = _graph(group_a + group_b + hub, lonely=["LONELY", "NOWHERE"], units=units)

    dense, _ = compute_communities(entities, relationships, max_cluster_size=10, seed=42)
    sparse, degree = compute_communities(entities, relationships, 10, 42, Clustering(sparse=True))
    level0 = sparse[sparse["level"] == 0]
    members = {entity_id(t): t for t in entities["title"]}
    groups = [sorted(members[i] for i in ids) for ids in level0["entity_ids"]]
    assert len(groups) == 2, groups
    assert any("HUB" in g and "A0" in g for g in groups), "the hub joins the community it is most linked to"
    assert any("LONELY" in g and "B3" in g for g in groups), "an unlinked entity joins the one sharing its text"
    assert not any("NOWHERE" in g for g in groups), "no link and no shared text: no community"
    assert all(len(g) > 1 for g in groups)
    assert degree["HUB"] == 10, "the hub keeps its relationships"
    assert dense["entity_ids"].apply(lambda ids: entity_id("NOWHERE") in ids).any(), "the default keeps GraphRAG's rule"


def test_sparse_clustering_of_a_graph_without_relationships_keeps_one_community_per_entity():
    entities, relationships = _graph([], lonely=["A", "B"])
    comms, _ = compute_communities(entities, relationships, 10, 42, Clustering(sparse=True))
    assert sorted(comms["size"]) == [1, 1], "local search must still see them"
