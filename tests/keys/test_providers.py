from __future__ import annotations

import base64
import os
import socket
import stat
from pathlib import Path
from typing import Any

import pytest

from weightvault.cas.encryption import DataKey
from weightvault.core.errors import ConfigError, CredentialsError, FormatError, exit_code_for
from weightvault.keys import (
    KeyNotFoundError,
    KeyProvider,
    KeyProviderConfigError,
    KeyProviderError,
    KeyProviderUnavailableError,
    WrappedKey,
    WrongKeyError,
    available_provider_types,
    open_key_provider,
    rewrap_data_key,
    unwrap_data_key,
    wrap_data_key,
)
from weightvault.keys.env import EnvKeyProvider, generate_key_text
from weightvault.keys.local_file import LocalFileKeyProvider
from weightvault.keys.passphrase import PassphraseKeyProvider

FAST_ARGON = {"memory_kib": 19456, "iterations": 2, "lanes": 1}  # OWASP's minimum: the cheapest allowed


def round_trip(provider: KeyProvider) -> WrappedKey:
    dk = DataKey.generate()
    w = wrap_data_key(provider, dk)
    assert dk.material not in w.wrapped
    assert w.provider == provider.name and w.kek_id == provider.key_id and w.key_id == dk.key_id
    assert unwrap_data_key(provider, w) == dk
    assert isinstance(provider, KeyProvider)
    return w


# ---------------------------------------------------------------- local file


def test_local_file_created_0600_and_reopened(tmp_path: Path) -> None:
    path = tmp_path / "kek"
    p = LocalFileKeyProvider.create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    w = round_trip(p)
    again = open_key_provider(p.params())
    assert again.key_id == p.key_id
    assert unwrap_data_key(again, w).key_id == w.key_id
    with pytest.raises(KeyProviderConfigError, match="refusing to overwrite"):
        LocalFileKeyProvider.create(path)


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644])
def test_local_file_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "kek"
    LocalFileKeyProvider.create(path)
    path.chmod(mode)
    with pytest.raises(KeyProviderConfigError) as info:
        LocalFileKeyProvider(path)
    assert "local_file" in str(info.value) and "chmod 600" in str(info.value)
    assert info.value.provider == "local_file"


def test_local_file_missing_or_garbled(tmp_path: Path) -> None:
    with pytest.raises(KeyNotFoundError) as info:
        open_key_provider({"type": "local_file", "path": str(tmp_path / "nope")})
    assert "local_file" in str(info.value) and "nope" in str(info.value)
    bad = tmp_path / "bad"
    bad.write_text("not base64 !!")
    bad.chmod(0o600)
    with pytest.raises(KeyProviderConfigError, match="not base64"):
        LocalFileKeyProvider(bad)
    bad.write_text(base64.b64encode(b"x" * 16).decode())
    with pytest.raises(KeyProviderConfigError, match="16 bytes"):
        LocalFileKeyProvider(bad)


def test_wrong_local_key_names_provider(tmp_path: Path) -> None:
    w = round_trip(LocalFileKeyProvider.create(tmp_path / "a"))
    other = LocalFileKeyProvider.create(tmp_path / "b")
    with pytest.raises(WrongKeyError) as info:
        unwrap_data_key(other, w)
    msg = str(info.value)
    # names the provider, never a fingerprint of a local KEK (for a passphrase it would be an oracle)
    assert "local_file" in msg and w.kek_id not in msg and other.key_id not in msg
    assert isinstance(info.value, CredentialsError)


# ---------------------------------------------------------------- environment


