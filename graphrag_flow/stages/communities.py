"""Graph statistics and hierarchical Leiden communities, stable under small changes.

Each connected component is clustered on its own, from sorted edges and with a seed derived
from the component's content, so a component's partition depends only on that component:
an incremental run that leaves a component untouched keeps its communities (and reports).
Community numbers are not Leiden's cluster ids but ranks of content-derived ids, so they
too are a function of the graph alone.

`Clustering.sparse` (the offline rules' graph, docs/architecture.md "Communities of the
offline graph") clusters only the linked part of the graph and without its hubs, as
GraphRAG's NLP graph does (`remove_ego_nodes`): an entity in a large share of the text units
(PYTHON in most PEPs) would otherwise pull unrelated topics into one community. The hubs and
the unlinked entities are then given a home: the level-0 community they are most strongly
linked to, or, for an entity with no relationship, the one whose text units they share most
(GraphRAG's local search sees only entities in a community). An entity with neither stays in
entities.parquet without a community, and gets no report of its own. A graph with no
relationship at all is clustered the default way (each entity a community of its own), so
that local search still sees its entities.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import NamedTuple

import graspologic_native as gn
import networkx as nx
import pandas as pd

from graphrag_flow.hashing import sha256_parts

COMMUNITY_COLUMNS = [
    "id", "community", "level", "parent", "children", "title",
    "entity_ids", "relationship_ids", "text_unit_ids", "size",
]


def build_graph(entities: pd.DataFrame, relationships: pd.DataFrame) -> nx.Graph:
    """Undirected graph over entity titles; A->B and B->A add up into one edge."""
    graph = nx.Graph()
    graph.add_nodes_from(sorted(entities["title"]))
    for source, target, weight in zip(relationships["source"], relationships["target"], relationships["weight"]):
        if graph.has_edge(source, target):
            graph[source][target]["weight"] += float(weight)
        else:
            graph.add_edge(source, target, weight=float(weight))
    return graph


def degrees(graph: nx.Graph) -> dict[str, int]:
    return {node: int(deg) for node, deg in graph.degree()}


def _component_seed(base_seed: int, nodes: list[str]) -> int:
    return (int(sha256_parts(base_seed, *nodes)[:8], 16)) % (2**31 - 1)


@dataclass
class _Cluster:
    level: int
    members: set[str] = field(default_factory=set)
    parent_key: tuple | None = None


class Clustering(NamedTuple):
    """How the graph is clustered: every entity (GraphRAG's way, the default), or `sparse`:
    without hubs and unlinked entities, which then join the level-0 community they are
    closest to (the offline rules' graph)."""

    sparse: bool = False
    #: sparse: an entity in more than this share of the text units is a hub ...
    hub_unit_share: float = 0.2
    #: ... when there are at least this many text units (a handful of documents has no hub).
    hub_min_units: int = 20


def hubs(entities: pd.DataFrame, graph: nx.Graph, clustering: Clustering) -> set[str]:
    """Entities in more than `hub_unit_share` of the text units: GraphRAG's NLP graph removes
    its ego node (the highest degree) before clustering for the same reason."""
    units = {u for ids in entities["text_unit_ids"] for u in ids}
    if len(units) < clustering.hub_min_units:
        return set()
    limit = clustering.hub_unit_share * len(units)
    return {t for t, ids in zip(entities["title"], entities["text_unit_ids"]) if len(ids) > limit and graph.degree(t)}


def leiden_hierarchy(graph: nx.Graph, max_cluster_size: int, seed: int, sparse: bool = False) -> dict[tuple, _Cluster]:
    """Clusters of every level for the whole graph, component by component.

    An isolated node is a level-0 community of its own (GraphRAG's local search ignores
    entities that belong to no community), unless `sparse`, where it is left out.
    """
    clusters: dict[tuple, _Cluster] = {}
    components = sorted((sorted(c) for c in nx.connected_components(graph)), key=lambda c: c[0])
    for comp_index, nodes in enumerate(components):
        if len(nodes) == 1 or graph.subgraph(nodes).number_of_edges() == 0:
            if not sparse:
                for node in nodes:
                    clusters[("iso", node)] = _Cluster(level=0, members={node})
            continue
        sub = graph.subgraph(nodes)
        edges = sorted(
            (min(u, v), max(u, v), float(d["weight"])) for u, v, d in sub.edges(data=True)
        )
        result = gn.hierarchical_leiden(
            edges,
            max_cluster_size=max_cluster_size,
            seed=_component_seed(seed, nodes),
        )
        for item in result:
            key = (comp_index, item.cluster)
            cluster = clusters.get(key)
            if cluster is None:
                parent = (comp_index, item.parent_cluster) if item.parent_cluster is not None else None
                cluster = clusters[key] = _Cluster(level=item.level, parent_key=parent)
            cluster.members.add(item.node)
    for cluster in clusters.values():
        if cluster.parent_key not in clusters:
            cluster.parent_key = None
    return clusters


def _home(clusters: dict[tuple, _Cluster], graph: nx.Graph, left_out: list[str], title_units: dict) -> None:
    """Each left-out entity joins the level-0 cluster it is most strongly linked to, else the one
    sharing most of its text units, else none; ties go to the first cluster key in order."""
    level0 = sorted((k for k, c in clusters.items() if c.level == 0), key=repr)
    owner = {m: k for k in level0 for m in clusters[k].members}
    by_unit: dict[str, list[tuple]] = defaultdict(list)
    for k in level0:
        for u in sorted({u for m in clusters[k].members for u in title_units[m]}):
            by_unit[u].append(k)
    order = {k: i for i, k in enumerate(level0)}
    for node in left_out:
        score: dict[tuple, float] = defaultdict(float)
        for other, data in graph[node].items():
            if other in owner:
                score[owner[other]] += float(data["weight"])
        if not score:
            for u in title_units[node]:
                for k in by_unit.get(u, ()):
                    score[k] += 1.0
        if score:
            best = min(score, key=lambda k: (-score[k], order[k]))
            clusters[best].members.add(node)


def compute_communities(
    entities: pd.DataFrame,
    relationships: pd.DataFrame,
    max_cluster_size: int,
    seed: int,
    clustering: Clustering = Clustering(),
) -> tuple[pd.DataFrame, dict[str, int]]:
    """The communities table (without period/human_readable_id) and each entity's degree."""
    graph = build_graph(entities, relationships)
    title_units = dict(zip(entities["title"], entities["text_unit_ids"]))
    if clustering.sparse and graph.number_of_edges():
        hub_nodes = hubs(entities, graph, clustering)
        core = graph.subgraph([n for n in graph if n not in hub_nodes])
        clusters = leiden_hierarchy(core, max_cluster_size, seed, sparse=True)
        clustered = {m for c in clusters.values() for m in c.members}
        left_out = sorted(n for n in graph if n not in clustered and n not in hub_nodes) + sorted(hub_nodes)
        _home(clusters, graph, left_out, title_units)
    else:
        clusters = leiden_hierarchy(graph, max_cluster_size, seed)
    title_to_id = dict(zip(entities["title"], entities["id"]))

    # A community's id is a hash of its level and members: the same group gets the same id.
    ids = {}
    for key, c in clusters.items():
        member_ids = sorted(title_to_id[t] for t in c.members)
        ids[key] = sha256_parts("community", c.level, *member_ids)
    number = {cid: n for n, cid in enumerate(sorted(ids.values()))}

    rel_by_node: dict[str, list[int]] = defaultdict(list)
    rel_sources = relationships["source"].tolist()
    rel_targets = relationships["target"].tolist()
    rel_ids = relationships["id"].tolist()
    rel_units = relationships["text_unit_ids"].tolist()
    for i, (s, t) in enumerate(zip(rel_sources, rel_targets)):
        rel_by_node[s].append(i)
        rel_by_node[t].append(i)

    rows = []
    children: dict[int, list[int]] = defaultdict(list)
    for key, c in clusters.items():
        cid = ids[key]
        parent = number[ids[c.parent_key]] if c.parent_key is not None else -1
        if parent >= 0:
            children[parent].append(number[cid])
        inside = sorted(
            {i for node in c.members for i in rel_by_node[node] if rel_sources[i] in c.members and rel_targets[i] in c.members}
        )
        units = sorted({u for i in inside for u in rel_units[i]}) or sorted(
            {u for node in c.members for u in title_units[node]}
        )
        rows.append(
            {
                "id": cid,
                "community": number[cid],
                "level": c.level,
                "parent": parent,
                "title": f"Community {number[cid]}",
                "entity_ids": sorted(title_to_id[t] for t in c.members),
                "relationship_ids": sorted(rel_ids[i] for i in inside),
                "text_unit_ids": units,
                "size": len(c.members),
            }
        )
    for row in rows:
        row["children"] = sorted(children.get(row["community"], []))
    frame = pd.DataFrame(rows, columns=COMMUNITY_COLUMNS).sort_values("community", kind="stable")
    for col in ("community", "level", "parent", "size"):
        frame[col] = frame[col].astype("int64")
    return frame.reset_index(drop=True), degrees(graph)


def communities_and_degrees(entities: pd.DataFrame, relationships: pd.DataFrame, max_cluster_size: int,
                            seed: int, clustering: Clustering = Clustering()) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The stage's two frames: the communities table, and (title, degree) of every entity."""
    communities, degree = compute_communities(entities, relationships, max_cluster_size, seed, clustering)
    degrees = pd.DataFrame({"title": list(degree), "degree": pd.Series(list(degree.values()), dtype="int64")})
    return communities, degrees


def community_periods(communities: pd.DataFrame, text_units: pd.DataFrame, documents: pd.DataFrame) -> list[str]:
    """A community's period: the newest creation date (YYYY-MM-DD) of its documents."""
    doc_date = dict(zip(documents["id"], documents["creation_date"].str.slice(0, 10)))
    unit_date = {u: doc_date[d] for u, d in zip(text_units["id"], text_units["document_id"])}
    return [max((unit_date[u] for u in units if u in unit_date), default="") for units in communities["text_unit_ids"]]
