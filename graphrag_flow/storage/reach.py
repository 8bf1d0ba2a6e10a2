"""`check` and the index preflight on a store: input.dir can be listed and output.dir written, in
seconds, with an error naming the setting to fix (the endpoint, the credentials, the bucket).

A wrong endpoint or key must not cost the night: botocore and s3fs retry connection errors for
tens of seconds, so the check uses a filesystem of its own with short timeouts and one attempt.
"""

from __future__ import annotations

import os
import secrets
import time
from typing import Any

from graphrag_flow.config import Settings, is_url
from graphrag_flow.errors import SettingsError
from graphrag_flow.storage.store import S3_ENDPOINT_ENV, Store, store_for

#: Each of connect and read, per request; `check` makes two or three requests per store.
CHECK_TIMEOUT_S = 2.0
_CREDENTIALS = ("the credentials (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment, a profile, or "
                "storage.aws_credentials_block) were refused")


def _quick_fs(store: Store) -> Any:
    if store.protocol not in ("s3", "s3a"):
        return store.fs()
    config = dict(store.options.get("config_kwargs") or {})
    config.update(connect_timeout=CHECK_TIMEOUT_S, read_timeout=CHECK_TIMEOUT_S, retries={"max_attempts": 1})
    fs = store.fs(config_kwargs=config, skip_instance_cache=True)
    fs.retries = 1  # s3fs's own loop around botocore's
    return fs


def _endpoint(store: Store) -> str:
    client = store.options.get("client_kwargs") or {}
    if store.options.get("endpoint_url") or client.get("endpoint_url"):
        return f"{store.options.get('endpoint_url') or client.get('endpoint_url')} (storage.options.endpoint_url)"
    env = next((v for v in S3_ENDPOINT_ENV if os.environ.get(v)), None)
    return f"{os.environ[env]} ({env})" if env else "AWS's default endpoint"


def scrub_secrets(text: str) -> str:
    """`text` without the environment's AWS secret key or session token (an error may echo a request)."""
    for name in ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        value = os.environ.get(name)
        if value and len(value) >= 4:
            text = text.replace(value, "***")
    return text


def _failure(store: Store, setting: str, exc: BaseException, write: bool) -> SettingsError:
    detail = scrub_secrets(f"{type(exc).__name__}: {exc}")[:300]
    if type(exc).__name__ == "NoCredentialsError":
        return SettingsError(f"{setting}: {store.shown}: no credentials found (set AWS_ACCESS_KEY_ID and "
                             "AWS_SECRET_ACCESS_KEY, a profile or an IAM role, or storage.aws_credentials_block)")
    if isinstance(exc, PermissionError):
        why = _CREDENTIALS if store.protocol in ("s3", "s3a") else "access was refused"
        return SettingsError(f"{setting}: {store.shown}: {why} ({detail})")
    if isinstance(exc, FileNotFoundError):
        what = "the bucket does not exist" if write else "nothing is there (no such bucket, or no object under that prefix)"
        return SettingsError(f"{setting}: {store.shown}: {what} ({detail})")
    where = f" at {_endpoint(store)}" if store.protocol in ("s3", "s3a") else ""
    return SettingsError(f"{setting}: {store.shown}: the store cannot be reached{where} ({detail})")


def check_store(store: Store, setting: str, write: bool) -> str:
    """List the store (and, when `write`, create and remove a probe object under it); a
    SettingsError naming `setting` and the cause when it cannot."""
    started = time.monotonic()
    try:
        fs = _quick_fs(store)
        if write:
            probe = store.path(f".graphrag-flow-check-{secrets.token_hex(6)}")
            fs.pipe_file(probe, b"")
            fs.rm_file(probe)
        else:
            fs.ls(store.path(), detail=False)
    except SettingsError:
        raise
    except Exception as exc:  # botocore, aiohttp and OS errors alike: name the setting, never crash
        raise _failure(store, setting, exc, write) from None
    what = "written" if write else "listed"
    return f"{store.shown} ({setting}) can be {what} ({time.monotonic() - started:.1f} s)"


def check_stores(settings: Settings) -> list[str]:
    """input.dir and output.dir, where they are store URLs: listed, and written."""
    lines = []
    for setting, url, write in (("input.dir", settings.input.dir, False), ("output.dir", settings.output.dir, True)):
        if is_url(url):
            lines.append(check_store(store_for(url, settings.storage), setting, write))
    return lines