def test_env_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WV_TEST_KEK", generate_key_text())
    p = open_key_provider({"type": "env", "variable": "WV_TEST_KEK"})
    w = round_trip(p)
    assert p.params() == {"type": "env", "variable": "WV_TEST_KEK"}
    monkeypatch.setenv("WV_TEST_KEK", generate_key_text())
    with pytest.raises(WrongKeyError, match="'env'"):
        unwrap_data_key(open_key_provider({"type": "env", "variable": "WV_TEST_KEK"}), w)
    monkeypatch.delenv("WV_TEST_KEK")
    with pytest.raises(KeyNotFoundError) as info:
        EnvKeyProvider("WV_TEST_KEK")
    assert "env" in str(info.value) and "WV_TEST_KEK" in str(info.value)
    with pytest.raises(KeyProviderConfigError, match="not base64"):
        EnvKeyProvider("X", environ={"X": "%%%"})


# ---------------------------------------------------------------- passphrase


@pytest.mark.parametrize(
    ("kdf", "cost"), [("argon2id", FAST_ARGON), ("scrypt", {"log2_n": 14, "r": 8, "p": 5})]
)
def test_passphrase_provider(kdf: str, cost: dict[str, int], monkeypatch: pytest.MonkeyPatch) -> None:
    p = PassphraseKeyProvider.create("correct horse battery staple", kdf=kdf, cost=cost)
    params = p.params()
    assert params["type"] == "passphrase" and params["kdf"] == kdf and "salt" in params
    assert "correct horse" not in repr(params)
    w = round_trip(p)
    same = open_key_provider({**params, "passphrase": "correct horse battery staple"})
    assert same.key_id == p.key_id and unwrap_data_key(same, w).key_id == w.key_id
    monkeypatch.setenv("WEIGHTVAULT_PASSPHRASE", "correct horse battery staple")
    assert open_key_provider(params).key_id == p.key_id
    wrong = open_key_provider({**params, "passphrase": "Tr0ub4dor&3"})
    with pytest.raises(WrongKeyError, match="wrong passphrase"):
        unwrap_data_key(wrong, w)
    other_salt = PassphraseKeyProvider.create("correct horse battery staple", kdf=kdf, cost=cost)
    assert other_salt.key_id != p.key_id


def test_passphrase_missing_or_bad_params(monkeypatch: pytest.MonkeyPatch) -> None:
    params = PassphraseKeyProvider.create("pw", cost=FAST_ARGON).params()
    monkeypatch.delenv("WEIGHTVAULT_PASSPHRASE", raising=False)
    with pytest.raises(KeyNotFoundError, match="passphrase"):
        open_key_provider(params)
    for bad in ({"salt": "c2hvcnQ="}, {"memory_kib": 1 << 40}, {"kdf": "md5"}, {"iterations": True}):
        with pytest.raises(KeyProviderConfigError):
            open_key_provider({**params, "passphrase": "pw", **bad})


def test_passphrase_is_unicode_normalized() -> None:
    params = PassphraseKeyProvider.create("caf\u00e9", cost=FAST_ARGON).params()
    composed = open_key_provider({**params, "passphrase": "caf\u00e9"})
    decomposed = open_key_provider({**params, "passphrase": "cafe\u0301"})
    assert composed.key_id == decomposed.key_id


def test_default_argon2_cost_is_memory_hard() -> None:
    p = PassphraseKeyProvider.create("pw")
    assert p.params()["memory_kib"] >= 64 * 1024 and p.params()["kdf"] == "argon2id"


# ---------------------------------------------------------------- envelope, rotation, factory


def test_kek_rotation_rewraps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old = LocalFileKeyProvider.create(tmp_path / "old")
    monkeypatch.setenv("WV_NEW_KEK", generate_key_text())
    new = EnvKeyProvider("WV_NEW_KEK")
    dk = DataKey.generate()
    w_old = wrap_data_key(old, dk)
    w_new = rewrap_data_key(w_old, old, new)
    assert w_new.provider == "env" and w_new.key_id == dk.key_id and w_new.wrapped != w_old.wrapped
    assert unwrap_data_key(new, w_new) == dk
    with pytest.raises(WrongKeyError):
        unwrap_data_key(old, w_new)


