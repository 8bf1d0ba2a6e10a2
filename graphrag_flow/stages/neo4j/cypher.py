"""The sink's Cypher: constants only. Labels, relationship types and property names are written
out here, never taken from data; data reaches the server only as the parameters $rows / $ids.

Every write is `UNWIND $rows AS row MERGE ...` (or a batched `... WHERE n.id IN $ids DETACH
DELETE n`), so a re-run leaves the same graph; a `Statement` is one of them with its batches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: Table names accepted in `tables` and `deletes`.
TABLES = ("documents", "text_units", "entities", "relationships", "communities", "community_reports")


#: Uniqueness constraints on every id, created once (IF NOT EXISTS). Relationship uniqueness
#: constraints need Neo4j 5.7+; on an older server that one is skipped with a warning.
CONSTRAINTS: tuple[str, ...] = (
    "CREATE CONSTRAINT document_id IF NOT EXISTS FOR (n:Document) REQUIRE n.id IS UNIQUE",
    "CREATE CONSTRAINT chunk_id IF NOT EXISTS FOR (n:Chunk) REQUIRE n.id IS UNIQUE",
    "CREATE CONSTRAINT entity_id IF NOT EXISTS FOR (n:Entity) REQUIRE n.id IS UNIQUE",
    "CREATE CONSTRAINT community_id IF NOT EXISTS FOR (n:Community) REQUIRE n.id IS UNIQUE",
    "CREATE CONSTRAINT related_id IF NOT EXISTS FOR ()-[r:RELATED]-() REQUIRE r.id IS UNIQUE",
)
OPTIONAL_CONSTRAINTS = frozenset({CONSTRAINTS[-1]})

NODE_LABELS = ("Document", "Chunk", "Entity", "Community")
REL_TYPES = ("PART_OF", "RELATED", "MENTIONED_IN", "IN_COMMUNITY", "PARENT")

UPSERT: dict[str, str] = {
    "Document": "UNWIND $rows AS row MERGE (n:Document {id: row.id}) SET n.title = row.title",
    "Chunk": "UNWIND $rows AS row MERGE (n:Chunk {id: row.id}) SET n.text = row.text, n.n_tokens = row.n_tokens",
    "Entity": (
        "UNWIND $rows AS row MERGE (n:Entity {id: row.id}) "
        "SET n.title = row.title, n.type = row.type, n.description = row.description, n.degree = row.degree"
    ),
    "Community": (
        "UNWIND $rows AS row MERGE (n:Community {id: row.id}) "
        "SET n.level = row.level, n.title = row.title, n.summary = row.summary, n.rating = row.rating"
    ),
    "PART_OF": (
        "UNWIND $rows AS row MATCH (s:Chunk {id: row.source}) MATCH (t:Document {id: row.target}) "
        "MERGE (s)-[:PART_OF]->(t)"
    ),
    "RELATED": (
        "UNWIND $rows AS row MATCH (s:Entity {id: row.source}) MATCH (t:Entity {id: row.target}) "
        "MERGE (s)-[r:RELATED {id: row.id}]->(t) SET r.description = row.description, r.weight = row.weight"
    ),
    "MENTIONED_IN": (
        "UNWIND $rows AS row MATCH (s:Entity {id: row.source}) MATCH (t:Chunk {id: row.target}) "
        "MERGE (s)-[:MENTIONED_IN]->(t)"
    ),
    "IN_COMMUNITY": (
        "UNWIND $rows AS row MATCH (s:Entity {id: row.source}) MATCH (t:Community {id: row.target}) "
        "MERGE (s)-[:IN_COMMUNITY]->(t)"
    ),
    "PARENT": (
        "UNWIND $rows AS row MATCH (s:Community {id: row.source}) MATCH (t:Community {id: row.target}) "
        "MERGE (s)-[:PARENT]->(t)"
    ),
}

DELETE: dict[str, str] = {
    "RELATED": "MATCH ()-[r:RELATED]->() WHERE r.id IN $ids DELETE r",
    "Community": "MATCH (n:Community) WHERE n.id IN $ids DETACH DELETE n",
    "Entity": "MATCH (n:Entity) WHERE n.id IN $ids DETACH DELETE n",
    "Chunk": "MATCH (n:Chunk) WHERE n.id IN $ids DETACH DELETE n",
    "Document": "MATCH (n:Document) WHERE n.id IN $ids DETACH DELETE n",
}

#: deletes-table name -> the label/type whose ids it lists (in the order deletes run).
DELETE_TARGETS: dict[str, str] = {
    "relationships": "RELATED",
    "communities": "Community",
    "entities": "Entity",
    "text_units": "Chunk",
    "documents": "Document",
}

COUNT_QUERIES: dict[str, str] = {
    **{label: f"MATCH (n:{label}) RETURN count(n) AS count" for label in NODE_LABELS},
    **{rel: f"MATCH ()-[r:{rel}]->() RETURN count(r) AS count" for rel in REL_TYPES},
}


@dataclass(frozen=True)
class Statement:
    """One parameterized Cypher statement and the parameter batches it runs with.

    `target` is the label or relationship type; `op` is "upsert" or "delete"; each batch is sent
    as `{param: batch}` in its own managed write transaction.
    """

    target: str
    op: str
    cypher: str
    param: str
    batches: tuple[tuple[Any, ...], ...]

    @property
    def name(self) -> str:
        return f"{self.op} {self.target}"

    @property
    def rows(self) -> int:
        return sum(len(b) for b in self.batches)


