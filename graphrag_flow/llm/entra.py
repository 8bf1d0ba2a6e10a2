"""Microsoft Entra ID tokens for Azure OpenAI (`llm.azure_auth: entra_id`).

The token comes from a credential with azure-identity's `TokenCredential` protocol (a
`get_token(*scopes)` that returns `.token` and `.expires_on`, seconds since the epoch), by
default azure-identity's `DefaultAzureCredential` (environment, workload or managed identity,
Azure CLI, ...), an optional extra: `pip install 'graphrag-flow[azure]'`. Its scope is Azure
AI services': `https://cognitiveservices.azure.com/.default`. Each request carries it as
`Authorization: Bearer <token>`.

- `get_token` blocks (it may call a managed-identity endpoint or run the Azure CLI): it runs
  in a worker thread, one call at a time for the run, never on the event loop.
- A token is refreshed before it expires: the first request less than `REFRESH_BEFORE_S`
  (5 minutes, as azure-identity's own credentials refresh) before its expiry fetches a new one,
  so no request leaves with a token that expires on the way. A token issued for less than
  twice that is refreshed after half its life.
- It is never logged: it is held as a `SecretStr` and the transport scrubs it (`secrets()`)
  from every message, as it does the API key.

One `EntraToken` serves the whole run (every stage's client), from any thread or event loop:
its state is guarded by a thread lock.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any, Callable, Protocol

from pydantic import SecretStr

from graphrag_flow.config import LLMSettings
from graphrag_flow.errors import FatalLLMError, SettingsError

SCOPE = "https://cognitiveservices.azure.com/.default"
REFRESH_BEFORE_S = 300.0


class TokenCredential(Protocol):
    """azure-identity's (azure-core's) credential protocol, as far as it is used here."""

    def get_token(self, *scopes: str, **kwargs: Any) -> Any: ...


def default_credential() -> TokenCredential:
    """azure-identity's DefaultAzureCredential; a clear error when the extra is not installed."""
    try:
        from azure.identity import DefaultAzureCredential
    except ImportError:
        raise SettingsError("llm.azure_auth: entra_id needs the azure-identity package: "
                            "pip install 'graphrag-flow[azure]'") from None
    return DefaultAzureCredential()


def run_token(settings: LLMSettings, credential: TokenCredential | None = None) -> "EntraToken | None":
    """The run's token source with `llm.azure_auth: entra_id` (DefaultAzureCredential unless a
    credential is given), else None."""
    if not settings.uses_entra_id:
        return None
    return EntraToken(credential if credential is not None else default_credential())


class EntraToken:
    """The run's Entra ID token: `await bearer()` gives the header value, refreshed in time."""

    def __init__(self, credential: TokenCredential, *, refresh_before_s: float = REFRESH_BEFORE_S,
                 clock: Callable[[], float] = time.time):
        self._credential = credential
        self._refresh_before_s = refresh_before_s
        self._clock = clock
        self._lock = threading.Lock()
        self._token: SecretStr | None = None
        self._previous: SecretStr | None = None
        #: When the next request fetches a new token (the clock's seconds).
        self._refresh_at = 0.0
        #: Tokens fetched (for the tests and the run's log).
        self.fetched = 0

    def __repr__(self) -> str:
        return f"EntraToken(scope={SCOPE!r}, token=<{'set' if self._token else 'none'}>)"

    def __reduce__(self) -> Any:
        raise TypeError("an EntraToken cannot be pickled (it holds a secret)")

    async def bearer(self) -> str:
        """`Bearer <token>`: the current token, or a new one when it is due (fetched in a thread)."""
        token = self._token
        if token is None or self._clock() >= self._refresh_at:
            token = await asyncio.to_thread(self._refresh)
        return f"Bearer {token.get_secret_value()}"

    def secrets(self) -> list[str]:
        """The current and the previous token (a request sent just before a refresh may be
        answered after it), for the transport to scrub from messages."""
        return [t.get_secret_value() for t in (self._token, self._previous) if t is not None]

    def _refresh(self) -> SecretStr:
        with self._lock:  # one fetch at a time: requests that waited for it use its token
            now = self._clock()
            if self._token is not None and now < self._refresh_at:
                return self._token
            try:
                access = self._credential.get_token(SCOPE)
                value, expires_on = str(access.token), float(access.expires_on)
            except Exception as exc:  # azure-identity raises ClientAuthenticationError & co.
                detail = " ".join(str(exc).split())[:400]
                raise FatalLLMError(f"could not get a Microsoft Entra ID token for {SCOPE} (llm.azure_auth: "
                                    f"entra_id): {type(exc).__name__}: {detail}") from None
            if not value:
                raise FatalLLMError("the Entra ID credential returned an empty token (llm.azure_auth: entra_id)")
            lifetime = max(0.0, expires_on - now)
            self._previous, self._token = self._token, SecretStr(value)
            self._refresh_at = expires_on - min(self._refresh_before_s, lifetime / 2)
            self.fetched += 1
            return self._token
