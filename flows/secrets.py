"""Every secret of a run, resolved in one place: the LLM API key and the Neo4j password.

Precedence, per secret:
- `llm.api_key` (settings.yaml or GRAPHRAG_FLOW_LLM__API_KEY) > the Prefect Secret block named
  by `llm.api_key_secret` > `OPENAI_API_KEY` (`AZURE_OPENAI_API_KEY` with `llm.provider: azure`;
  none with `llm.azure_auth: entra_id`, whose token comes per request, graphrag_flow/llm/entra.py);
- `neo4j.password` (GRAPHRAG_FLOW_NEO4J__PASSWORD is better than the file) > the Prefect
  Secret block named by `neo4j.password_secret`.

`resolve_secrets` returns the settings with both filled in (as SecretStr), so the rest of a run
reads `settings.llm.api_key` / `settings.neo4j.password` and never looks a secret up again.
Only the secrets a run uses are looked up: the key with `llm.provider: openai` or `azure`, the password
with `neo4j.uri` set. Blocks are read with `Secret.aload` on the caller's event loop (the
synchronous `Secret.load` returns a coroutine there). Prefect is imported only when a block
is named, so `check` stays fast otherwise. A failure names the setting, never the block's
value, and not the block's name either (a key pasted into the `_secret` setting by mistake
must not be printed).
"""

from __future__ import annotations

import os

from pydantic import SecretStr

from graphrag_flow.config import Settings
from graphrag_flow.errors import SettingsError

#: The environment variable a provider's key is read from when no setting names one.
KEY_ENV = {"openai": "OPENAI_API_KEY", "azure": "AZURE_OPENAI_API_KEY"}


async def resolve_secrets(settings: Settings) -> Settings:
    """`settings` with `llm.api_key` and `neo4j.password` resolved (a copy; the input is kept)."""
    llm, neo = settings.llm, settings.neo4j
    llm_update, neo_update = {}, {}
    if llm.provider != "offline" and llm.api_key is None and not llm.uses_entra_id:
        env = KEY_ENV[llm.provider]
        if llm.api_key_secret:
            llm_update["api_key"] = SecretStr(await _block_value(llm.api_key_secret, "llm.api_key_secret"))
        elif os.environ.get(env):
            llm_update["api_key"] = SecretStr(os.environ[env])
    if neo.uri and neo.password is None and neo.password_secret:
        neo_update["password"] = SecretStr(await _block_value(neo.password_secret, "neo4j.password_secret"))
    if not llm_update and not neo_update:
        return settings
    return settings.model_copy(update={
        "llm": llm.model_copy(update=llm_update),
        "neo4j": neo.model_copy(update=neo_update),
    })


async def _block_value(name: str, setting: str) -> str:
    from prefect.blocks.system import Secret

    try:
        block = await Secret.aload(name)
    except ValueError:
        raise SettingsError(
            f"setting {setting}: no Prefect Secret block of that name on the Prefect API in use "
            "(create it with `prefect block create secret`, or in the UI under Blocks)"
        ) from None
    except Exception as exc:  # the API unreachable, or a block of another type under that name
        raise SettingsError(
            f"setting {setting}: the Prefect Secret block could not be read ({type(exc).__name__})"
        ) from None
    value = block.get()
    if not isinstance(value, str) or not value:
        raise SettingsError(f"setting {setting}: the Prefect Secret block must hold a non-empty string")
    return value
