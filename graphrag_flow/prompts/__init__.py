"""The shipped prompt files; `llm.prompts_dir` can replace any of them by file name."""

from __future__ import annotations

from pathlib import Path

from graphrag_flow.errors import SettingsError

PROMPT_NAMES = ("graph_extraction", "entity_summary", "community_report")
_SHIPPED = Path(__file__).parent


def prompt_files(prompts_dir: str | None, root: Path | None = None) -> dict[str, Path]:
    """The file each prompt is read from: `<prompts_dir>/<name>.txt` when it exists, else the
    shipped one (a prompts_dir may override only some prompts). SettingsError naming
    llm.prompts_dir when the folder is missing."""
    files = {name: _SHIPPED / f"{name}.txt" for name in PROMPT_NAMES}
    if prompts_dir:
        base = Path(prompts_dir)
        if not base.is_absolute() and root is not None:
            base = Path(root) / base
        if not base.is_dir():
            raise SettingsError(f"setting llm.prompts_dir: {base} is not a folder")
        for name in PROMPT_NAMES:
            if (base / f"{name}.txt").is_file():
                files[name] = base / f"{name}.txt"
    return files


def load_prompt(name: str, prompts_dir: str | None, root: Path | None = None) -> str:
    """The user's `<prompts_dir>/<name>.txt` when it exists, else the shipped one."""
    if name not in PROMPT_NAMES:
        raise KeyError(name)
    path = prompt_files(prompts_dir, root)[name]
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise SettingsError(f"setting llm.prompts_dir: cannot read {path}: {reason}") from None
    if not text.strip():
        raise SettingsError(f"setting llm.prompts_dir: {path} is empty")
    return text


def describe_prompts(prompts_dir: str | None, root: Path | None = None) -> str:
    """Which prompt comes from where, for `check`; reads each (an unreadable or empty one fails)."""
    files = prompt_files(prompts_dir, root)
    for name in PROMPT_NAMES:
        load_prompt(name, prompts_dir, root)
    own = [f"{name}.txt" for name, path in files.items() if path.parent != _SHIPPED]
    shipped = [f"{name}.txt" for name, path in files.items() if path.parent == _SHIPPED]
    if not prompts_dir:
        return "prompts: the shipped ones (llm.prompts_dir is not set)"
    return (f"llm.prompts_dir: {', '.join(own) or 'no prompt file'} from it; "
            f"{', '.join(shipped) or 'none'} from the shipped defaults")


def chat_messages(system: str, user: str) -> list[dict]:
    """A chat request's messages: the prompt as the system message, the item's text as the user's."""
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]
