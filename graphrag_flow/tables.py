"""The output tables: GraphRAG 3.3.0's columns, names, types and order, then ours.

Kept in one place so that the writer, the verifier and the tests agree on one schema.
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa

_S = pa.string()
_I = pa.int64()
_F = pa.float64()
_LS = pa.list_(pa.string())
_LI = pa.list_(pa.int64())
_FINDINGS = pa.list_(pa.struct([("explanation", _S), ("summary", _S)]))

SCHEMAS: dict[str, pa.Schema] = {
    "documents": pa.schema(
        [("id", _S), ("human_readable_id", _I), ("title", _S), ("text", _S), ("text_unit_ids", _LS),
         ("creation_date", _S), ("raw_data", pa.null())]
    ),
    "text_units": pa.schema(
        [("id", _S), ("human_readable_id", _I), ("text", _S), ("n_tokens", _I), ("document_id", _S),
         ("entity_ids", _LS), ("relationship_ids", _LS), ("covariate_ids", _LS)]
    ),
    "entities": pa.schema(
        [("id", _S), ("human_readable_id", _I), ("title", _S), ("type", _S), ("description", _S),
         ("text_unit_ids", _LS), ("frequency", _I), ("degree", _I)]
    ),
    "relationships": pa.schema(
        [("id", _S), ("human_readable_id", _I), ("source", _S), ("target", _S), ("description", _S),
         ("weight", _F), ("combined_degree", _I), ("text_unit_ids", _LS)]
    ),
    "communities": pa.schema(
        [("id", _S), ("human_readable_id", _I), ("community", _I), ("level", _I), ("parent", _I),
         ("children", _LI), ("title", _S), ("entity_ids", _LS), ("relationship_ids", _LS),
         ("text_unit_ids", _LS), ("period", _S), ("size", _I)]
    ),
    "community_reports": pa.schema(
        [("id", _S), ("human_readable_id", _I), ("community", _I), ("level", _I), ("parent", _I),
         ("children", _LI), ("title", _S), ("summary", _S), ("full_content", _S), ("rank", _F),
         ("rating_explanation", _S), ("findings", _FINDINGS), ("full_content_json", _S), ("period", _S),
         ("size", _I)]
    ),
}
for _name, _schema in list(SCHEMAS.items()):
    SCHEMAS[_name] = _schema.append(pa.field("content_sha256", _S)).append(pa.field("model", _S))

TABLE_NAMES = list(SCHEMAS)

#: documents.raw_data: GraphRAG 3.3 writes nulls (of Arrow type null) for files of text, and the
#: record for CSV and JSON input. graphrag-flow writes nulls as GraphRAG does while no document
#: is a record with metadata, else a record's input.metadata_columns as a map of strings (one
#: type whatever the columns; null for a whole file).
RAW_DATA_MAP = pa.map_(_S, _S)


def table_schema(name: str, frame: pd.DataFrame) -> pa.Schema:
    """The schema a table is written with: SCHEMAS, but documents' raw_data a map when used."""
    schema = SCHEMAS[name]
    if name == "documents" and "raw_data" in frame and frame["raw_data"].notna().any():
        schema = schema.set(schema.get_field_index("raw_data"), pa.field("raw_data", RAW_DATA_MAP))
    return schema

#: vector table name -> (source table, how its embedded text is made)
VECTOR_FIELDS: dict[str, str] = {
    "text_unit_text": "text_units",
    "entity_description": "entities",
    "community_full_content": "community_reports",
}


#: The text each vector field embeds, from a frame (column-wise) or one row as a dict alike.
_EMBEDDED_TEXT = {
    "text_unit_text": lambda rows: rows["text"],
    "entity_description": lambda rows: rows["title"] + ":" + rows["description"],
    "community_full_content": lambda rows: rows["full_content"],
}


def _embedded_text(field: str):
    try:
        return _EMBEDDED_TEXT[field]
    except KeyError:
        raise KeyError(f"unknown vector field {field!r}") from None


def embedding_inputs(field: str, source: pd.DataFrame) -> pd.DataFrame:
    """(id, text) of the rows a vector field embeds, in id order."""
    if not len(source):  # an empty frame's columns may have any dtype (float64 from empty lists)
        return pd.DataFrame({"id": pd.Series([], dtype=object), "text": pd.Series([], dtype=object)})
    texts = _embedded_text(field)(source)
    return pd.DataFrame({"id": source["id"], "text": texts}).sort_values("id", kind="stable").reset_index(drop=True)


def embedding_text(field: str, record: dict) -> str:
    """The text `embedding_inputs` gives one row, from the row as a dict (a row streamed
    before its frame exists)."""
    return _embedded_text(field)(record)


def with_readable_ids(frame: pd.DataFrame) -> pd.DataFrame:
    """Order rows by id and number them from 0, as a fresh index of the same inputs would."""
    frame = frame.sort_values("id", kind="stable").reset_index(drop=True)
    frame.insert(1, "human_readable_id", pd.Series(range(len(frame)), dtype="int64"))
    return frame


def conform(name: str, frame: pd.DataFrame) -> pd.DataFrame:
    """Columns in the schema's order; fails naming the table and column when one is missing."""
    columns = SCHEMAS[name].names
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise KeyError(f"table {name} is missing column(s) {missing}")
    return frame[columns]
