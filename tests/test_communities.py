"""Leiden communities: deterministic, hierarchical, every entity in a level-0 community."""

import random

import pandas as pd

from graphrag_flow.stages.communities import compute_communities
from graphrag_flow.stages.extract import entity_id, relationship_id


def _graph(edges: list[tuple[str, str, float]], extra_nodes=()):
    titles = sorted({t for e in edges for t in e[:2]} | set(extra_nodes))
    entities = pd.DataFrame(
        {"id": [entity_id(t) for t in titles], "title": titles, "text_unit_ids": [[f"u-{t}"] for t in titles]}
    )
    relationships = pd.DataFrame(
        {
            "id": [relationship_id(s, t) for s, t, _ in edges],
            "source": [s for s, _, _ in edges],
            "target": [t for _, t, _ in edges],
            "weight": [w for _, _, w in edges],
            "text_unit_ids": [[f"r-{s}-{t}"] for s, t, _ in edges],
        }
    )
    return entities, relationships


def _clustered_edges(n_groups=6, size=8, seed=0):
    rng = random.Random(seed)
    edges = []
    for g in range(n_groups):
        nodes = [f"G{g}N{i}" for i in range(size)]
        for i, a in enumerate(nodes):
            for b in nodes[i + 1 :]:
                if rng.random() < 0.7:
                    edges.append((a, b, 1.0 + rng.random()))
        if g:
            edges.append((f"G{g}N0", f"G{g - 1}N1", 0.2))
    return edges


def test_leiden_is_deterministic_for_the_same_graph_in_any_input_order():
    edges = _clustered_edges()
    e1, r1 = _graph(edges)
    shuffled = edges[:]
    random.Random(7).shuffle(shuffled)
    e2, r2 = _graph(shuffled)
    c1, d1 = compute_communities(e1, r1, max_cluster_size=10, seed=42)
    c2, d2 = compute_communities(e2, r2.iloc[::-1].reset_index(drop=True), max_cluster_size=10, seed=42)
    assert c1.to_dict("records") == c2.to_dict("records")
    assert d1 == d2


def test_hierarchy_levels_parents_and_children_are_consistent():
    edges = _clustered_edges(n_groups=3, size=14)
    entities, relationships = _graph(edges)
    comms, _ = compute_communities(entities, relationships, max_cluster_size=10, seed=42)
    by_number = comms.set_index("community")
    assert comms["community"].tolist() == list(range(len(comms)))
    assert (comms[comms["level"] == 0]["parent"] == -1).all()
    assert comms["level"].max() >= 1, "14-node groups must be split below max_cluster_size 10"
    for row in comms.itertuples():
        if row.parent >= 0:
            parent = by_number.loc[row.parent]
            assert parent.level == row.level - 1
            assert row.community in parent.children
            assert set(row.entity_ids) <= set(parent.entity_ids)
    level0 = comms[comms["level"] == 0]
    members = [e for ids in level0["entity_ids"] for e in ids]
    assert sorted(members) == sorted(entities["id"]), "every entity in exactly one level-0 community"


def test_isolated_entities_get_a_community_of_their_own():
    entities, relationships = _graph([("A", "B", 1.0)], extra_nodes=["LONELY"])
    comms, degree = compute_communities(entities, relationships, max_cluster_size=10, seed=42)
    lonely = comms[comms["entity_ids"].apply(lambda ids: entity_id("LONELY") in ids)]
    assert len(lonely) == 1 and lonely["size"].iloc[0] == 1 and lonely["level"].iloc[0] == 0
    assert degree["LONELY"] == 0 and degree["A"] == 1


def test_untouched_components_keep_their_communities_when_another_changes():
    left = _clustered_edges(n_groups=2, size=12, seed=1)
    right = [(a.replace("G", "H"), b.replace("G", "H"), w) for a, b, w in _clustered_edges(n_groups=2, size=12, seed=2)]
    before, _ = compute_communities(*_graph(left + right), max_cluster_size=10, seed=42)
    changed_right = right[:-3]
    after, _ = compute_communities(*_graph(left + changed_right), max_cluster_size=10, seed=42)
    left_ids = {entity_id(t) for e in left for t in e[:2]}

    def left_communities(comms):
        return {c for c, ids in zip(comms["id"], comms["entity_ids"]) if set(ids) <= left_ids}

    assert left_communities(before) == left_communities(after)
