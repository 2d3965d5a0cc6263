"""How storage tests open backends on the emulators: options, prefixes and the CloudTarget helper.

Kept out of ``conftest.py`` so test modules can import it by a name no other test folder uses.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import servers

from weightvault.storage.backend import Backend
from weightvault.storage.factory import open_backend

MiB = 1 << 20
BUCKET = "wv-test"

#: A retry budget of milliseconds, so failure tests finish fast.
FAST_RETRY: dict[str, Any] = {"retry_attempts": 3, "retry_base_delay": 0.01, "retry_max_delay": 0.05}

Factory = Callable[..., Backend]


def s3_options(endpoint: str) -> dict[str, Any]:
    return {
        "endpoint_url": endpoint,
        "region": "us-east-1",
        "access_key_id": "test",
        "secret_access_key": "test",
        "part_size": 5 * MiB,  # S3's minimum, so a 40 MiB object is 8 parts
        "multipart_threshold": 5 * MiB,  # and anything larger goes in parts (the default is 128 MiB)
        "max_concurrency": 2,
        **FAST_RETRY,
    }


def aws_settings(endpoint: str, prefix: str, retry: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``aws`` section of a vault config whose store is ``BUCKET/prefix`` on the S3 server at
    ``endpoint`` (the config's own retry settings when ``retry`` is given)."""
    section: dict[str, Any] = {
        "enabled": True,
        "region": "us-east-1",
        "endpoint_url": endpoint,
        "access_key_id": "test",
        "secret_access_key": "test",
        "model_weights": {"s3_bucket": BUCKET, "prefix": prefix},
    }
    if retry is not None:
        section["retry"] = retry
    return section


def gcs_options(endpoint: str) -> dict[str, Any]:
    return {"endpoint_url": endpoint, "project_id": "test", "chunk_size": 4 * MiB, **FAST_RETRY}


def azure_options(endpoint: str) -> dict[str, Any]:
    return {
        "connection_string": servers.azurite_connection_string(endpoint),
        "block_size": 4 * MiB,
        "max_concurrency": 3,
        **FAST_RETRY,
    }


#: provider -> (URL scheme, name of the session fixture running its emulator, options)
PROVIDERS: dict[str, tuple[str, str, Callable[[str], dict[str, Any]]]] = {
    "s3": ("s3", "moto", s3_options),
    "gcs": ("gs", "gcs_emulator", gcs_options),
    "azure": ("az", "azurite", azure_options),
}


def cloud_factory(scheme: str, options: dict[str, Any]) -> Iterator[Factory]:
    """Backends in fresh prefixes of one bucket (created on first use), closed afterwards."""
    opened: list[Backend] = []

    def make(prefix: str | None = None, **overrides: Any) -> Backend:
        prefix = prefix or uuid.uuid4().hex[:12]
        backend = open_backend(f"{scheme}://{BUCKET}/{prefix}", create=True, **{**options, **overrides})
        opened.append(backend)
        return backend

    yield make
    for backend in opened:
        backend.close()


class CloudTarget:
    """One provider's emulator and how to open backends on it, directly or through a proxy."""

    def __init__(self, provider: str, server: servers.ServerProcess) -> None:
        self.provider = provider
        self.scheme, _, self._options = PROVIDERS[provider]
        self.server = server
        self._opened: list[Backend] = []

    def options(self, endpoint: str | None = None, **overrides: Any) -> dict[str, Any]:
        return {**self._options(endpoint or self.server.endpoint), **overrides}

    def open(self, prefix: str, endpoint: str | None = None, **overrides: Any) -> Backend:
        backend = open_backend(f"{self.scheme}://{BUCKET}/{prefix}", **self.options(endpoint, **overrides))
        self._opened.append(backend)
        return backend

    def close(self) -> None:
        for backend in self._opened:
            backend.close()
