"""What changed since the last completed run, so a nightly run can say what it redid.

The work itself is already incremental by construction (ids are content-derived, LLM answers
are cached by their messages, vector tables embed only missing (id, content_sha256, model)
rows and delete stale ids, communities are clustered per connected component with a
content-derived seed). What a user cannot see without this module is *how much* changed:
which documents were added, changed, removed or left alone, and per stage how many rows were
carried over from the last completed run rather than made anew.

"The last completed run" is the one `output/_manifest.json` names: the manifest is written
last, after every table verified, and lists that run's documents (id, title, content_sha256).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import pyarrow.parquet as pq

from graphrag_flow.storage.outputs import read_manifest

#: Output tables whose (id, content_sha256) pairs are compared with the last completed run.
COMPARED_TABLES = ("documents", "text_units", "entities", "relationships", "communities", "community_reports")
#: Which output tables each stage makes: its rows carried over are the stage's reused items.
STAGE_TABLES = {
    "chunk": ("text_units",),
    "summarize": ("entities", "relationships"),
    "communities": ("communities",),
    "reports": ("community_reports",),
}
#: Titles listed per kind of change in the summary (counts are always complete).
MAX_TITLES = 20

RowKeys = set[tuple[str, str]]


@dataclass(frozen=True)
class DocumentDelta:
    """The input folder against the last completed run's documents, by title and content hash.

    A document is *changed* when its title is known but its content hash is new; a renamed
    file counts as one removed and one added (its text units still come from the caches).
    """

    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    first_run: bool = False
    settings_changed: bool = False

    @property
    def no_changes(self) -> bool:
        return not (self.first_run or self.settings_changed or self.added or self.changed or self.removed)

    def counts(self) -> dict[str, int]:
        return {k: len(getattr(self, k)) for k in ("added", "changed", "removed", "unchanged")}

    def headline(self) -> str:
        c = self.counts()
        if self.first_run:
            return f"first run: {c['added']} document(s) added"
        if self.no_changes:
            return f"no changes since the last completed run ({c['unchanged']} document(s) unchanged)"
        text = f"documents: {c['added']} added, {c['changed']} changed, {c['removed']} removed, {c['unchanged']} unchanged"
        return text + ("; settings or code changed since the last completed run" if self.settings_changed else "")

    def as_dict(self) -> dict:
        return {
            "documents": self.counts(),
            "titles": {k: getattr(self, k)[:MAX_TITLES] for k in ("added", "changed", "removed")},
            "first_run": self.first_run,
            "settings_changed": self.settings_changed,
            "no_changes": self.no_changes,
            "headline": self.headline(),
        }


def document_delta(
    manifest: dict | None,
    current: Iterable[tuple[str, str]],
    settings_sha256: str | None = None,
    code_version: str | None = None,
) -> DocumentDelta:
    """Compare (title, content_sha256) pairs of the input folder with the manifest's documents.

    `settings_sha256` / `code_version`: the current run's; when either differs from the
    manifest's the run is not "no changes" even if every document is the same.
    """
    current = sorted(current)
    if manifest is None:
        return DocumentDelta(added=[t for t, _ in current], first_run=True)
    before = {d["title"]: d["content_sha256"] for d in manifest.get("documents", [])}
    now = dict(current)
    settings_changed = (settings_sha256 is not None and manifest.get("settings_sha256") != settings_sha256) or (
        code_version is not None and manifest.get("code_version") != code_version
    )
    return DocumentDelta(
        added=[t for t in now if t not in before],
        changed=[t for t in now if t in before and before[t] != now[t]],
        removed=sorted(t for t in before if t not in now),
        unchanged=[t for t in now if before.get(t) == now[t]],
        settings_changed=settings_changed,
    )


def read_row_keys(out_dir: Path, tables: Iterable[str] = COMPARED_TABLES) -> dict[str, RowKeys]:
    """(id, content_sha256) of every row of the given output tables (missing tables: empty)."""
    keys: dict[str, RowKeys] = {}
    for name in tables:
        path = Path(out_dir) / f"{name}.parquet"
        if not path.exists():
            keys[name] = set()
            continue
        t = pq.read_table(path, columns=["id", "content_sha256"])
        keys[name] = set(zip(t.column("id").to_pylist(), t.column("content_sha256").to_pylist()))
    return keys


def _material(keys: RowKeys) -> set[str]:
    return {sha for _id, sha in keys}


def reports_reused(previous: RowKeys, current: RowKeys) -> int:
    """Reports written from material the last run also wrote one from (the answer cache serves it).

    By content hash alone: a community whose members changed can keep the same report
    material (its context is trimmed to llm.report_max_input_tokens), and then costs nothing.
    """
    before = _material(previous)
    return sum(1 for _id, sha in current if sha in before)


def carried_over(previous: dict[str, RowKeys] | None, current: dict[str, RowKeys]) -> dict[str, int]:
    """Per stage: rows identical (same id and content) to the last completed run's."""
    if previous is None:
        return {}
    carried = {
        stage: sum(len(current.get(t, set()) & previous.get(t, set())) for t in tables)
        for stage, tables in STAGE_TABLES.items()
    }
    carried["reports"] = reports_reused(previous.get("community_reports", set()), current.get("community_reports", set()))
    return carried


