"""The key-provider protocol, its errors, and the factory that opens a provider from config.

A provider holds a key-encryption key (KEK) and does two things with it: wrap a data key
(32 bytes) and unwrap it again. The KEK never leaves the provider (with a cloud KMS it
never leaves the cloud). Each provider type is one module ``weightvault.keys.<type>``
defining ``open_provider(config)``, so Google Cloud KMS or Azure Key Vault is one new
module and nothing else changes.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from weightvault.core.errors import BackendUnavailableError, ConfigError, CredentialsError


class KeyProviderError(CredentialsError):
    """A key provider could not give us the key; the message names the provider."""

    code = "key_provider_error"

    def __init__(self, provider: str, message: str) -> None:
        super().__init__(f"key provider {provider!r}: {message}")
        self.provider = provider
        self.detail = message


class KeyNotFoundError(KeyProviderError):
    """The KEK is not there: no key file, no environment variable, no such KMS key."""

    code = "key_not_found"


class WrongKeyError(KeyProviderError):
    """The provider's KEK is not the one the data key was wrapped with (or it is damaged)."""

    code = "wrong_key"


class KeyProviderConfigError(ConfigError):
    """The provider's configuration is unusable (unknown type, bad value, unsafe key file)."""

    code = "key_provider_config"

    def __init__(self, provider: str, message: str) -> None:
        super().__init__(f"key provider {provider!r}: {message}")
        self.provider = provider
        self.detail = message


class KeyProviderUnavailableError(BackendUnavailableError):
    """The provider's service did not answer (network, throttling); retrying may help."""

    code = "key_provider_unavailable"

    def __init__(self, provider: str, message: str) -> None:
        super().__init__(f"key provider {provider!r}: {message}")
        self.provider = provider
        self.detail = message


@runtime_checkable
class KeyProvider(Protocol):
    """Wraps and unwraps data keys under a KEK; implementations are thread-safe."""

    @property
    def name(self) -> str:
        """The provider type, as in the config's ``type`` (``local_file``, ``aws_kms``...)."""
        ...

    @property
    def key_id(self) -> str:
        """Identifies the KEK (a fingerprint, or the KMS key id); not secret."""
        ...

    def wrap(self, data_key: bytes) -> bytes:
        """The data key encrypted under the KEK."""
        ...

    def unwrap(self, wrapped: bytes) -> bytes:
        """The data key; ``WrongKeyError`` if this KEK did not wrap it."""
        ...

    def params(self) -> dict[str, Any]:
        """The config that reopens this provider, without secrets (for the vault's config)."""
        ...


_TYPE_RE = re.compile(r"^[a-z][a-z0-9_]*$")


def available_provider_types() -> list[str]:
    """Provider types that can be named in a config (every module with ``open_provider``)."""
    import weightvault.keys as package

    found = []
    for info in pkgutil.iter_modules(package.__path__):
        if info.name.startswith("_") or info.name in ("provider", "envelope"):
            continue
        found.append(info.name)
    return sorted(found)


def open_key_provider(config: Mapping[str, Any]) -> KeyProvider:
    """Open the provider a config describes: ``{"type": "<module>", ...its params}``."""
    kind = config.get("type")
    if not isinstance(kind, str) or not _TYPE_RE.match(kind) or kind not in available_provider_types():
        raise KeyProviderConfigError(
            str(kind), f"unknown key provider type; known: {', '.join(available_provider_types())}"
        )
    module = importlib.import_module(f"weightvault.keys.{kind}")
    opener = getattr(module, "open_provider", None)
    if opener is None:
        raise KeyProviderConfigError(kind, "module defines no open_provider()")
    provider: KeyProvider = opener(config)
    return provider


def config_str(provider: str, config: Mapping[str, Any], key: str, default: str | None = None) -> str:
    """A required (or defaulted) string parameter, with an error naming the provider."""
    value = config.get(key, default)
    if not isinstance(value, str) or not value:
        raise KeyProviderConfigError(provider, f"parameter {key!r} must be a non-empty string")
    return value


def config_int(provider: str, config: Mapping[str, Any], key: str, default: int, lo: int, hi: int) -> int:
    """A bounded integer parameter: bounds keep a hostile config from exhausting memory."""
    value = config.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise KeyProviderConfigError(provider, f"parameter {key!r} must be an integer in [{lo}, {hi}]")
    return value
