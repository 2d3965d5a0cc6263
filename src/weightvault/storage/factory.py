"""Open a backend from a URL or from the seed documents' cloud config sections.

Cloud client libraries are imported only inside the branch that opens their scheme, so the
embedded default (a folder) never pays for boto3, azure or google imports, and a missing
extra is reported as "install weightvault[s3]" instead of an ImportError at startup.
"""

from __future__ import annotations

import inspect
import threading
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from weightvault.core.errors import ConfigError
from weightvault.storage.backend import Backend

#: Option names every cloud backend understands, turned into a ``RetryPolicy``.
RETRY_OPTIONS = ("retry_attempts", "retry_base_delay", "retry_max_delay", "retry_deadline")

_memory_stores: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()
_memory_lock = threading.Lock()


def open_backend(url: str, **options: Any) -> Backend:
    """``file:///abs``, a plain path, ``memory://name``, ``s3://``, ``gs://`` or ``az://bucket/prefix``.

    Options go to the backend's constructor (see each backend), plus ``retry_*`` for clouds.
    """
    if not url:
        raise ConfigError("empty storage URL")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in ("", "file") or (len(scheme) == 1 and url[1:2] == ":"):  # path, or a Windows drive
        return _open_local(url, parts.netloc, parts.path, scheme, options)
    if scheme == "memory":
        return _open_memory(parts.netloc + parts.path, options)
    if parts.query or parts.fragment:
        raise ConfigError(f"storage URL {url!r} must not have a query or fragment")
    bucket, prefix = parts.netloc, unquote(parts.path)
    if not bucket:
        raise ConfigError(f"storage URL {url!r} names no bucket or container")
    if scheme == "s3":
        return _open_s3(bucket, prefix, options)
    if scheme in ("gs", "gcs"):
        return _open_gcs(bucket, prefix, options)
    if scheme in ("az", "azure"):
        return _open_azure(bucket, prefix, options)
    raise ConfigError(f"unknown storage URL scheme {scheme!r} in {url!r} (file, memory, s3, gs, az)")


def backend_from_seed_config(section_name: str, section: Mapping[str, Any], **options: Any) -> Backend:
    """A backend from a seed-style config section (``aws``, ``gcp``, ``azure``, ``local``).

    ``aws: {region, endpoint_url, model_weights: {s3_bucket, prefix?}}``,
    ``gcp: {project_id, endpoint_url, model_weights: {gcs_bucket, prefix?}}``,
    ``azure: {connection_string | account_url, model_weights: {container, prefix?}}``,
    ``local: {path}``. Extra ``options`` win over the section (e.g. a test's retry budget).
    """
    name = section_name.lower()
    weights = section.get("model_weights") or {}
    if not isinstance(weights, Mapping):
        raise ConfigError(f"{section_name}.model_weights must be a mapping")
    prefix = str(weights.get("prefix", ""))

    def need(field: str) -> str:
        value = weights.get(field)
        if not value:
            raise ConfigError(f"{section_name}.model_weights.{field} is required")
        return str(value)

    def pick(*keys: str) -> dict[str, Any]:
        return {k: section[k] for k in keys if section.get(k) is not None}

    if name in ("aws", "s3"):
        opts = pick(
            "region", "endpoint_url", "profile", "access_key_id", "secret_access_key", "session_token"
        )
        return _open_s3(need("s3_bucket"), prefix, {**opts, **options})
    if name in ("gcp", "gcs"):
        opts = pick("endpoint_url", "credentials_file", "anonymous")
        if section.get("project_id"):
            opts["project_id"] = section["project_id"]
        return _open_gcs(need("gcs_bucket"), prefix, {**opts, **options})
    if name in ("azure", "az"):
        opts = pick("connection_string", "account_url", "account_key", "sas_token")
        return _open_azure(need("container"), prefix, {**opts, **options})
    if name == "local":
        path = section.get("path") or section.get("root")
        if not path:
            raise ConfigError(f"{section_name}.path is required")
        return _open_local(str(path), "", str(path), "", options)
    raise ConfigError(f"unknown storage section {section_name!r} (aws, gcp, azure, local)")


# -- one opener per scheme; each imports its client library only when called ------------------


def _open_local(url: str, netloc: str, path: str, scheme: str, options: dict[str, Any]) -> Backend:
    from weightvault.storage.local import LocalBackend

    if scheme == "file":
        if netloc not in ("", "localhost"):
            raise ConfigError(f"file URL {url!r} names a remote host")
        path = unquote(path)
        if not path.startswith("/"):
            raise ConfigError(f"file URL {url!r} must hold an absolute path")
    else:
        path = url
    _no_options("local", options)
    return LocalBackend(Path(path).expanduser())


def _open_memory(name: str, options: dict[str, Any]) -> Backend:
    """The same name reopens the same store while anything still holds it, like a URL should."""
    from weightvault.storage.memory import MemoryBackend

    _no_options("memory", options)
    name = name.strip("/") or "default"
    with _memory_lock:
        store = _memory_stores.get(name)
        if store is None:
            store = MemoryBackend(name)
            _memory_stores[name] = store
        return store


def _open_s3(bucket: str, prefix: str, options: dict[str, Any]) -> Backend:
    try:
        from weightvault.storage.s3 import S3Backend
    except ImportError as exc:
        raise _missing_extra("s3", "s3", exc) from exc
    return _construct(S3Backend, "s3", bucket, prefix, options)


def _open_gcs(bucket: str, prefix: str, options: dict[str, Any]) -> Backend:
    try:
        from weightvault.storage.gcs import GCSBackend
    except ImportError as exc:
        raise _missing_extra("gs", "gcs", exc) from exc
    return _construct(GCSBackend, "gcs", bucket, prefix, options)


def _open_azure(container: str, prefix: str, options: dict[str, Any]) -> Backend:
    try:
        from weightvault.storage.azure import AzureBackend
    except ImportError as exc:
        raise _missing_extra("az", "azure", exc) from exc
    return _construct(AzureBackend, "azure", container, prefix, options)


def _construct(cls: Any, provider: str, bucket: str, prefix: str, options: dict[str, Any]) -> Backend:
    from weightvault.storage.retry import RetryPolicy

    options = dict(options)
    retry = options.pop("retry", None)
    if any(k in options for k in RETRY_OPTIONS):
        retry = RetryPolicy.from_options({k: options.pop(k, None) for k in RETRY_OPTIONS})
    unknown = set(options) - set(inspect.signature(cls).parameters)
    if unknown:
        raise ConfigError(f"{provider}: unknown storage option(s) {sorted(unknown)}")
    backend: Backend = cls(bucket, prefix, retry=retry, **options)
    return backend


def _no_options(kind: str, options: dict[str, Any]) -> None:
    unknown = set(options) - {"create", *RETRY_OPTIONS}  # harmless for stores without a network
    if unknown:
        raise ConfigError(f"{kind} storage takes no options {sorted(unknown)}")


def _missing_extra(scheme: str, extra: str, exc: ImportError) -> ConfigError:
    return ConfigError(
        f"{scheme}:// storage needs the '{extra}' extra: pip install 'weightvault[{extra}]' ({exc})"
    )
