"""`check` and the start of `index` fail on what would otherwise fail hours in: a missing
`llm.prompts_dir`, and project folders an index run cannot write to."""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
import time
from pathlib import Path

import pytest

from conftest import make_project
from graphrag_flow.cli.check import run_check
from graphrag_flow.config import load_settings
from graphrag_flow.errors import SettingsError

FILES = {"a.txt": b"Ada Lovelace wrote the first program.", "b.txt": b"Grace Hopper wrote the first compiler."}


def check(root: Path) -> list[str]:
    return asyncio.run(run_check(root, load_settings(root), quick=False))


def test_check_fails_on_a_missing_prompts_dir_naming_the_setting(tmp_path):
    root = make_project(tmp_path / "p", files=FILES, llm={"prompts_dir": "my-prompts"})
    with pytest.raises(SettingsError, match=r"setting llm.prompts_dir: .*my-prompts is not a folder"):
        check(root)


def test_check_says_which_prompts_come_from_prompts_dir_and_which_are_shipped(tmp_path):
    """A prompts_dir may override only some prompts (the others stay the shipped ones): check
    says which, so a misnamed file (extraction.txt) is seen before a run uses the default."""
    root = make_project(tmp_path / "p", files=FILES, llm={"prompts_dir": "my-prompts"})
    (root / "my-prompts").mkdir()
    (root / "my-prompts" / "graph_extraction.txt").write_text("Extract entities from {input_text}", encoding="utf-8")
    (root / "my-prompts" / "extraction.txt").write_text("misnamed", encoding="utf-8")
    lines = check(root)
    assert ("llm.prompts_dir: graph_extraction.txt from it; entity_summary.txt, community_report.txt from the "
            "shipped defaults") in lines, lines
    (root / "my-prompts" / "entity_summary.txt").write_text("  \n", encoding="utf-8")
    with pytest.raises(SettingsError, match=r"setting llm.prompts_dir: .*entity_summary.txt is empty"):
        check(root)


def _unprivileged() -> list[str]:
    """A command prefix under which permission bits hold: as root, drop the capability to
    override them (root writes into a 0555 folder otherwise)."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: a read-only folder cannot be made")
    return [setpriv, "--bounding-set=-dac_override,-dac_read_search"]


def test_a_read_only_output_or_cache_fails_index_and_check_at_once_naming_the_folder(tmp_path, prefect_home):
    import subprocess
    import sys

    from conftest import REPO, cli_env

    root = make_project(tmp_path / "p", files=FILES)
    (root / "output").mkdir()
    (root / "output").chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP)
    prefix = _unprivileged()
    try:
        started = time.monotonic()
        index = subprocess.run([*prefix, sys.executable, "-m", "graphrag_flow.cli", "index", "--root", str(root)], cwd=REPO,
                               env=cli_env(prefect_home), capture_output=True, text=True, timeout=400)
        elapsed = time.monotonic() - started
        out = index.stdout + index.stderr
        assert index.returncode == 1, out[-3000:]
        assert f"{root / 'output'} is not writable: Permission denied" in " ".join(out.split()), out[-3000:]
        assert not (root / "cache" / "stages").exists(), "a stage ran before the check"
        assert elapsed < 120, elapsed

        (root / "output").chmod(0o755)
        (root / "cache").mkdir(exist_ok=True)
        (root / "cache").chmod(stat.S_IRUSR | stat.S_IXUSR)
        checked = subprocess.run([*prefix, sys.executable, "-m", "graphrag_flow.cli", "check", "--root", str(root)],
                                 cwd=REPO, env=cli_env(prefect_home), capture_output=True, text=True, timeout=120)
        assert checked.returncode == 1, checked.stdout + checked.stderr
        assert f"{root / 'cache'} is not writable" in " ".join(checked.stderr.split())
    finally:
        for folder in ("output", "cache"):
            if (root / folder).exists():
                (root / folder).chmod(0o755)


def test_provider_openai_sends_to_openai_by_default_and_needs_a_key_before_any_request(tmp_path, monkeypatch):
    """README "Use a real model": `provider: openai` alone means OpenAI's API; without any key,
    check says which settings take one (no request: OpenAI would only answer 401)."""
    from graphrag_flow.config import OPENAI_API_BASE

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    root = make_project(tmp_path / "p", files=FILES, llm={"provider": "openai"})
    assert load_settings(root).llm.base_url == OPENAI_API_BASE == "https://api.openai.com/v1"
    with pytest.raises(SettingsError, match=r"^no API key set \(llm.api_key, llm.api_key_secret or OPENAI_API_KEY\)"):
        check(root)


def test_a_server_that_wants_a_key_and_got_none_says_no_key_is_set(tmp_path, monkeypatch, fake):
    """A local server needs no key, so none is required up front; when the server answers 401 to
    a request that carried none, the error says no key is set, not that a key was rejected."""
    from fake_openai import configure_remote

    from graphrag_flow.errors import FatalLLMError

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    root = make_project(tmp_path / "p", files=FILES, llm={"provider": "openai", "api_base": fake})
    configure_remote(fake, api_key="sk-wanted")
    try:
        with pytest.raises(FatalLLMError, match=r"^no API key set \(llm.api_key, llm.api_key_secret or "
                                                r"OPENAI_API_KEY\), and .* requires one \(HTTP 401\)"):
            check(root)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong")
        with pytest.raises(FatalLLMError, match=r"^API key rejected by"):
            check(root)
    finally:
        configure_remote(fake, api_key=None)
