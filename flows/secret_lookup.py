"""Every secret of a run, resolved in one place: the LLM API key, the Neo4j password, and the
storage credentials of a prefect-aws AwsCredentials block (`storage.aws_credentials_block`).

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

from graphrag_flow.config import Settings, is_url
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
    storage = settings.storage
    if storage.aws_credentials_block and (is_url(settings.input.dir) or is_url(settings.output.dir)):
        storage = storage.with_credentials(await _aws_credentials(storage.aws_credentials_block))
    if not llm_update and not neo_update and storage is settings.storage:
        return settings
    return settings.model_copy(update={
        "llm": llm.model_copy(update=llm_update),
        "neo4j": neo.model_copy(update=neo_update),
        "storage": storage,
    })


async def _aws_credentials(name: str) -> dict[str, str]:
    """The key pair, session token and region of a prefect-aws AwsCredentials block."""
    setting = "storage.aws_credentials_block"
    try:
        from prefect_aws import AwsCredentials
    except ImportError:
        raise SettingsError(f"setting {setting}: prefect-aws is not installed (pip install 'graphrag-flow[s3]')") from None
    try:
        block = await AwsCredentials.aload(name)
    except ValueError:
        raise SettingsError(f"setting {setting}: no AwsCredentials block of that name on the Prefect API in use "
                            "(create it with `prefect block create aws-credentials`, or in the UI under Blocks)") from None
    except Exception as exc:  # the API unreachable, or a block of another type under that name
        raise SettingsError(f"setting {setting}: the AwsCredentials block could not be read ({type(exc).__name__})") from None
    secret = block.aws_secret_access_key.get_secret_value() if block.aws_secret_access_key else None
    given = {"key": block.aws_access_key_id, "secret": secret, "token": block.aws_session_token,
             "region": block.region_name}
    return {k: v for k, v in given.items() if v}


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
