"""`graphrag-flow status`: what each table and vector table holds, checked against its source."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from graphrag_flow.config import Settings
from graphrag_flow.outputs import check_vectors, read_manifest, read_table
from graphrag_flow.tables import TABLE_NAMES


@dataclass
class StatusRow:
    item: str
    progress: str
    verified: bool
    notes: str = ""


@dataclass
class ProjectStatus:
    rows: list[StatusRow] = field(default_factory=list)
    headline: str = ""

    @property
    def verified(self) -> bool:
        return bool(self.rows) and all(r.verified for r in self.rows)


def project_status(root: Path, settings: Settings) -> ProjectStatus:
    out_dir = Path(root) / "output"
    status = ProjectStatus()
    manifest = read_manifest(out_dir)
    if manifest is None:
        status.headline = "no completed run yet: run `graphrag-flow index --root " + str(root) + "`"
        _stage_rows(root, status)
        return status
    tables = {}
    for name in TABLE_NAMES:
        expected = manifest["tables"].get(name)
        try:
            tables[name] = read_table(out_dir, name)
        except (OSError, ValueError) as exc:
            status.rows.append(StatusRow(f"table {name}", f"?/{expected}", False, f"unreadable: {exc}"))
            continue
        rows = len(tables[name])
        status.rows.append(StatusRow(f"table {name}", f"{rows}/{expected}", rows == expected))
    if len(tables) == len(TABLE_NAMES):
        for check in check_vectors(tables, out_dir / "lancedb", manifest["embedding_model"], unit_length=True):
            notes = "" if check.ok else check.problem()
            status.rows.append(
                StatusRow(
                    f"vectors {check.field}",
                    f"{check.rows - len(check.stale)}/{check.source_rows}",
                    check.ok,
                    notes or f"dimension {check.dimension}",
                )
            )
    _stage_rows(root, status)
    state = "verified" if status.verified else "NOT verified"
    status.headline = f"last completed run {manifest.get('run_id') or '-'} finished {manifest['finished_at']}: {state}"
    return status


def _stage_rows(root: Path, status: ProjectStatus) -> None:
    """Checkpoints a resumed run will reuse (informational: they never fail verification)."""
    from graphrag_flow.llm.answer_cache import AnswerCache

    cache_file = Path(root) / "cache" / "llm_answers.sqlite"
    if cache_file.exists():
        cache = AnswerCache(cache_file)
        try:
            status.rows.append(StatusRow("answer cache", f"{len(cache)} answers", True, str(cache_file)))
        finally:
            cache.close()