def test_wrapped_key_record_round_trip() -> None:
    w = WrappedKey("ab" * 16, "env", "cd" * 16, os.urandom(61))
    assert WrappedKey.from_dict(w.to_dict()) == w
    for bad in ({}, {**w.to_dict(), "wrapped": "%%"}, {**w.to_dict(), "kek_id": 3}):
        with pytest.raises(FormatError):
            WrappedKey.from_dict(bad)


class LyingProvider:
    """Unwraps to the wrong bytes without complaint (a broken plug-in, a mixed-up key)."""

    name = "liar"
    key_id = "k"

    def wrap(self, data_key: bytes) -> bytes:
        return b"w"

    def unwrap(self, wrapped: bytes) -> bytes:
        return os.urandom(32)

    def params(self) -> dict[str, Any]:
        return {"type": "liar"}


def test_unwrap_checks_the_fingerprint() -> None:
    w = wrap_data_key(LyingProvider(), DataKey.generate())
    with pytest.raises(WrongKeyError, match="gave another key"):
        unwrap_data_key(LyingProvider(), w)


def test_factory_lists_and_refuses_unknown_types() -> None:
    assert {"local_file", "passphrase", "env", "aws_kms"} <= set(available_provider_types())
    for bad in ({"type": "gcp_kms"}, {"type": "provider"}, {"type": "../x"}, {}):
        with pytest.raises(KeyProviderConfigError) as info:
            open_key_provider(bad)
        assert "local_file" in str(info.value)
        assert isinstance(info.value, ConfigError) and exit_code_for(info.value) == 4
    with pytest.raises(KeyProviderConfigError, match="path"):
        open_key_provider({"type": "local_file"})


# ---------------------------------------------------------------- AWS KMS on moto's server


@pytest.fixture(scope="module")
def kms_endpoint(moto_endpoint: str) -> str:
    return moto_endpoint


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for k in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")


def new_kms_key(endpoint: str) -> str:
    import boto3

    kms = boto3.client("kms", endpoint_url=endpoint, region_name="us-east-1")
    return str(kms.create_key(Description="weightvault test KEK")["KeyMetadata"]["KeyId"])


def test_aws_kms_wrap_unwrap(kms_endpoint: str, aws_env: None) -> None:
    key = new_kms_key(kms_endpoint)
    config = {"type": "aws_kms", "key_id": key, "endpoint_url": kms_endpoint, "region": "us-east-1"}
    p = open_key_provider(config)
    assert p.params() == config and p.key_id == key
    w = round_trip(p)
    other = open_key_provider({**config, "key_id": new_kms_key(kms_endpoint)})
    # AWS answers IncorrectKeyException (-> WrongKeyError); moto answers AccessDeniedException.
    with pytest.raises(KeyProviderError) as info:
        unwrap_data_key(other, w)
    assert "aws_kms" in str(info.value) and other.key_id in str(info.value)
    with pytest.raises(KeyProviderError, match="aws_kms"):
        p.unwrap(b"\0" * 64)


def test_aws_kms_missing_key(kms_endpoint: str, aws_env: None) -> None:
    missing = open_key_provider(
        {"type": "aws_kms", "key_id": "11111111-2222-3333-4444-555555555555", "endpoint_url": kms_endpoint}
    )
    with pytest.raises(KeyNotFoundError) as info:
        missing.wrap(os.urandom(32))
    assert "aws_kms" in str(info.value) and "11111111" in str(info.value)


def test_aws_kms_bad_profile(aws_env: None) -> None:
    with pytest.raises(KeyProviderConfigError, match="aws_kms"):
        open_key_provider({"type": "aws_kms", "key_id": "k", "profile": "no-such-profile-xyz"})


def test_aws_kms_unreachable(aws_env: None) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again below: nothing listens there
    p = open_key_provider({"type": "aws_kms", "key_id": "k", "endpoint_url": f"http://127.0.0.1:{port}"})
    with pytest.raises(KeyProviderUnavailableError, match="aws_kms"):
        p.wrap(os.urandom(32))
