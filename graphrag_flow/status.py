"""`graphrag-flow status`: what each table and vector table holds, checked against its source,
and, per stage and per vector field, how far the stage checkpoints and vector tables got."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from graphrag_flow.config import Settings
from graphrag_flow.hashing import sha256_text
from graphrag_flow.storage.outputs import LANCEDB_DIR, MANIFEST, check_vectors, read_manifest, read_table
from graphrag_flow.storage.atomic import read_json
from graphrag_flow.storage.paths import ProjectPaths
from graphrag_flow.storage.stages import DONE_FILE, StageRef, StageStore
from graphrag_flow.storage.store import Store, output_store
from graphrag_flow.storage.vectors import VectorTable
from graphrag_flow.tables import TABLE_NAMES, embedding_inputs


@dataclass
class StatusRow:
    item: str
    progress: str
    verified: bool
    notes: str = ""
    #: A row about the served output (it decides the verdict), not about a run's progress.
    served: bool = False


@dataclass
class ProjectStatus:
    rows: list[StatusRow] = field(default_factory=list)
    headline: str = ""

    @property
    def verified(self) -> bool:
        """The served output (the last completed run's) verifies; an unfinished run beside it,
        killed or still going, does not change what readers get, nor this verdict."""
        served = [r for r in self.rows if r.served]
        return bool(served) and all(r.verified for r in served)


def project_status(root: Path, settings: Settings) -> ProjectStatus:
    """Per table and vector table of the last completed run, served from `output/` (checked
    against its sources); then per stage: its checkpoint, or for an unfinished extraction how
    many text units have their answers in the answer cache (what a rerun will not ask for
    again); and, while a run is unfinished, per field how far its vector tables in
    `output.next` got."""
    paths = ProjectPaths(root)
    out_dir = paths.output
    status = ProjectStatus()
    unfinished = paths.staging.is_dir()
    store = output_store(settings)
    if store is not None:  # what readers of the store get: the generation its pointer names
        return _store_status(root, settings, store, status, paths.staging if unfinished else None)
    manifest = read_manifest(out_dir)
    if manifest is None:
        status.headline = "no completed run yet: run `graphrag-flow index --root " + str(root) + "`"
        _stage_rows(root, settings, status, staging=paths.staging if unfinished else None)
        return status
    tables = {}
    for name in TABLE_NAMES:
        expected = manifest["tables"].get(name)
        try:
            tables[name] = read_table(out_dir, name)
        except (OSError, ValueError) as exc:
            status.rows.append(StatusRow(f"table {name}", f"?/{expected}", False, f"unreadable: {exc}", served=True))
            continue
        rows = len(tables[name])
        status.rows.append(StatusRow(f"table {name}", f"{rows}/{expected}", rows == expected, served=True))
    if len(tables) == len(TABLE_NAMES):
        for check in check_vectors(tables, out_dir / LANCEDB_DIR, manifest["embedding_model"], unit_length=True):
            notes = "" if check.ok else check.problem()
            status.rows.append(
                StatusRow(
                    f"vectors {check.field}",
                    f"{check.rows - len(check.stale)}/{check.source_rows}",
                    check.ok,
                    notes or f"dimension {check.dimension}",
                    served=True,
                )
            )
    _stage_rows(root, settings, status, staging=paths.staging if unfinished else None)
    state = "verified" if status.verified else "NOT verified"
    status.headline = f"last completed run {manifest.get('run_id') or '-'} finished {manifest['finished_at']}: {state}"
    if unfinished:
        status.headline += (f"; a later run is unfinished (killed, or still going) in {paths.staging.name}/: "
                            "`graphrag-flow index` resumes it")
    return status


def _store_status(root: Path, settings: Settings, store: Store, status: ProjectStatus,
                  staging: Path | None) -> ProjectStatus:
    """Per table and vector table of the generation the store's pointer names, read from the store."""
    from graphrag_flow.storage.published import generation, read_pointer, read_store_tables

    pointer = read_pointer(store)
    if pointer is None:
        status.headline = f"no generation published in {store.shown} yet: run `graphrag-flow index --root {root}`"
        _stage_rows(root, settings, status, staging=staging)
        return status
    served = generation(store, pointer["generation"])
    manifest = json.loads(served.fs().cat_file(served.path(MANIFEST)))
    tables = read_store_tables(served)
    for name in TABLE_NAMES:
        rows, expected = len(tables[name]), manifest["tables"].get(name)
        status.rows.append(StatusRow(f"table {name}", f"{rows}/{expected}", rows == expected, served=True))
    for check in check_vectors(tables, served.uri(LANCEDB_DIR), manifest["embedding_model"], unit_length=True,
                               storage_options=served.lance_options()):
        status.rows.append(StatusRow(f"vectors {check.field}", f"{check.rows - len(check.stale)}/{check.source_rows}",
                                     check.ok, "" if check.ok else check.problem(), served=True))
    _stage_rows(root, settings, status, staging=staging)
    state = "verified" if status.verified else "NOT verified"
    status.headline = (f"{served.shown}, served by {store.shown}/_current.json: run {manifest.get('run_id') or '-'} "
                       f"finished {manifest['finished_at']}: {state}")
    return status


#: Stages in flow order, each with the frame that counts its items (None: its `items` statistic)
#: and the stage whose rows it takes as input (its total while it has no finished checkpoint).
_STAGES: tuple[tuple[str, str | None, str | None, str | None], ...] = (
    ("load", "documents", None, None),
    ("chunk", "text_units", "load", "documents"),
    ("extract", None, "chunk", "text_units"),
    ("summarize", None, None, None),  # entities and relationships, as the run summary counts them
    ("communities", "communities", None, None),
    ("reports", "community_reports", "communities", "communities"),
)
#: Where each vector field's source rows come from among the stage checkpoints.
_FIELD_SOURCES = {"text_unit_text": ("chunk", "text_units"), "entity_description": ("summarize", "entities"),
                  "community_full_content": ("reports", "community_reports")}


def _newest_checkpoints(root: Path) -> dict[str, StageRef]:
    """Each stage's most recently finished checkpoint under cache/stages/ (by its _done file)."""
    store = StageStore(ProjectPaths(root).stages)
    newest: dict[str, tuple[float, StageRef]] = {}
    if not store.root.is_dir():
        return {}
    for done in store.root.glob(f"*/*/{DONE_FILE}"):
        try:
            mtime = done.stat().st_mtime
            ref = StageRef.model_validate(read_json(done))
        except (OSError, ValueError):
            continue  # a checkpoint being written right now, or damaged: not finished
        if ref.stage not in newest or mtime > newest[ref.stage][0]:
            newest[ref.stage] = (mtime, ref)
    return {stage: ref for stage, (_t, ref) in newest.items()}


def _stage_rows(root: Path, settings: Settings, status: ProjectStatus, staging: Path | None) -> None:
    """Per stage: the newest finished checkpoint (done/total); per field: rows embedded so far.

    A killed run leaves some stages without a checkpoint and vector tables partly filled in its
    staging folder (`staging`, None when no run is unfinished): those rows show how far it got
    and are never verified.
    """
    checkpoints = _newest_checkpoints(root)
    for stage, frame, upstream, upstream_frame in _STAGES:
        ref = checkpoints.get(stage)
        if ref is not None:
            rows = ref.stats.get("items", 0) if frame is None else ref.rows.get(frame, sum(ref.rows.values()))
            note = "checkpoint finished"
            if stage == "summarize":
                note += f" ({ref.rows.get('entities', 0)} entities, {ref.rows.get('relationships', 0)} relationships)"
            status.rows.append(StatusRow(f"stage {stage}", f"{rows}/{rows}", True, note))
            continue
        up = checkpoints.get(upstream) if upstream else None
        if stage == "extract" and up is not None:
            done, total = _extraction_progress(Path(root), settings, up)
            status.rows.append(StatusRow(f"stage {stage}", f"{done}/{total}", False,
                                         "not finished: the answers of the units done are cached"))
            continue
        total = str(up.rows.get(upstream_frame, "?")) if up is not None else "?"
        status.rows.append(StatusRow(f"stage {stage}", f"0/{total}", False, "not finished (answers received so far are cached)"))
    if staging is not None:
        store = StageStore(ProjectPaths(root).stages)
        for field, (stage, frame) in _FIELD_SOURCES.items():
            status.rows.append(_field_row(staging / LANCEDB_DIR, store, field, checkpoints.get(stage), frame))
    _answer_cache_row(root, status)


def _field_row(lancedb_dir: Path, store: StageStore, field: str, source: StageRef | None, frame: str) -> StatusRow:
    """How far the unfinished run's vector table of `field` got (its staging folder's)."""
    item = f"vectors {field} (unfinished run)"
    try:
        state = VectorTable(lancedb_dir, field).state()
    except (OSError, ValueError, RuntimeError):  # being created by the run right now
        return StatusRow(item, "?/?", False, "being written")
    if source is None:
        return StatusRow(item, f"{state.rows}/?", False, "its source stage has not finished")
    inputs = embedding_inputs(field, store.load(source, frame))
    wanted = {(i, sha256_text(t)) for i, t in zip(inputs["id"], inputs["text"])}
    done = len(wanted & {(i, s) for i, s, _m in state.keys})
    return StatusRow(item, f"{done}/{len(wanted)}", False, "embedding not finished"
                     if done < len(wanted) else "embedded; outputs not written yet")


def _extraction_progress(root: Path, settings: Settings, chunks: StageRef) -> tuple[int, int]:
    """(text units whose extraction answers are all in the answer cache, text units).

    The same keys the extract stage looks up, so "done" is exactly what a rerun will not ask for.
    """
    from graphrag_flow.llm import AnswerCache

    paths = ProjectPaths(root)
    units = StageStore(paths.stages).load(chunks, "text_units")
    texts = units["text"].tolist()
    cache_file = paths.answer_cache
    if not cache_file.exists():
        return 0, len(texts)
    if settings.llm.provider == "offline":
        from graphrag_flow.stages.extract.offline import offline_answer_key

        keys = [[offline_answer_key(text)] for text in texts]
    else:
        from graphrag_flow.llm import chat_answer_key
        from graphrag_flow.stages.extract.llm import extraction_requests
        from graphrag_flow.prompts import load_prompt

        prompt = load_prompt("graph_extraction", settings.llm.prompts_dir, root)
        keys = [[chat_answer_key(settings.llm, "graph_extraction", messages)
                 for messages in extraction_requests(prompt, text, settings.chunks.size)] for text in texts]
    cache = AnswerCache(cache_file)
    try:
        found = cache.get_many(k for unit in keys for k in unit)
    finally:
        cache.close()
    return sum(1 for unit in keys if all(k in found for k in unit)), len(texts)


def _answer_cache_row(root: Path, status: ProjectStatus) -> None:
    from graphrag_flow.llm import AnswerCache

    cache_file = ProjectPaths(root).answer_cache
    if cache_file.exists():
        cache = AnswerCache(cache_file)
        try:
            status.rows.append(StatusRow("answer cache", f"{len(cache)} answers", True, str(cache_file)))
        finally:
            cache.close()
