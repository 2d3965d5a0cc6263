"""Key management: providers of key-encryption keys and wrapped data keys (layer 3: I/O).

Blob encryption itself is pure and lives in ``weightvault.cas.encryption``; this package
is where keys come from (files, environment, passphrases, cloud KMS).
"""

from weightvault.keys.envelope import WrappedKey, rewrap_data_key, unwrap_data_key, wrap_data_key
from weightvault.keys.provider import (
    KeyNotFoundError,
    KeyProvider,
    KeyProviderConfigError,
    KeyProviderError,
    KeyProviderUnavailableError,
    WrongKeyError,
    available_provider_types,
    open_key_provider,
)

__all__ = [
    "KeyNotFoundError",
    "KeyProvider",
    "KeyProviderConfigError",
    "KeyProviderError",
    "KeyProviderUnavailableError",
    "WrappedKey",
    "WrongKeyError",
    "available_provider_types",
    "open_key_provider",
    "rewrap_data_key",
    "unwrap_data_key",
    "wrap_data_key",
]
