"""Through the CLI, as a user meets them: links that lead out of the input folder, files no
pattern matches, and legal input that makes an empty graph (issue #19, items 3, 6 and 8).

Against the real fake server (its own process, every chat message logged) and the session's
Prefect server; the run summary is checked in the CLI's output and in the
project's summary artifact.
"""

from __future__ import annotations

import asyncio
import json
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pyarrow.parquet as pq

from conftest import make_project, run_cli
from graphrag_flow.storage.vectors import VectorTable
from graphrag_flow.tables import SCHEMAS, VECTOR_FIELDS

try:
    from tests.fake_openai import fetch_stats, start_fake_server_process, stop_fake_server_process
except ImportError:  # plain `pytest` puts tests/ itself on sys.path
    from fake_openai import fetch_stats, start_fake_server_process, stop_fake_server_process  # type: ignore[no-redef]

KEY = "sk-test-input-edges-5150"
#: In the files outside the input folder only. The fake server answers 500 to any request whose
#: text holds it, so a leak is also counted by the server itself (faults fail_input / fail_chat).
MARK = "SECRETMARK"
SECRET = f"{MARK} Grace Hopper kept the launch codes in Arlington."
ODD_NAME = "odd[/b]name.txt"  # a folder "odd[" holding "b]name.txt"
TEXT = {
    "a.txt": "Ada Lovelace wrote the first program for the Analytical Engine of Charles Babbage.",
    "sub/b.md": "Alan Turing described the Turing Machine at Cambridge.",
}


@contextmanager
def fake_server(**knobs) -> Iterator[str]:
    proc, url = start_fake_server_process(api_key=KEY, log_prompts=True, **knobs)
    try:
        yield url
    finally:
        stop_fake_server_process(proc)


def _llm(url: str) -> dict:
    return dict(provider="openai", api_base=url, api_key=KEY, max_concurrency=8, request_timeout_s=10, max_retries=1)


def _index(root: Path, prefect_home: Path):
    result = run_cli(["index", "--root", str(root)], prefect_home)
    output = " ".join((result.stdout + "\n" + result.stderr).split())  # rich wraps long lines
    return result.returncode, output


def _status_verified(root: Path, prefect_home: Path) -> None:
    result = run_cli(["status", "--root", str(root)], prefect_home)
    assert result.returncode == 0, result.stdout + result.stderr
    assert ": verified" in result.stdout


def _summary_artifact(prefect_api, root: Path) -> str:
    """The markdown of the project's summary artifact of the run that wrote `root`'s outputs."""
    from prefect.client.orchestration import get_client

    from flows.artifacts import artifact_key
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey, FlowRunFilter, FlowRunFilterId
    from prefect.settings import PREFECT_API_URL, temporary_settings

    run_id = json.loads((root / "output" / "_manifest.json").read_text())["run_id"]

    async def read():
        with temporary_settings(updates={PREFECT_API_URL: prefect_api[1]}):
            async with get_client() as client:
                return await client.read_artifacts(
                    artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[artifact_key(root, "summary")])),
                    flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])),
                )

    artifacts = asyncio.run(read())
    assert len(artifacts) == 1, artifacts
    return " ".join(artifacts[0].data.split())


def _string_cells(root: Path) -> str:
    """Every string of every output table, one text (to look for what must not be there)."""
    cells = []
    for name in SCHEMAS:
        for column in pq.read_table(root / "output" / f"{name}.parquet").to_pylist():
            cells += [json.dumps(v, ensure_ascii=False) for v in column.values()]
    return "\n".join(cells)


def _linked_project(base: Path, url: str, **input_settings) -> Path:
    """Two documents, links out of the input folder (absolute, relative, a folder), links inside
    it (a file, a folder, a loop), files no pattern matches and an empty file with an odd name."""
    outside = base / "outside"
    (outside / "dir").mkdir(parents=True)
    (outside / "secret.txt").write_text(SECRET)
    (outside / "dir" / "secret2.txt").write_text(SECRET + " In a folder.")
    root = make_project(base / "project", files={k: v.encode() for k, v in TEXT.items()},
                        input=input_settings, llm=_llm(url))
    inp = root / "input"
    (inp / "abs.txt").symlink_to(outside / "secret.txt")
    (inp / "rel.txt").symlink_to(Path("..") / ".." / "outside" / "secret.txt")
    (inp / "outdir").symlink_to(outside / "dir", target_is_directory=True)
    (inp / "inside-link.txt").symlink_to("a.txt")
    (inp / "alias").symlink_to("sub", target_is_directory=True)
    (inp / "loop").symlink_to(".", target_is_directory=True)
    for name in ("report.pptx", "scans/scan-1.pptx", "notes.xlsx"):
        (inp / name).parent.mkdir(exist_ok=True)
        (inp / name).write_bytes(b"%PDF-1.4 not text")
    (inp / ODD_NAME).parent.mkdir()
    (inp / ODD_NAME).write_bytes(b"")  # a warning naming it; rich would read the name as markup
    return root


def _chat_text(stats: dict) -> str:
    return "\n".join(m["content"] for e in stats["log"] if e["endpoint"] == "chat" for m in e.get("messages") or [])


