"""The indexing flow end to end through the CLI, on the offline default (no key, no network)."""

from __future__ import annotations

import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest

from conftest import make_project, run_cli
from graphrag_flow.tables import SCHEMAS, VECTOR_FIELDS
from graphrag_flow.storage.vectors import VectorTable


def _index(root, prefect_home, *extra):
    result = run_cli(["index", "--root", str(root), *extra], prefect_home)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


#: Four PEPs of peps-mini: offline embedding is most of an offline run's time (~100 s of CPU for
#: all twelve on 2 cores), and these give the graph every shape the checks below need.
SUBSET = ("pep-0020.rst", "pep-0257.rst", "pep-0602.rst", "pep-0634.rst")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, peps_mini):
    """The subset, copied once: projects indexing it see the same bytes and mtimes."""
    target = tmp_path_factory.mktemp("corpus") / "input"
    target.mkdir()
    for name in SUBSET:
        shutil.copy2(peps_mini / name, target / name)
    return target


@pytest.fixture(scope="module")
def mini_index(tmp_path_factory, corpus, unserved_prefect_home):
    """Indexed the way a user's first run is: no Prefect server configured, so the CLI starts one
    in the background for later runs (every other run here uses the session's server)."""
    root = make_project(tmp_path_factory.mktemp("mini") / "project", input_dir=corpus)
    result = _index(root, unserved_prefect_home)
    return root, result


def _tables(root):
    return {name: pq.read_table(root / "output" / f"{name}.parquet") for name in SCHEMAS}


def _vectors(root):
    out = {}
    for field in VECTOR_FIELDS:
        arrow = VectorTable(root / "output" / "lancedb", field).read().sort_by("id")
        out[field] = arrow
    return out


def test_every_table_has_graphrag_columns_types_and_rows(mini_index):
    root, _ = mini_index
    tables = _tables(root)
    for name, table in tables.items():
        assert table.schema.names == SCHEMAS[name].names, name
        for f in SCHEMAS[name]:
            assert table.schema.field(f.name).type == f.type, (name, f.name)
        assert table.num_rows > 0, name
        ids = table.column("id").to_pylist()
        assert len(ids) == len(set(ids)), f"{name}: duplicate ids"
        assert not any("'" in i for i in ids)
        assert table.column("human_readable_id").to_pylist() == (
            table.column("community").to_pylist() if name == "community_reports" else list(range(len(ids)))
        )
    assert tables["documents"].num_rows == len(SUBSET)
    assert tables["entities"].num_rows > 50 and tables["communities"].num_rows > 5


def test_every_vector_table_is_one_to_one_with_its_source_and_unit_length(mini_index):
    root, _ = mini_index
    tables = _tables(root)
    for field, arrow in _vectors(root).items():
        source_ids = set(tables[VECTOR_FIELDS[field]].column("id").to_pylist())
        ids = arrow.column("id").to_pylist()
        assert len(ids) == len(set(ids)) == len(source_ids) and set(ids) == source_ids, field
        vtype = arrow.schema.field("vector").type
        assert vtype.list_size == 384, "fixed_size_list<float32>[384]"
        vectors = np.asarray(arrow.column("vector").combine_chunks().flatten()).reshape(len(ids), 384)
        assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-3), field
        assert set(arrow.column("model").to_pylist()) == {"offline/all-MiniLM-L6-v2-static-v1"}


def test_graph_is_linked_and_every_linked_entity_has_one_level_0_community(mini_index):
    root, _ = mini_index
    t = {n: tab.to_pandas() for n, tab in _tables(root).items()}
    entity_titles = set(t["entities"]["title"])
    assert set(t["relationships"]["source"]) | set(t["relationships"]["target"]) <= entity_titles
    unit_ids = set(t["text_units"]["id"])
    assert all(set(u) <= unit_ids for u in t["entities"]["text_unit_ids"])
    level0 = t["communities"][t["communities"]["level"] == 0]
    in_level0 = [e for ids in level0["entity_ids"] for e in ids]
    assert len(in_level0) == len(set(in_level0)), "at most one level-0 community per entity"
    title_id = dict(zip(t["entities"]["title"], t["entities"]["id"]))
    linked = {title_id[x] for x in set(t["relationships"]["source"]) | set(t["relationships"]["target"])}
    assert linked <= set(in_level0), "every linked entity is in a level-0 community (local search sees it)"
    # Offline, unlinked entities are not clustered (stages/communities.py): each joins the
    # community it shares text with, so none is a community of its own.
    assert (level0["entity_ids"].map(len) > 1).all()
    assert set(t["community_reports"]["community"]) == set(t["communities"]["community"])
    assert t["community_reports"]["rank"].notna().all()
    assert t["community_reports"]["full_content"].str.startswith("# ").all()


