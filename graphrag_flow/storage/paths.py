"""Every path of a project folder, in one place: what a run reads, builds, serves and keeps.

    <root>/settings.yaml
    <root>/<input.dir>/              the documents (input.dir is relative to the root, or absolute)
    <root>/output/                   the last completed run's outputs: what readers are served
    <root>/output.next/              the run in progress builds its generation here
    <root>/output.previous/          the generation the last switch replaced
    <root>/cache/llm_answers.sqlite  every LLM (and offline extraction) answer
    <root>/cache/stages/             stage checkpoints, one folder per stage and cache key
    <root>/cache/extracted/          the text readers extracted from PDF, DOCX, HTML, CSV, JSON files
    <root>/cache/prefect-results/    Prefect's persisted task results (small StageRefs)
    <root>/cache/index.lock          the project lock (and index.lock.json: who holds it)
    <root>/cache/neo4j/              the Neo4j sink's committed batches and last written ids
    <root>/cache/logs/               the full log of each CLI `index` run (the terminal shows warnings)

When `output` is a symlink (the outputs on a disk of their own), the generations are built and
switched where it points (`<target>.next`, `<target>.previous`): the staging folder is then on
the same filesystem as the served one (hard links, a one-step switch), and the link itself keeps
pointing at the served generation.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from graphrag_flow.config import InputSettings

OUTPUT_DIR = "output"
STAGING_DIR = "output.next"
PREVIOUS_DIR = "output.previous"
CACHE_DIR = "cache"


def _in_cache(relative: str, doc: str) -> property:
    """A path under the project's cache/ folder."""
    return property(lambda self: self.cache / relative, doc=doc)


@dataclass(frozen=True)
class ProjectPaths:
    """The paths of the project folder `root`; nothing is created or read by building one."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    def input(self, settings: InputSettings) -> Path:
        """The documents' folder: `input.dir`, relative to the project folder unless absolute."""
        return self.root / settings.dir

    # -- the output generations

    @property
    def output_link(self) -> Path:
        """`<root>/output` as named (a folder, a symlink to one, or not there yet)."""
        return self.root / OUTPUT_DIR

    @property
    def output(self) -> Path:
        """The served generation: `<root>/output`, or where it points when it is a symlink."""
        link = self.output_link
        return Path(os.path.realpath(link)) if link.is_symlink() else link

    @property
    def staging(self) -> Path:
        """Where the run in progress builds its generation (`output.next` beside the served one)."""
        live = self.output
        return live.with_name(live.name + STAGING_DIR.removeprefix(OUTPUT_DIR))

    @property
    def previous(self) -> Path:
        """The generation the last switch replaced (`output.previous` beside the served one)."""
        live = self.output
        return live.with_name(live.name + PREVIOUS_DIR.removeprefix(OUTPUT_DIR))

    # -- caches and checkpoints, all under cache/

    @property
    def cache(self) -> Path:
        return self.root / CACHE_DIR

    answer_cache = _in_cache("llm_answers.sqlite", "every LLM answer and offline extraction answer")
    stages = _in_cache("stages", "stage checkpoints (storage/stages.py)")
    extracted = _in_cache("extracted", "the text readers extracted, by file hash and reader version "
                                       "(stages/load/extracted.py)")
    prefect_results = _in_cache("prefect-results", "Prefect's persisted task results")
    lock = _in_cache("index.lock", "the project lock (storage/project_lock.py)")
    lock_holder = _in_cache("index.lock.json", "who holds the lock, named when a second run finds it held")
    neo4j_state = _in_cache("neo4j/state.json", "the ids the last successful Neo4j sink wrote: the next deletes "
                                                "those that left the index")
    neo4j_batches = _in_cache("neo4j/batches", "the Neo4j sink's committed batches, for its resume")
    logs = _in_cache("logs", "the full log of each CLI `index` run, one file per run (graphrag_flow/cli/console.py)")

    def written_by_a_run(self) -> list[Path]:
        """The folders an index run writes to: the project folder (where the output generations
        are made and renamed), `output/` and `cache/`."""
        return [self.root, self.output_link, self.cache]
