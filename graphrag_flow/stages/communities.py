"""Graph statistics and hierarchical Leiden communities, stable under small changes.

Each connected component is clustered on its own, from sorted edges and with a seed derived
from the component's content, so a component's partition depends only on that component:
an incremental run that leaves a component untouched keeps its communities (and reports).
Community numbers are not Leiden's cluster ids but ranks of content-derived ids, so they
too are a function of the graph alone.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

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


def leiden_hierarchy(graph: nx.Graph, max_cluster_size: int, seed: int) -> dict[tuple, _Cluster]:
    """Clusters of every level for the whole graph, component by component.

    An isolated node is a level-0 community of its own: GraphRAG's local search ignores
    entities that belong to no community.
    """
    clusters: dict[tuple, _Cluster] = {}
    components = sorted((sorted(c) for c in nx.connected_components(graph)), key=lambda c: c[0])
    for comp_index, nodes in enumerate(components):
        if len(nodes) == 1 or graph.subgraph(nodes).number_of_edges() == 0:
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


def compute_communities(
    entities: pd.DataFrame,
    relationships: pd.DataFrame,
    max_cluster_size: int,
    seed: int,
) -> tuple[pd.DataFrame, dict[str, int]]:
    """The communities table (without period/human_readable_id) and each entity's degree."""
    graph = build_graph(entities, relationships)
    clusters = leiden_hierarchy(graph, max_cluster_size, seed)
    title_to_id = dict(zip(entities["title"], entities["id"]))
    title_units = dict(zip(entities["title"], entities["text_unit_ids"]))

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
                            seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The stage's two frames: the communities table, and (title, degree) of every entity."""
    communities, degree = compute_communities(entities, relationships, max_cluster_size, seed)
    degrees = pd.DataFrame({"title": list(degree), "degree": pd.Series(list(degree.values()), dtype="int64")})
    return communities, degrees


def community_periods(communities: pd.DataFrame, text_units: pd.DataFrame, documents: pd.DataFrame) -> list[str]:
    """A community's period: the newest creation date (YYYY-MM-DD) of its documents."""
    doc_date = dict(zip(documents["id"], documents["creation_date"].str.slice(0, 10)))
    unit_date = {u: doc_date[d] for u, d in zip(text_units["id"], text_units["document_id"])}
    return [max((unit_date[u] for u in units if u in unit_date), default="") for units in communities["text_unit_ids"]]