def community_changes(
    previous: dict[str, RowKeys] | None, current: dict[str, RowKeys], rebuilt: bool = False
) -> dict[str, int]:
    """How many communities are new or changed, removed or unchanged, and reports regenerated vs reused.

    A community's id is a hash of its level and members and its content_sha256 one of its
    entities and relationships; a report's content_sha256 is the hash of the material it was
    written from, so a report counts as reused when the same material made it last time
    (`rebuilt`: an `index --full` run, which regenerates every report whatever it finds).
    """
    before_c = previous.get("communities", set()) if previous else set()
    before_r = previous.get("community_reports", set()) if previous else set()
    now_c, now_r = current.get("communities", set()), current.get("community_reports", set())
    reused = 0 if rebuilt else reports_reused(before_r, now_r)
    return {
        "total": len(now_c),
        "changed": len(now_c - before_c),
        "removed": len({i for i, _ in before_c} - {i for i, _ in now_c}),
        "unchanged": len(now_c & before_c),
        "reports_regenerated": len(now_r) - reused,
        "reports_reused": reused,
    }


def communities_line(changes: dict[str, int]) -> str:
    return (
        f"communities changed: {changes['changed']} of {changes['total']} new or changed, "
        f"{changes['removed']} removed, {changes['unchanged']} unchanged; "
        f"reports regenerated {changes['reports_regenerated']}, reused {changes['reports_reused']}"
    )


@dataclass(frozen=True)
class LastRun:
    """The last completed run as a new run finds it: its manifest and its rows' keys."""

    manifest: dict | None
    rows: dict[str, RowKeys] | None


def read_last_run(out_dir: Path) -> LastRun:
    """Read before the new run writes anything to `out_dir`, so these are the previous run's."""
    manifest = read_manifest(out_dir)
    return LastRun(manifest, read_row_keys(out_dir) if manifest is not None else None)


def run_changes(last: LastRun, delta: DocumentDelta, out_dir: Path, rebuilt: bool) -> tuple[dict, dict[str, int]]:
    """After the write: the run's changes (for the summary) and, per stage, the rows carried over.

    `rebuilt` (`index --full`): every item was made anew, so nothing counts as carried over.
    """
    current = read_row_keys(out_dir)
    carried = {} if rebuilt or last.rows is None else carried_over(last.rows, current)
    if carried:
        carried["load"] = len(delta.unchanged)
    changes = delta.as_dict()
    changes["rebuilt"] = rebuilt
    if rebuilt:
        changes["headline"] += "; everything rebuilt (--full)"
    changes["communities"] = community_changes(last.rows, current, rebuilt)
    return changes, carried