def test_links_out_of_the_input_folder_reach_neither_the_api_nor_the_outputs(tmp_path, prefect_home, prefect_api):
    with fake_server(fail_inputs=[MARK], fail_chat_substrings=[MARK]) as url:
        root = _linked_project(tmp_path, url)
        code, output = _index(root, prefect_home)
        stats = fetch_stats(url)
    assert code == 0, output
    assert stats["requests"]["chat"] > 0 and stats["requests"]["embeddings"] > 0
    assert MARK not in _chat_text(stats)
    assert not {"fail_input", "fail_chat"} & set(stats["faults"]), stats["faults"]
    cells = _string_cells(root)
    assert MARK not in cells and "Ada Lovelace" in cells
    documents = pq.read_table(root / "output" / "documents.parquet").column("title").to_pylist()
    assert sorted(documents) == ["a.txt", "sub/b.md"]
    artifact = _summary_artifact(prefect_api, root)
    for shown in (output, artifact):
        for link in ("abs.txt", "rel.txt", "outdir/"):
            assert f"{link}: a link to" in shown and "outside input.dir" in shown, link
        assert "input.follow_links_outside: true" in shown
        assert "loop/: leads to input.dir itself, which is read already" in shown
        assert "alias/: leads to sub/, which is read already" in shown
        assert "inside-link.txt: the same file as a.txt" in shown
        assert "2 .pptx files not read (report.pptx, scans/scan-1.pptx): input.patterns matches " \
               "**/*.txt, **/*.md, **/*.rst" in shown
        assert "1 .xlsx file not read (notes.xlsx)" in shown
        assert f"{ODD_NAME}: empty file; skipped" in shown
    _status_verified(root, prefect_home)


def test_links_out_of_the_input_folder_are_read_with_the_explicit_setting(tmp_path, prefect_home):
    with fake_server() as url:
        root = _linked_project(tmp_path, url, follow_links_outside=True)
        (root / "input" / "loop").unlink()
        code, output = _index(root, prefect_home)
        stats = fetch_stats(url)
    assert code == 0, output
    texts = dict(zip(*(pq.read_table(root / "output" / "documents.parquet").column(c).to_pylist()
                       for c in ("title", "text"))))
    assert texts["abs.txt"] == SECRET and "outdir/secret2.txt" in texts
    assert "rel.txt: the same file as abs.txt" in output
    assert MARK in _chat_text(stats)  # what the test above checks for is seen when it is sent


def _assert_tables_written(root: Path, rows: dict[str, int]) -> None:
    for name, schema in SCHEMAS.items():
        table = pq.read_table(root / "output" / f"{name}.parquet")
        assert table.schema.names == schema.names, name
        assert [f.type for f in table.schema] == [f.type for f in schema], name
        if name in rows:
            assert table.num_rows == rows[name], name
    dims = set()
    for field in VECTOR_FIELDS:
        table = VectorTable(root / "output" / "lancedb", field)
        assert table.exists(), f"lancedb/{field} was not written"
        dims.add(table.state().dimension)
    assert len(dims) == 1 and None not in dims


def test_an_api_that_finds_nothing_gives_an_empty_verified_graph(tmp_path, prefect_home, prefect_api):
    with fake_server(extraction="empty") as url:
        root = make_project(tmp_path / "project", files={k: v.encode() for k, v in TEXT.items()}, llm=_llm(url))
        code, output = _index(root, prefect_home)
    assert code == 0, output
    _assert_tables_written(root, {"documents": 2, "entities": 0, "relationships": 0, "communities": 0,
                                  "community_reports": 0})
    for field in ("entity_description", "community_full_content"):
        assert VectorTable(root / "output" / "lancedb", field).state().rows == 0
    for shown in (output, _summary_artifact(prefect_api, root)):
        assert "no entities were found: the graph is empty" in shown
        assert "llm.chat_model" in shown and "graph_extraction prompt" in shown
    _status_verified(root, prefect_home)


def test_an_api_that_finds_no_relationships_gives_one_community_per_entity(tmp_path, prefect_home):
    with fake_server(extraction="entities_only") as url:
        root = make_project(tmp_path / "project", files={k: v.encode() for k, v in TEXT.items()}, llm=_llm(url))
        code, output = _index(root, prefect_home)
    assert code == 0, output
    entities = pq.read_table(root / "output" / "entities.parquet").num_rows
    assert entities > 3
    _assert_tables_written(root, {"relationships": 0, "communities": entities, "community_reports": entities})
    assert f"no relationships were found: each of the {entities} entities is a community of its own" in output
    _status_verified(root, prefect_home)


def test_offline_a_corpus_without_entities_gives_an_empty_verified_graph(tmp_path, prefect_home):
    root = make_project(tmp_path / "project", files={"ok.txt": b"ok."})
    code, output = _index(root, prefect_home)
    assert code == 0, output
    _assert_tables_written(root, {"documents": 1, "text_units": 1, "entities": 0, "community_reports": 0})
    assert "no entities were found: the graph is empty (1 document(s), 1 text unit(s) read" in output
    assert "the offline rules" in output
    _status_verified(root, prefect_home)
    # a second run on it reuses everything and stays verified
    code, output = _index(root, prefect_home)
    assert code == 0 and "no changes since the last completed run" in output, output
    _status_verified(root, prefect_home)
