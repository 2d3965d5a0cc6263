"""Wrapped data keys: the record stored beside encrypted data, and KEK rotation.

A :class:`WrappedKey` is safe to store in the bucket: it holds the data key only encrypted
under a provider's KEK, plus the public fingerprints needed to say which key is which.
Rotating a KEK is :func:`rewrap_data_key` on each record: the blobs stay as they are.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from weightvault.cas.encryption import KEY_LEN, DataKey, data_key_id
from weightvault.core.errors import FormatError
from weightvault.keys.provider import KeyProvider, WrongKeyError


@dataclass(frozen=True, slots=True)
class WrappedKey:
    """A data key wrapped by ``provider`` under the KEK ``kek_id``."""

    key_id: str
    provider: str
    kek_id: str
    wrapped: bytes

    def to_dict(self) -> dict[str, str]:
        return {
            "key_id": self.key_id,
            "provider": self.provider,
            "kek_id": self.kek_id,
            "wrapped": base64.b64encode(self.wrapped).decode(),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> WrappedKey:
        try:
            fields = {k: d[k] for k in ("key_id", "provider", "kek_id", "wrapped")}
            if not all(isinstance(v, str) for v in fields.values()):
                raise TypeError
            wrapped = base64.b64decode(fields["wrapped"], validate=True)
        except (KeyError, TypeError, binascii.Error, ValueError):
            raise FormatError("malformed wrapped-key record") from None
        return cls(fields["key_id"], fields["provider"], fields["kek_id"], wrapped)


def wrap_data_key(provider: KeyProvider, data_key: DataKey) -> WrappedKey:
    return WrappedKey(data_key.key_id, provider.name, provider.key_id, provider.wrap(data_key.material))


def unwrap_data_key(provider: KeyProvider, wrapped: WrappedKey) -> DataKey:
    """The data key, checked against its fingerprint; errors name the provider, never a KEK id."""
    # Never the provider's own key id: for a passphrase it is a fingerprint of the derived key.
    where = f"data key {wrapped.key_id} (wrapped by {wrapped.provider})"
    try:
        material = provider.unwrap(wrapped.wrapped)
    except WrongKeyError as e:
        raise WrongKeyError(provider.name, f"{where}: {e.detail}") from None
    if len(material) != KEY_LEN or data_key_id(material) != wrapped.key_id:
        raise WrongKeyError(provider.name, f"{where}: unwrapping with the configured key gave another key")
    return DataKey(wrapped.key_id, material)


def rewrap_data_key(wrapped: WrappedKey, old: KeyProvider, new: KeyProvider) -> WrappedKey:
    """KEK rotation for one data key: unwrap under ``old``, wrap under ``new``."""
    return wrap_data_key(new, unwrap_data_key(old, wrapped))
