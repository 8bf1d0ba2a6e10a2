"""The cross-run API quota: a Prefect global concurrency limit named by llm.prefect_concurrency_limit.

Prefect's `concurrency()` does not fail on a limit that does not exist: it logs a warning and
lets every request through, so a typo in the setting would silently drop the shared quota.
The flow checks the name once at the start instead, and fails in seconds naming the setting.
"""

from __future__ import annotations

from graphrag_flow.config import Settings
from graphrag_flow.errors import SettingsError


async def require_concurrency_limit(settings: Settings, client=None) -> None:
    """Raise SettingsError unless the named global concurrency limit exists and is active."""
    name = settings.llm.prefect_concurrency_limit
    if not name:
        return
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    async def read(c):
        try:
            return await c.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            raise SettingsError(
                f"llm.prefect_concurrency_limit names '{name}', but the Prefect server has no global concurrency "
                f"limit of that name: create it with `prefect gcl create {name} --limit N`"
            ) from None

    if client is not None:
        limit = await read(client)
    else:
        async with get_client() as c:
            limit = await read(c)
    if not limit.active:
        raise SettingsError(
            f"the global concurrency limit '{name}' (llm.prefect_concurrency_limit) is inactive, so it would not "
            f"limit anything: `prefect gcl enable {name}`"
        )
