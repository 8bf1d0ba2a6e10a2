"""Derive graphrag_3_3_0.json from GraphRAG 3.3.0 itself (not a test; run it by hand to refresh the file).

Run it with the Python of a virtual environment that has ``graphrag==3.3.0`` (never
graphrag-flow's own environment: graphrag is not a dependency of graphrag-flow)::

    python -m uv venv /tmp/gr && python -m uv pip install --python /tmp/gr/bin/python graphrag==3.3.0
    LITELLM_LOCAL_MODEL_COST_MAP=True /tmp/gr/bin/python tests/graphrag_schema/derive_schema.py \
        > tests/graphrag_schema/graphrag_3_3_0.json

How: it runs GraphRAG's own ``graphrag init`` and ``graphrag index`` (the standard method) on
a two-sentence document, with GraphRAG's built-in ``type: mock`` models (canned answers: one
graph extraction in GraphRAG's tuple format — a ring of 30 people, clustered with
max_cluster_size 3 so that communities have children; a community report as JSON from a second
model; one claim from a third, so that covariate ids exist; a constant
8-d embedding), so no network and no LLM is involved. It then reads the Arrow schema of every
parquet file and LanceDB table that GraphRAG's indexer wrote, and the column lists in
``graphrag.data_model.schemas`` (``*_FINAL_COLUMNS``), and checks that the two agree in
names and order. The JSON records, per table, GraphRAG's columns with the Arrow type its
indexer wrote; tests/test_graphrag_schema.py compares graphrag-flow's output against it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import lancedb
import pyarrow.parquet as pq
import yaml
from arrow_types import canonical_type  # beside this script: run as `python derive_schema.py`
from graphrag.data_model import schemas

TABLES = {
    "documents": schemas.DOCUMENTS_FINAL_COLUMNS,
    "text_units": schemas.TEXT_UNITS_FINAL_COLUMNS,
    "entities": schemas.ENTITIES_FINAL_COLUMNS,
    "relationships": schemas.RELATIONSHIPS_FINAL_COLUMNS,
    "communities": schemas.COMMUNITIES_FINAL_COLUMNS,
    "community_reports": schemas.COMMUNITY_REPORTS_FINAL_COLUMNS,
}
VECTOR_TABLES = ("text_unit_text", "entity_description", "community_full_content")
DIM = 8
NOTES = [
    "Types are canonical: string covers Arrow string and large_string (pandas 3 writes large_string); "
    "list element names are ignored; fixed_size_list sizes are the embedding dimension.",
    "raw_data is null: GraphRAG 3.3.0 writes an all-null column of Arrow type null for text input.",
    "Vector tables: 'columns' are what graphrag query reads (id, vector). GraphRAG's indexer also writes "
    "'indexer_extra_columns' (create_date/update_date set to the time of writing, and their exploded parts); "
    "the query engine reads create_date only with .get(), and graphrag-flow leaves them out because every "
    "value it writes must be a function of the inputs (architecture.md, Vector tables).",
]

# A ring lattice of 30 people (each linked to the next two), clustered with max_cluster_size 3:
# level-0 communities are larger than 3, Leiden splits them, so `children` holds real community
# numbers (not an all-empty column GraphRAG would write as list<null>).
_PEOPLE = [f"PERSON{i:02d}" for i in range(30)]
_ENTITIES = [f'("entity"<|>{n}<|>PERSON<|>{n.title()} works on the parser)' for n in _PEOPLE]
_EDGES = [(_PEOPLE[i], _PEOPLE[(i + k) % 30]) for i in range(30) for k in (1, 2)]
_RELATIONSHIPS = [f'("relationship"<|>{a}<|>{b}<|>{a.title()} and {b.title()} work together<|>5)' for a, b in _EDGES]
EXTRACTION = "##".join(_ENTITIES + _RELATIONSHIPS) + "<|COMPLETE|>"
# One claim, so that text_units.covariate_ids holds ids rather than only empty lists.
CLAIM = ("(PERSON00<|>PERSON01<|>REVIEW<|>TRUE<|>2024-01-01T00:00:00<|>2024-01-01T00:00:00<|>"
         "Alice reviews Bob's work<|>Alice reviews the parser.)<|COMPLETE|>")
REPORT = json.dumps(
    {
        "title": "The parser team",
        "summary": "Alice and Bob work on the parser.",
        "findings": [{"summary": "Alice maintains it", "explanation": "She is the maintainer."}],
        "rating": 5.0,
        "rating_explanation": "Moderate impact.",
    }
)


def main() -> None:
    env = dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True", GRAPHRAG_API_KEY="unused")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "proj"
        subprocess.run([sys.executable, "-m", "graphrag", "init", "--root", str(root),
                        "-m", "gpt-4.1-mini", "-e", "text-embedding-3-small"], check=True, env=env,
                       stdout=subprocess.DEVNULL)
        settings = yaml.safe_load((root / "settings.yaml").read_text())
        # Each workflow's model instance starts at the first canned answer: reports get their own model.
        completion = settings["completion_models"]["default_completion_model"]
        settings["completion_models"]["report_model"] = dict(completion, type="mock", mock_responses=[REPORT])
        completion.update(type="mock", mock_responses=[EXTRACTION])
        settings["community_reports"]["completion_model_id"] = "report_model"
        settings["completion_models"]["claim_model"] = dict(completion, type="mock", mock_responses=[CLAIM])
        settings["extract_claims"].update(enabled=True, completion_model_id="claim_model")
        settings["cluster_graph"]["max_cluster_size"] = 3
        settings["embedding_models"]["default_embedding_model"].update(
            type="mock", mock_responses=[0.5] * DIM
        )
        settings["vector_store"]["vector_size"] = DIM
        settings["extract_graph"]["max_gleanings"] = 0
        (root / "settings.yaml").write_text(yaml.safe_dump(settings))
        (root / "input" / "doc.txt").write_text("Thirty people work on the parser; each works with the next two.\n")
        run = subprocess.run([sys.executable, "-m", "graphrag", "index", "--root", str(root)], env=env,
                             capture_output=True, text=True)
        if run.returncode != 0:
            logs = "".join(p.read_text() for p in (root / "logs").glob("*.log")) if (root / "logs").is_dir() else ""
            raise SystemExit(f"graphrag index failed ({run.returncode}):\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}\n{logs[-5000:]}")
        out = root / "output"
        result: dict = {
            "graphrag_version": "3.3.0",
            "derived_by": "tests/graphrag_schema/derive_schema.py (see its docstring)",
            "tables": {},
            "vector_tables": {},
        }
        for name, columns in TABLES.items():
            schema = pq.read_schema(out / f"{name}.parquet")
            if schema.names != list(columns):
                raise SystemExit(f"{name}: parquet columns {schema.names} differ from schemas.py {columns}")
            result["tables"][name] = [[f.name, canonical_type(f.type)] for f in schema]
        levels = pq.read_table(out / "communities.parquet").column("level").to_pylist()
        if max(levels) < 1:
            raise SystemExit("the derivation graph gave one community level: children would be list<null>")
        db = lancedb.connect(str(out / "lancedb"))
        for name in VECTOR_TABLES:
            schema = db.open_table(name).schema
            written = [[f.name, canonical_type(f.type)] for f in schema]
            # What graphrag query reads: LanceDBVectorStore.similarity_search_by_vector takes
            # doc[id_field] and doc[vector_field] (IndexSchema defaults "id", "vector"); the
            # timestamps it reads with .get(), and no extra fields are configured for queries.
            query = [c for c in written if c[0] in ("id", "vector")]
            if [c[0] for c in query] != ["id", "vector"] or schema.field("vector").type.list_size != DIM:
                raise SystemExit(f"{name}: unexpected vector table schema {written}")
            result["vector_tables"][name] = {
                "columns": query,
                "indexer_extra_columns": [c for c in written if c not in query],
            }
        result["notes"] = NOTES
        sys.stdout.write(render(result))


def render(d: dict) -> str:
    """JSON with one column per line, so that a diff of the file shows the column that changed."""
    j = json.dumps
    lines = ["{", f' "graphrag_version": {j(d["graphrag_version"])},', f' "derived_by": {j(d["derived_by"])},',
             ' "notes": [', ",\n".join("  " + j(n) for n in d["notes"]), " ],", ' "tables": {']
    tables = [f"  {j(t)}: [\n" + ",\n".join("   " + j(c) for c in cols) + "\n  ]" for t, cols in d["tables"].items()]
    lines += [",\n".join(tables), " },", ' "vector_tables": {']
    vectors = [
        f"  {j(t)}: {{\n"
        f'   "columns": [{", ".join(j(c) for c in v["columns"])}],\n'
        f'   "indexer_extra_columns": [{", ".join(j(c) for c in v["indexer_extra_columns"])}]\n  }}'
        for t, v in d["vector_tables"].items()
    ]
    lines += [",\n".join(vectors), " }", "}"]
    text = "\n".join(lines) + "\n"
    assert json.loads(text) == d
    return text


if __name__ == "__main__":
    main()
