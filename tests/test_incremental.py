"""Incremental nightly indexing on a copy of peps-mini against the fake OpenAI server.

What a user relies on: after documents are changed, added and deleted, a plain `index` gives
exactly the outputs a fresh full index of the new folder gives (ids, texts, vectors, reports),
at a small fraction of the requests; nothing of a deleted document is left in parquet or
LanceDB; an unchanged folder costs no request and the run says "no changes"; `--full` still
rebuilds everything. The run summary states the documents delta and, per stage, reused vs
recomputed.

One Prefect server is shared by the module's CLI runs (PREFECT_API_URL) and the fake server
runs in its own process; request counts come from its /stats.
"""

from __future__ import annotations

import json
import re
import shutil
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from conftest import CORPORA, assert_same_outputs as _assert_same_outputs, edit_corpus, make_project, run_cli
from fake_openai import fetch_stats, reset_remote
from graphrag_flow.summary import SUMMARY_COLUMNS
from graphrag_flow.stages.reports import report_id
from graphrag_flow.storage.vectors import VectorTable
from graphrag_flow.tables import SCHEMAS, VECTOR_FIELDS

CHANGED = "pep-0257.rst"  # its text is edited (one sentence)
ADDED = "pep-0004.rst"  # a short PEP from the full corpus, not in peps-mini
REMOVED = "pep-0602.rst"
PEPS = CORPORA / "peps-extra"
RUN_TIMEOUT_S = 400
#: The second run may cost at most this share of the first run's API requests. Why: of the 12
#: documents, the changed and the added one hold ~12 KB of ~470 KB of text (~2.5%), so
#: extraction, description summaries and embeddings redo a few percent of their requests;
#: reports are redone for every community whose material changed, and the change (and the
#: deletion) lands in peps-mini's one big connected component, whose communities are then
#: clustered anew: about a third of the reports. Measured: 71 of 423 requests (17%), 49 of them
#: reports. Redoing every report alone would be 148 requests (35%), redoing everything 100%.
MAX_SHARE_OF_FIRST_RUN = 0.25

#: The module fixture makes four CLI runs inside the first test's setup (~2 min alone; the
#: suite's 300 s default is too tight for that on a loaded 2-core machine).
pytestmark = pytest.mark.timeout(900)


# --------------------------------------------------------------------------- processes


@dataclass
class Run:
    stdout: str
    requests: dict[str, int]  # per endpoint: chat, embeddings, models
    schemas: dict[str, int]  # chat requests per schema
    embedding_inputs: int
    seconds: float

    @property
    def work_requests(self) -> int:
        """Requests that do indexing work (the preflight's one /models request aside)."""
        return self.requests.get("chat", 0) + self.requests.get("embeddings", 0)


def _index(root: Path, prefect_api, base_url: str, *extra: str) -> Run:
    home, api = prefect_api
    reset_remote(base_url)
    start = time.monotonic()
    result = run_cli(["index", "--root", str(root), *extra], home, timeout=RUN_TIMEOUT_S, PREFECT_API_URL=api)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    stats = fetch_stats(base_url, with_log=False)
    return Run(result.stdout, stats["requests"], stats["chat_schemas"], stats["embedding_inputs"],
               time.monotonic() - start)


def _copy_corpus(source: Path, target: Path) -> Path:
    """copy2 keeps each file's mtime, which is the document's creation_date."""
    shutil.copytree(source, target, copy_function=shutil.copy2)
    target.chmod(0o755)
    for path in target.iterdir():
        path.chmod(0o644)
    return target


def _project(base: Path, name: str, input_dir: Path, base_url: str) -> Path:
    llm = {"provider": "openai", "api_base": base_url, "api_key": "test-key", "max_concurrency": 8}
    return make_project(base / name, input_dir=input_dir, llm=llm)


# --------------------------------------------------------------------------- outputs


def _outputs(root: Path) -> dict:
    """Every parquet table and every LanceDB table, sorted by id (pandas frames / arrow tables)."""
    out = {}
    for name in SCHEMAS:
        out[name] = pq.read_table(root / "output" / f"{name}.parquet").sort_by("id")
    for field in VECTOR_FIELDS:
        out[f"lancedb/{field}"] = VectorTable(root / "output" / "lancedb", field).read().sort_by("id")
    return out


def _ids(table) -> set[str]:
    return set(table.column("id").to_pylist())


def _stage_rows(stdout: str) -> dict[str, list[str]]:
    """The CLI's stage table: stage -> cells (items, reused, recomputed, requests, ...)."""
    rows = {}
    for match in re.finditer(r"^│\s*([\w-]+)\s*│(.*)│\s*$", stdout, re.M):
        cells = [c.strip() for c in match.group(2).split("│")]
        if len(cells) == len(SUMMARY_COLUMNS) - 1 and match.group(1) not in rows:
            rows[match.group(1)] = cells
    return rows


