"""The run's artifacts in the Prefect UI: keyed per project, and published by every run, one
that stops on its settings included."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from conftest import make_project
from flows.artifacts import artifact_key


def test_artifact_keys_are_valid_prefect_keys_and_one_history_per_project_folder(tmp_path):
    from prefect.client.schemas.actions import ArtifactCreate

    odd = tmp_path / "Docs of Ünïcode & Co_2026 — a very long folder name indeed, longer than a slug"
    twins = [tmp_path / "a" / "docs", tmp_path / "b" / "docs"]
    keys = [artifact_key(odd, "progress-embed-text_unit_text"), *(artifact_key(t, "summary") for t in twins)]
    for key in keys:
        ArtifactCreate(key=key, type="markdown", data="x")  # Prefect's own validation of keys
    assert keys[0].startswith("graphrag-flow-docs-of-n-code-co-2026-a-very-lo-") and \
        keys[0].endswith("-progress-embed-text-unit-text"), keys[0]
    assert keys[1] != keys[2] and keys[1].startswith("graphrag-flow-docs-")  # same name, other folder
    assert artifact_key(twins[0] / ".." / "docs", "summary") == keys[1]  # the same folder, however named
    assert artifact_key(tmp_path / "!!!", "stages").startswith("graphrag-flow-project-")


def test_a_run_stopped_by_its_settings_publishes_a_failed_summary(tmp_path, prefect_api):
    """A deployment run has no CLI in front of it: the flow itself meets the bad setting, and
    the project's summary history shows that night as failed, naming the setting."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.index import index
    from graphrag_flow.errors import SettingsError

    root = make_project(tmp_path / "night", files={"a.txt": b"Ada Lovelace wrote programs."}, llm={"temperature": 7})

    async def run_and_read():
        with temporary_settings(updates={PREFECT_API_URL: prefect_api[1]}):
            with pytest.raises(SettingsError, match="llm.temperature"):
                await index(root=str(root))
            async with get_client() as client:
                return await client.read_artifacts(
                    artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[artifact_key(root, "summary")])))

    [artifact] = asyncio.run(run_and_read())
    assert f"# graphrag-flow index of `{Path(root).resolve()}` FAILED" in artifact.data
    assert "llm.temperature" in artifact.data