def test_status_reports_verified(mini_index, tmp_path):
    root, _ = mini_index
    home = tmp_path / "no-prefect-yet"
    home.mkdir()
    result = run_cli(["status", "--root", str(root)], home)
    assert result.returncode == 0, result.stdout + result.stderr
    assert not list(home.iterdir()), "status started or set up Prefect"
    assert "verified" in result.stdout and "NOT verified" not in result.stdout
    for field in VECTOR_FIELDS:
        assert field in result.stdout


def test_a_second_run_reuses_the_first_runs_prefect_server_and_recomputes_nothing(mini_index, unserved_prefect_home):
    root, first = mini_index
    started = " ".join(first.stderr.split())
    assert "starting a Prefect server in the background, for this run and the next ones: UI at http://127.0.0.1:" \
        in started, started[-2000:]
    before = _vectors(root)
    result = _index(root, unserved_prefect_home)
    assert "Prefect server: http://127.0.0.1:" in result.stderr and "starting" not in result.stderr, result.stderr
    summary = result.stdout
    assert "recomputed" in summary
    after = _vectors(root)
    for field in VECTOR_FIELDS:
        assert before[field].equals(after[field]), field
    import re

    stage_table = summary.split("outputs", 1)[0]  # the stage table comes before the outputs table
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^│\s*([\w-]+)\s*│.*$", stage_table, re.M)}
    assert len(rows) == 9, stage_table
    for stage in ("chunk", "extract", "summarize", "communities", "reports", "embed-text_unit_text"):
        cells = [c.strip() for c in rows[stage].strip("│").split("│")]
        assert cells[3] == "0", f"{stage} recomputed {cells[3]} items on an unchanged second run"


def test_two_fresh_runs_give_identical_tables_and_vectors(tmp_path, corpus, mini_index, prefect_home):
    """A second project indexed from scratch on the same files gives the same tables and vectors."""
    root = make_project(tmp_path / "two", input_dir=corpus)
    _index(root, prefect_home)
    a, b = (_tables(r) for r in (mini_index[0], root))
    for name in SCHEMAS:
        assert a[name].equals(b[name]), name
    va, vb = (_vectors(r) for r in (mini_index[0], root))
    for field in VECTOR_FIELDS:
        assert va[field].num_rows > 0 and va[field].equals(vb[field]), field


def test_bad_files_are_skipped_with_one_warning_each_and_the_valid_one_indexed(tmp_path, prefect_home):
    root = make_project(
        tmp_path / "bad",
        files={
            "valid.txt": b"Ada Lovelace wrote the first program for the Analytical Engine of Charles Babbage.",
            "empty.txt": b"",
            "binary.bin.txt": bytes(range(256)) * 8,
            "latin1.txt": "Caf\u00e9 cr\u00e8me br\u00fbl\u00e9e at the Acad\u00e9mie Fran\u00e7aise.".encode("latin-1"),
        },
    )
    result = _index(root, prefect_home)
    out = result.stdout + result.stderr
    for name in ("empty.txt", "binary.bin.txt", "latin1.txt"):
        assert out.count(f"warning: {name}:") == 1, (name, out)
    docs = pq.read_table(root / "output" / "documents.parquet").to_pandas()
    assert docs["title"].tolist() == ["valid.txt"]


def test_an_empty_input_folder_fails_with_a_clear_message(tmp_path, prefect_home):
    root = make_project(tmp_path / "empty")
    result = run_cli(["index", "--root", str(root)], prefect_home)
    assert result.returncode != 0
    assert "no input files" in result.stderr


def test_a_missing_root_says_so(tmp_path, prefect_home):
    result = run_cli(["index", "--root", str(tmp_path / "nowhere")], prefect_home)
    assert result.returncode != 0
    assert "does not exist" in result.stderr