# --------------------------------------------------------------------------- the runs


@dataclass
class Incremental:
    project: Path
    first: Run
    second: Run
    full: Run  # `index --full` of a copy of the project after the change: the reference
    before: dict  # outputs after the first run
    after: dict  # outputs after the incremental run
    fresh: dict  # outputs of the --full run: a fresh full index of the new folder


@pytest.fixture(scope="module")
def incremental(tmp_path_factory, peps_mini, fake, prefect_api) -> Incremental:
    assert (PEPS / ADDED).is_file(), f"corpus file {PEPS / ADDED} is missing from the checkout"
    assert not (peps_mini / ADDED).exists() and (peps_mini / CHANGED).exists() and (peps_mini / REMOVED).exists()
    base = tmp_path_factory.mktemp("incremental")
    input_dir = _copy_corpus(peps_mini, base / "input")
    project = _project(base, "project", input_dir, fake)
    first = _index(project, prefect_api, fake)
    before = _outputs(project)

    edit_corpus(input_dir, CHANGED, REMOVED, PEPS / ADDED)

    second = _index(project, prefect_api, fake)
    after = _outputs(project)
    # The reference: `--full` on a copy of the project (caches, stage outputs and old outputs
    # included) ignores all of them, so it is a fresh full index of the new folder; one run
    # checks both that and that --full still rebuilds everything.
    reference = base / "reference"
    shutil.copytree(project, reference)
    full = _index(reference, prefect_api, fake, "--full")
    return Incremental(project, first, second, full, before, after, _outputs(reference))


def test_incremental_run_equals_a_fresh_full_index_of_the_new_folder(incremental):
    _assert_same_outputs(incremental.after, incremental.fresh, "incremental vs fresh full index")
    titles = set(incremental.after["documents"].column("title").to_pylist())
    assert ADDED in titles and CHANGED in titles and REMOVED not in titles


def test_a_finished_run_keeps_only_its_own_stage_checkpoints(incremental):
    """Nightly runs on changing input must not pile up a stage directory per stage per night."""
    stages = incremental.project / "cache" / "stages"
    kept = {stage.name: sorted(p.name for p in stage.iterdir()) for stage in stages.iterdir()}
    assert set(kept) >= {"load", "chunk", "extract", "summarize", "communities", "reports"}, kept
    assert all(len(keys) == 1 for keys in kept.values()), kept


def test_incremental_run_costs_a_small_fraction_of_the_first_runs_requests(incremental):
    first, second = incremental.first, incremental.second
    share = second.work_requests / first.work_requests
    print(
        f"\nincremental run: {second.work_requests} requests ({second.schemas}, {second.embedding_inputs} texts embedded)"
        f" vs first run {first.work_requests} ({first.schemas}, {first.embedding_inputs} texts embedded):"
        f" {share:.1%}, bound {MAX_SHARE_OF_FIRST_RUN:.0%}; seconds {second.seconds:.0f} vs {first.seconds:.0f}\n"
        + re.search(r"communities changed: .*", second.stdout).group(0)
    )
    assert share <= MAX_SHARE_OF_FIRST_RUN
    # extraction: only text units whose text is new (the answer cache serves every other one)
    old_texts = set(incremental.before["text_units"].column("text").to_pylist())
    new_texts = set(incremental.after["text_units"].column("text").to_pylist()) - old_texts
    assert 0 < second.schemas.get("graph_extraction", 0) <= len(new_texts) + 2  # + a repaired answer or two
    # reports: only those written from new material (the answer cache serves the others); the
    # run says how many it regenerated
    def material(outputs):
        return outputs["community_reports"].column("content_sha256").to_pylist()

    old_material = set(material(incremental.before))
    new_material = [m for m in material(incremental.after) if m not in old_material]
    regenerated = int(re.search(r"reports regenerated (\d+), reused (\d+)", second.stdout).group(1))
    assert regenerated == len(new_material) < incremental.after["community_reports"].num_rows
    assert len(set(new_material)) <= second.schemas.get("community_report", 0) <= regenerated
    # embeddings: only new or changed rows
    old_rows = sum(incremental.before[f"lancedb/{f}"].num_rows for f in VECTOR_FIELDS)
    assert second.embedding_inputs < 0.2 * old_rows


