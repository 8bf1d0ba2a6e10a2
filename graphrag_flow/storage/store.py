"""A store named by URL (`s3://bucket/prefix`, `gs://…`, `az://…`, `file:///…`): the fsspec
filesystem that reads and writes it, and the same store as LanceDB opens it.

One `Store` is plain data (the URL and `storage.options`), so any process can rebuild the
filesystem from it: a worker that reads input opens its own connection. Credentials are never
part of it: fsspec's backends and LanceDB both read the standard environment
(`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`,
`AWS_ENDPOINT_URL`), so the environment alone is enough to reach S3 or a local MinIO or moto.
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import fsspec

from graphrag_flow.config import Settings, StorageSettings, is_url
from graphrag_flow.errors import SettingsError
from graphrag_flow.urls import safe_url

#: Environment variables that name an S3 endpoint (botocore and object_store read the same ones).
S3_ENDPOINT_ENV = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")


@dataclass(frozen=True)
class Store:
    """The store at `url` (no trailing slash), reached with fsspec `options`."""

    url: str
    options: dict[str, Any] = field(default_factory=dict)
    #: From a Prefect AwsCredentials block (storage.aws_credentials_block), else empty and the
    #: backends read the environment: key, secret, token, region.
    credentials: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    @property
    def protocol(self) -> str:
        return urlsplit(self.url).scheme.lower()

    @property
    def shown(self) -> str:
        """The URL as it may be printed (no `user:password@`)."""
        return safe_url(self.url)

    def fs(self, **overrides: Any) -> fsspec.AbstractFileSystem:
        """The store's filesystem; fsspec caches instances per options, so this is cheap."""
        if self.protocol not in fsspec.available_protocols():
            raise SettingsError(f"{self.shown}: no storage backend for {self.protocol}:// (fsspec knows "
                                f"{', '.join(sorted(p for p in fsspec.available_protocols() if len(p) <= 5))})")
        try:
            defaults = {"auto_mkdir": True} if self.protocol in ("file", "local") else {}  # folders as S3 has none
            return fsspec.filesystem(self.protocol, **{**defaults, **self._s3_credentials(), **self.options,
                                                       **overrides})
        except ImportError as exc:
            raise SettingsError(f"{self.shown}: the storage backend for {self.protocol}:// is not installed "
                                f"({exc.name or exc}); install graphrag-flow[s3] for s3://") from None
        except TypeError as exc:
            raise SettingsError(f"storage.options: not accepted by the {self.protocol}:// backend ({exc})") from None

    def _s3_credentials(self) -> dict[str, Any]:
        if not self.credentials or self.protocol not in ("s3", "s3a"):
            return {}
        given = {"key": self.credentials.get("key"), "secret": self.credentials.get("secret"),
                 "token": self.credentials.get("token")}
        options: dict[str, Any] = {k: v for k, v in given.items() if v}
        if self.credentials.get("region"):
            options["client_kwargs"] = {"region_name": self.credentials["region"], **(self.options.get("client_kwargs") or {})}
        return options

    def path(self, *parts: str) -> str:
        """A path inside the store, as its filesystem names it (`bucket/prefix/a/b`)."""
        root = fsspec.core.strip_protocol(self.url) if self.protocol != "file" else urlsplit(self.url).path
        return posixpath.join(root.rstrip("/"), *parts) if parts else root.rstrip("/")

    def uri(self, *parts: str) -> str:
        """A full URL inside the store (what LanceDB and a user are given)."""
        return posixpath.join(self.url.rstrip("/"), *parts) if parts else self.url.rstrip("/")

    def child(self, *parts: str) -> "Store":
        return Store(self.uri(*parts), self.options, self.credentials)

    def lance_options(self) -> dict[str, str]:
        """LanceDB's `storage_options` for this store: the endpoint and region from the fsspec
        options (else LanceDB reads the same environment), and `allow_http` when the endpoint
        is plain http (a local MinIO or moto), which LanceDB refuses otherwise."""
        if self.protocol not in ("s3", "s3a"):
            return {}
        client = self.options.get("client_kwargs") or {}
        endpoint = self.options.get("endpoint_url") or client.get("endpoint_url")
        endpoint = endpoint or next((os.environ[v] for v in S3_ENDPOINT_ENV if os.environ.get(v)), None)
        options: dict[str, str] = {}
        if self.options.get("endpoint_url") or client.get("endpoint_url"):
            options["aws_endpoint"] = str(endpoint)
        region = client.get("region_name") or self.options.get("region_name")
        if region:
            options["aws_region"] = str(region)
        if endpoint and str(endpoint).lower().startswith("http://"):
            options["allow_http"] = "true"
        if self.options.get("anon"):
            options["aws_skip_signature"] = "true"
        for name, option in (("key", "aws_access_key_id"), ("secret", "aws_secret_access_key"),
                             ("token", "aws_session_token"), ("region", "aws_region")):
            if self.credentials.get(name):
                options.setdefault(option, self.credentials[name])
        return options


def store_for(url: str, storage: StorageSettings) -> Store:
    return Store(url.rstrip("/") if not url.endswith("://") else url, dict(storage.options), storage.credentials)


def output_store(settings: Settings) -> Store | None:
    """The store output.dir names by URL, or None for the project's own output/ folder."""
    return store_for(settings.output.dir, settings.storage) if is_url(settings.output.dir) else None
