"""The shipped prompt files; `llm.prompts_dir` can replace any of them by file name."""

from __future__ import annotations

from pathlib import Path

from graphrag_flow.errors import SettingsError

PROMPT_NAMES = ("graph_extraction", "entity_summary", "community_report")
_SHIPPED = Path(__file__).parent


def load_prompt(name: str, prompts_dir: str | None, root: Path | None = None) -> str:
    """The user's `<prompts_dir>/<name>.txt` when it exists, else the shipped one."""
    if name not in PROMPT_NAMES:
        raise KeyError(name)
    if prompts_dir:
        base = Path(prompts_dir)
        if not base.is_absolute() and root is not None:
            base = Path(root) / base
        if not base.is_dir():
            raise SettingsError(f"llm.prompts_dir {base} is not a folder")
        override = base / f"{name}.txt"
        if override.exists():
            return override.read_text(encoding="utf-8")
    return (_SHIPPED / f"{name}.txt").read_text(encoding="utf-8")