def test_the_summary_states_documents_added_changed_removed_unchanged_and_reuse_per_stage(incremental, prefect_api):
    out = incremental.second.stdout
    assert "documents: 1 added, 1 changed, 1 removed, 10 unchanged" in out, out[-3000:]
    assert f"added: {ADDED}" in out and f"changed: {CHANGED}" in out and f"removed: {REMOVED}" in out
    assert re.search(r"communities changed: \d+ of \d+ new or changed, \d+ removed, \d+ unchanged", out)
    rows = _stage_rows(out)
    n_docs = incremental.after["documents"].num_rows
    assert rows["load"][:3] == [str(n_docs), "10", "2"]  # items, reused (unchanged), recomputed (added + changed)
    for stage in ("chunk", "summarize", "communities", "reports"):
        items, reused, recomputed = (int(c) for c in rows[stage][:3])
        assert reused + recomputed == items and 0 < recomputed < items / 2, (stage, rows[stage])
    # text units of the 10 unchanged documents are kept as they are (same ids)
    unchanged_units = sum(
        len(u) for t, u in zip(incremental.after["documents"].column("title").to_pylist(),
                               incremental.after["documents"].column("text_unit_ids").to_pylist())
        if t not in (ADDED, CHANGED)
    )
    assert int(rows["chunk"][1]) == unchanged_units
    assert int(rows["extract"][5]) >= unchanged_units  # cache hits: unchanged text is not re-extracted

    # the Prefect artifact carries the same delta
    from flows.artifacts import artifact_key

    _home, api = prefect_api
    key = artifact_key(incremental.project, "summary")
    request = urllib.request.Request(
        api + "/artifacts/filter",
        data=json.dumps({"artifacts": {"key": {"any_": [key]}}, "limit": 50}).encode(),
        headers={"Content-Type": "application/json"}, method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as resp:
        markdowns = [a["data"] for a in json.loads(resp.read())]
    assert markdowns, f"no {key} artifact"
    delta_row = "| documents added | changed | removed | unchanged |\n|---|---|---|---|\n| 1 | 1 | 1 | 10 |"
    mine = [m for m in markdowns if delta_row in m]
    assert mine, "no summary artifact shows the incremental run's delta:\n" + markdowns[0]
    assert "## Changes since the last completed run" in mine[0] and "reports regenerated" in mine[0]


def test_deleting_a_document_leaves_nothing_of_it_in_parquet_or_lancedb(incremental):
    before, after = incremental.before, incremental.after
    docs = before["documents"].to_pandas()
    removed_id = docs.loc[docs["title"] == REMOVED, "id"].item()
    removed_units = set(before["text_units"].to_pandas().query("document_id == @removed_id")["id"])
    assert removed_units
    assert removed_id not in _ids(after["documents"])
    assert not removed_units & _ids(after["text_units"])
    assert not removed_units & _ids(after["lancedb/text_unit_text"])

    # entities and relationships only the removed document mentioned are gone, with their vectors
    only_removed = {
        eid for eid, units in zip(before["entities"].column("id").to_pylist(),
                                  before["entities"].column("text_unit_ids").to_pylist())
        if set(units) <= removed_units
    }
    rels_only_removed = {
        rid for rid, units in zip(before["relationships"].column("id").to_pylist(),
                                  before["relationships"].column("text_unit_ids").to_pylist())
        if set(units) <= removed_units
    }
    for table, only in (("entities", only_removed), ("relationships", rels_only_removed)):
        # some reappear because the added document mentions them too: then only through its units
        units_now = dict(zip(after[table].column("id").to_pylist(), after[table].column("text_unit_ids").to_pylist()))
        for item in only & set(units_now):
            assert units_now[item] and not set(units_now[item]) & removed_units, (table, item)
        gone = only - set(units_now)
        assert gone, f"the removed document should have {table} of its own"
        if table == "entities":
            assert not gone & _ids(after["lancedb/entity_description"])

    # no row anywhere still points at what is gone
    entity_ids, unit_ids = _ids(after["entities"]), _ids(after["text_units"])
    for units in after["entities"].column("text_unit_ids").to_pylist():
        assert set(units) <= unit_ids
    comms = after["communities"].to_pandas()
    for ents in comms["entity_ids"]:
        assert set(ents) <= entity_ids
    # reports: exactly one per current community; a report of a community that no longer exists is gone
    assert _ids(after["community_reports"]) == {report_id(c) for c in comms["id"]}
    gone = {report_id(c) for c in before["communities"].column("id").to_pylist()} - _ids(after["community_reports"])
    assert gone, "deleting a document should retire some community reports"
    assert not gone & _ids(after["lancedb/community_full_content"])
    # every vector table holds exactly its source table's ids
    for field, source in VECTOR_FIELDS.items():
        assert _ids(after[f"lancedb/{field}"]) == _ids(after[source]), field
        assert after[f"lancedb/{field}"].num_rows == after[source].num_rows, field


def test_an_unchanged_folder_makes_no_request_keeps_the_outputs_and_says_no_changes(incremental, fake, prefect_api):
    run = _index(incremental.project, prefect_api, fake)
    assert run.work_requests == 0, (run.requests, run.schemas)
    assert set(run.requests) <= {"models"}  # the preflight's one GET /models (same as `check`)
    assert "no changes since the last completed run (12 document(s) unchanged)" in run.stdout, run.stdout[-3000:]
    _assert_same_outputs(_outputs(incremental.project), incremental.after, "unchanged re-run")
    rows = _stage_rows(run.stdout)
    for stage, cells in rows.items():
        assert cells[2] == "0", f"{stage} recomputed {cells[2]} items on an unchanged folder"


def test_full_still_rebuilds_everything(incremental):
    """The reference run: every text unit extracted, every report written, every row embedded again."""
    run, fresh = incremental.full, incremental.fresh
    assert run.schemas.get("graph_extraction", 0) >= fresh["text_units"].num_rows
    distinct_material = set(fresh["community_reports"].column("content_sha256").to_pylist())
    assert run.schemas.get("community_report", 0) >= len(distinct_material)
    assert run.embedding_inputs == sum(fresh[f"lancedb/{f}"].num_rows for f in VECTOR_FIELDS)
    assert run.work_requests > 3 * incremental.second.work_requests
    assert "everything rebuilt (--full)" in run.stdout
    rows = _stage_rows(run.stdout)
    for stage, cells in rows.items():
        assert cells[1] == "0" and cells[5] == "0", f"--full reused {cells[1]} / hit the cache {cells[5]} in {stage}"


# --------------------------------------------------------------------------- the delta itself (no runs)


def _manifest(docs: dict[str, str], settings: str = "s1", code: str = "c1") -> dict:
    return {"settings_sha256": settings, "code_version": code,
            "documents": [{"id": h, "title": t, "content_sha256": h} for t, h in docs.items()]}


def test_the_delta_is_by_title_and_content_hash():
    from graphrag_flow.incremental import document_delta

    last = _manifest({"a.md": "1", "b.md": "2", "c.md": "3", "moved.md": "4"})
    delta = document_delta(last, [("a.md", "1"), ("b.md", "22"), ("d.md", "5"), ("renamed.md", "4")], "s1", "c1")
    assert (delta.added, delta.changed, delta.removed, delta.unchanged) == (
        ["d.md", "renamed.md"], ["b.md"], ["c.md", "moved.md"], ["a.md"])
    assert delta.counts() == {"added": 2, "changed": 1, "removed": 2, "unchanged": 1}
    assert delta.headline() == "documents: 2 added, 1 changed, 2 removed, 1 unchanged"
    assert not delta.no_changes


def test_no_changes_only_when_documents_settings_and_code_are_the_same():
    from graphrag_flow.incremental import document_delta

    last = _manifest({"a.md": "1", "b.md": "2"})
    same = document_delta(last, [("b.md", "2"), ("a.md", "1")], "s1", "c1")
    assert same.no_changes and same.headline().startswith("no changes since the last completed run")
    for settings, code in (("s2", "c1"), ("s1", "c2")):
        other = document_delta(last, [("a.md", "1"), ("b.md", "2")], settings, code)
        assert not other.no_changes and "settings or code changed" in other.headline()
    first = document_delta(None, [("a.md", "1")], "s1", "c1")
    assert first.first_run and not first.no_changes and first.headline() == "first run: 1 document(s) added"


def test_reports_count_as_reused_by_their_material_and_full_reuses_nothing():
    from graphrag_flow.incremental import carried_over, community_changes

    before = {"communities": {("c1", "x"), ("c2", "y")}, "community_reports": {("r1", "m1"), ("r2", "m2")},
              "text_units": {("u1", "t1"), ("u2", "t2")}, "entities": {("e1", "d1")}, "relationships": set()}
    # c2 got a new member (new id) but its trimmed material m2 is unchanged: its report costs nothing
    after = {"communities": {("c1", "x"), ("c3", "y2")}, "community_reports": {("r1", "m1"), ("r3", "m2")},
             "text_units": {("u1", "t1"), ("u3", "t3")}, "entities": {("e1", "d1"), ("e2", "d2")}, "relationships": set()}
    assert carried_over(before, after) == {"chunk": 1, "summarize": 1, "communities": 1, "reports": 2}
    assert community_changes(before, after) == {
        "total": 2, "changed": 1, "removed": 1, "unchanged": 1, "reports_regenerated": 0, "reports_reused": 2}
    rebuilt = community_changes(before, after, rebuilt=True)
    assert rebuilt["reports_regenerated"] == 2 and rebuilt["reports_reused"] == 0
    assert carried_over(None, after) == {}
