"""A KEK derived from a passphrase with a memory-hard KDF (Argon2id; scrypt also read).

Memory-hard so that someone holding the bucket and a wrapped key pays about 64 MiB and
0.15 s per guess (defaults, RFC 9106's second recommended profile); anything below OWASP's
minimum is refused. The salt and cost come from the local configuration only (a keyring's
recorded params are never used), so a bucket writer cannot lower them.

Config: ``{"type": "passphrase", "kdf": "argon2id", "salt": "<base64>", "memory_kib": 65536,
"iterations": 3, "lanes": 4}`` plus either ``"passphrase"`` or ``"passphrase_env"`` (the
variable holding it, ``WEIGHTVAULT_PASSPHRASE`` by default).
"""

from __future__ import annotations

import base64
import binascii
import os
import unicodedata
from collections.abc import Mapping
from typing import Any, Final

from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from weightvault.keys._symmetric import KEK_LEN, SymmetricKekProvider
from weightvault.keys.provider import KeyNotFoundError, KeyProviderConfigError, config_int, config_str

NAME = "passphrase"
DEFAULT_PASSPHRASE_ENV: Final = "WEIGHTVAULT_PASSPHRASE"
ARGON2_DEFAULTS: Final = {"memory_kib": 64 * 1024, "iterations": 3, "lanes": 4}
SCRYPT_DEFAULTS: Final = {"log2_n": 17, "r": 8, "p": 1}
#: OWASP's minimum Argon2id cost (Password Storage Cheat Sheet): memory (KiB) needed per number
#: of passes; 5 passes or more need 7 MiB. Anything cheaper is refused, wherever it comes from.
ARGON2_MIN_MEMORY_KIB: Final = {1: 47104, 2: 19456, 3: 12288, 4: 9216}
ARGON2_MIN_MEMORY_KIB_MANY_PASSES: Final = 7168
#: OWASP's minimum scrypt cost: parallelism needed per log2(N), with r >= 8.
SCRYPT_MIN_P: Final = {13: 10, 14: 5, 15: 3, 16: 2}


class PassphraseKeyProvider(SymmetricKekProvider):
    name = NAME
    wrong_key_hint = " (wrong passphrase?)"

    def __init__(self, passphrase: str, kdf_params: Mapping[str, Any]) -> None:
        if not passphrase:
            raise KeyNotFoundError(NAME, "empty passphrase")
        self._kdf_params = _check_kdf_params(kdf_params)
        # NFC, so the same passphrase typed on macOS and on Linux gives the same key.
        text = unicodedata.normalize("NFC", passphrase)
        super().__init__(_derive(text.encode("utf-8"), self._kdf_params))

    @classmethod
    def create(
        cls, passphrase: str, kdf: str = "argon2id", cost: Mapping[str, int] | None = None
    ) -> PassphraseKeyProvider:
        """A provider with a fresh random salt; persist its :meth:`params`."""
        defaults = ARGON2_DEFAULTS if kdf == "argon2id" else SCRYPT_DEFAULTS
        params: dict[str, Any] = {"kdf": kdf, "salt": base64.b64encode(os.urandom(16)).decode()}
        params.update(defaults)
        params.update(cost or {})
        return cls(passphrase, params)

    def params(self) -> dict[str, Any]:
        return {"type": NAME, **self._kdf_params}


def _check_kdf_params(p: Mapping[str, Any]) -> dict[str, Any]:
    kdf = p.get("kdf", "argon2id")
    try:
        salt = base64.b64decode(config_str(NAME, p, "salt"), validate=True)
    except (binascii.Error, ValueError):
        raise KeyProviderConfigError(NAME, "parameter 'salt' is not base64") from None
    if len(salt) < 16:
        raise KeyProviderConfigError(NAME, "the salt must be at least 16 bytes")
    out: dict[str, Any] = {"kdf": kdf, "salt": p["salt"]}
    if kdf == "argon2id":
        out["memory_kib"] = config_int(NAME, p, "memory_kib", ARGON2_DEFAULTS["memory_kib"], 8, 4 << 20)
        out["iterations"] = config_int(NAME, p, "iterations", ARGON2_DEFAULTS["iterations"], 1, 100)
        out["lanes"] = config_int(NAME, p, "lanes", ARGON2_DEFAULTS["lanes"], 1, 64)
        if out["memory_kib"] < 8 * out["lanes"]:
            raise KeyProviderConfigError(NAME, "argon2id needs memory_kib >= 8 * lanes")
        floor = ARGON2_MIN_MEMORY_KIB.get(out["iterations"], ARGON2_MIN_MEMORY_KIB_MANY_PASSES)
        if out["memory_kib"] < floor:
            raise KeyProviderConfigError(
                NAME,
                f"argon2id with {out['iterations']} pass(es) needs memory_kib >= {floor} "
                "(OWASP's minimum); weaker parameters are refused",
            )
    elif kdf == "scrypt":
        out["log2_n"] = config_int(NAME, p, "log2_n", SCRYPT_DEFAULTS["log2_n"], 10, 22)
        out["r"] = config_int(NAME, p, "r", SCRYPT_DEFAULTS["r"], 1, 32)
        out["p"] = config_int(NAME, p, "p", SCRYPT_DEFAULTS["p"], 1, 16)
        need_p = 1 if out["log2_n"] >= 17 else SCRYPT_MIN_P.get(out["log2_n"], 1 << 30)
        if out["r"] < 8 or out["p"] < need_p:
            raise KeyProviderConfigError(
                NAME, "scrypt parameters are below OWASP's minimum (N=2^17, r=8, p=1 or equivalent)"
            )
    else:
        raise KeyProviderConfigError(NAME, f"unknown kdf {kdf!r}; use 'argon2id' or 'scrypt'")
    return out


def _derive(passphrase: bytes, p: Mapping[str, Any]) -> bytes:
    salt = base64.b64decode(p["salt"])
    if p["kdf"] == "argon2id":
        return Argon2id(
            salt=salt,
            length=KEK_LEN,
            iterations=p["iterations"],
            lanes=p["lanes"],
            memory_cost=p["memory_kib"],
        ).derive(passphrase)
    return Scrypt(salt=salt, length=KEK_LEN, n=1 << p["log2_n"], r=p["r"], p=p["p"]).derive(passphrase)


def open_provider(config: Mapping[str, Any]) -> PassphraseKeyProvider:
    passphrase = config.get("passphrase")
    if passphrase is None:
        variable = config_str(NAME, config, "passphrase_env", DEFAULT_PASSPHRASE_ENV)
        passphrase = os.environ.get(variable)
        if not passphrase:
            raise KeyNotFoundError(
                NAME, f"no passphrase given and environment variable {variable} is not set"
            )
    if not isinstance(passphrase, str):
        raise KeyProviderConfigError(NAME, "parameter 'passphrase' must be a string")
    return PassphraseKeyProvider(passphrase, config)
