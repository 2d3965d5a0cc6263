"""Wrapping under a local 32-byte KEK, shared by the file, environment and passphrase providers.

Wrapped layout: ``version(1) = 1 | nonce(12) | AES-256-GCM(data key)(32) | tag(16)``, with
the KEK's fingerprint as associated data.
"""

from __future__ import annotations

import base64
import binascii
import os
from typing import Any, Final

import blake3
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from weightvault.keys.provider import KeyProviderConfigError, WrongKeyError

KEK_LEN: Final = 32
_VERSION: Final = 1
_WRAPPED_LEN: Final = 1 + 12 + 32 + 16
_CTX_FINGERPRINT: Final = "weightvault 2026-11 kek fingerprint v1"
_AAD: Final = b"weightvault kek wrap v1\x00"


def kek_fingerprint(kek: bytes) -> str:
    """A public id for a KEK (32 hex chars) that says nothing about the key."""
    return blake3.blake3(kek, derive_key_context=_CTX_FINGERPRINT).digest()[:16].hex()


def decode_kek(provider: str, text: str | bytes, where: str) -> bytes:
    """A base64 KEK as found in a key file or variable; a clear error if it is not one."""
    try:
        kek = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise KeyProviderConfigError(provider, f"{where} is not base64") from None
    if len(kek) != KEK_LEN:
        raise KeyProviderConfigError(provider, f"{where} holds {len(kek)} bytes, a key is {KEK_LEN}")
    return kek


class SymmetricKekProvider:
    """Base of providers whose KEK is 32 bytes in this process."""

    name: str = "symmetric"
    #: Appended to wrong-key errors, e.g. "wrong passphrase?".
    wrong_key_hint: str = ""

    def __init__(self, kek: bytes) -> None:
        if len(kek) != KEK_LEN:
            raise KeyProviderConfigError(self.name, f"a KEK is {KEK_LEN} bytes, got {len(kek)}")
        self._aead = AESGCM(kek)
        self._key_id = kek_fingerprint(kek)

    @property
    def key_id(self) -> str:
        return self._key_id

    def _aad(self) -> bytes:
        return _AAD + self._key_id.encode()

    def wrap(self, data_key: bytes) -> bytes:
        if len(data_key) != 32:
            raise KeyProviderConfigError(self.name, f"data keys are 32 bytes, got {len(data_key)}")
        nonce = os.urandom(12)
        return bytes([_VERSION]) + nonce + self._aead.encrypt(nonce, bytes(data_key), self._aad())

    def unwrap(self, wrapped: bytes) -> bytes:
        if len(wrapped) != _WRAPPED_LEN or wrapped[0] != _VERSION:
            raise WrongKeyError(self.name, "wrapped key is not in this provider's format")
        try:
            return self._aead.decrypt(wrapped[1:13], wrapped[13:], self._aad())
        except InvalidTag:
            raise WrongKeyError(
                self.name,
                f"the data key was not wrapped with this KEK or is damaged{self.wrong_key_hint}",
            ) from None

    def params(self) -> dict[str, Any]:  # pragma: no cover - every subclass overrides
        raise NotImplementedError
