"""Attacks by someone who can write the bucket but holds no key (docs/security.md).

Each test plays the attacker on a local folder store (the bucket), then the victim's normal
command, and checks that the victim refuses, writes nothing under the attacker's keys and leaks
nothing.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from weightvault.cas.encryption import DataKey
from weightvault.core.errors import ConfigError, IntegrityError, WeightvaultError
from weightvault.keys import KeyProvider, KeyProviderConfigError, open_key_provider, wrap_data_key
from weightvault.keys._symmetric import kek_fingerprint
from weightvault.keys.passphrase import PassphraseKeyProvider
from weightvault.keys.passphrase import _derive as derive_kek
from weightvault.vault.keyring import Domain, KeyringRecord, SlotRecord, keyring_key
from weightvault.vault.vault import Vault

from ..conftest import run_cli

OWASP_ARGON = {"memory_kib": 19456, "iterations": 2, "lanes": 1}


def forge_keyring(vault: Vault, model: str, provider: KeyProvider, recorded: dict[str, Any]) -> None:
    """Write a well-formed keyring for ``model`` whose keys the attacker made and holds."""
    id_key, data_key = DataKey.generate(), DataKey.generate()
    rec = KeyringRecord(
        model=model,
        created="2026-11-01T00:00:00+00:00",
        provider=recorded,
        id_key=wrap_data_key(provider, id_key),
        slots=(SlotRecord(1, "active", "2026-11-01T00:00:00+00:00", wrap_data_key(provider, data_key)),),
        generation=1,
    )
    rec = rec.sealed(Domain(rec, id_key, {1: data_key}).mac_key)
    vault.primary.put(keyring_key(model), rec.to_bytes())


def packs(vault: Vault) -> set[str]:
    return {i.key for i in vault.backend.list("packs/")}


# ---------------------------------------------------------------- the bucket chooses the provider


def test_forged_keyring_naming_a_passphrase_from_another_variable_is_refused(
    home: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "true")  # the attacker guesses what the victim's environment holds
    attacker = PassphraseKeyProvider.create("true", cost=OWASP_ARGON)
    with Vault.open(home, encryption={"enabled": True}) as v:
        v.push("mine", model_dir)
        forge_keyring(v, "victim-model", attacker, {**attacker.params(), "passphrase_env": "CI"})
        before = packs(v)
        with pytest.raises(WeightvaultError, match="no configured key provider") as info:
            v.push("victim-model", model_dir)
        assert isinstance(info.value, IntegrityError)
        assert packs(v) == before  # nothing sealed under the attacker's keys
        assert v.index.list_model_names() == ["mine"]


class _Recorder(http.server.BaseHTTPRequestHandler):
    calls: list[str] = []  # noqa: RUF012 - shared by the handler instances of one server

    def do_POST(self) -> None:
        self.calls.append(self.headers.get("X-Amz-Target", ""))
        self.send_response(500)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def attacker_endpoint() -> Iterator[tuple[str, list[str]]]:
    calls: list[str] = []
    handler = type("Handler", (_Recorder,), {"calls": calls})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", calls
    server.shutdown()
    server.server_close()


def test_forged_keyring_naming_a_kms_endpoint_never_reaches_it(
    home: Path, model_dir: Path, attacker_endpoint: tuple[str, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, calls = attacker_endpoint
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "victim")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "victim-secret")
    attacker = PassphraseKeyProvider.create("x", cost=OWASP_ARGON)
    with Vault.open(home, encryption={"enabled": True}) as v:
        forge_keyring(v, "m", attacker, {"type": "aws_kms", "key_id": "alias/evil", "endpoint_url": url})
        # the record says aws_kms; make the wrapped keys say so too, as a real forgery would
        ring = v.primary.get(keyring_key("m")).replace(b'"provider":"passphrase"', b'"provider":"aws_kms"')
        v.primary.put(keyring_key("m"), ring)
        with pytest.raises(WeightvaultError):
            v.push("m", model_dir)
        with pytest.raises(WeightvaultError):
            v.recover()
    assert calls == []  # no Decrypt signed with the victim's credentials went to the attacker


# ---------------------------------------------------------------- KDF cost and what errors print


def test_weak_kdf_parameters_are_refused_wherever_they_come_from(
    home: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WV_PW", "correct horse battery staple")
    for weak in ({"memory_kib": 8, "iterations": 1, "lanes": 1}, {"memory_kib": 19455, "iterations": 2}):
        with pytest.raises(KeyProviderConfigError, match="OWASP"):
            open_key_provider({"type": "passphrase", "passphrase_env": "WV_PW", "salt": "A" * 24, **weak})
    with pytest.raises(KeyProviderConfigError, match="OWASP"):
        open_key_provider(
            {"type": "passphrase", "passphrase": "pw", "salt": "A" * 24, "kdf": "scrypt", "log2_n": 10}
        )
    provider = {"type": "passphrase", "passphrase_env": "WV_PW", **OWASP_ARGON}
    with Vault.open(home, encryption={"enabled": True, "provider": provider}) as v:
        v.push("m", model_dir, version="v1")
        # the attacker rewrites the keyring's recorded cost down to 8 KiB and one pass
        weak = {**dict(v.keys.record("m").provider), "memory_kib": 8, "iterations": 1}  # type: ignore[union-attr]
        forge_keyring(v, "m", PassphraseKeyProvider.create("guess", cost=OWASP_ARGON), weak)
        weak_kek_id = kek_fingerprint(
            derive_kek(b"correct horse battery staple", {**weak, "kdf": "argon2id"})
        )
        configured = v.keys.configured()
    with (
        Vault.open(home, encryption={"enabled": True, "provider": provider}) as v,
        pytest.raises(WeightvaultError) as info,
    ):
        v.pull("m@v1", home.parent / "out")
    message = str(info.value)
    # neither the fingerprint of a key derived with the bucket's weak cost, nor the configured one
    assert weak_kek_id not in message and configured.key_id not in message


def test_malformed_config_error_does_not_echo_the_line(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    secret = "hunter2: very-secret"  # the colon makes the line malformed YAML
    (home / "config.yaml").write_text(
        f"encryption:\n  enabled: true\n  provider:\n    type: passphrase\n    passphrase: {secret}\n"
    )
    with pytest.raises(ConfigError) as info:
        Vault.open(home)
    assert "hunter2" not in str(info.value) and "line 5" in str(info.value)
    r = run_cli(home, "ls")
    assert r.returncode == 4 and "hunter2" not in r.stderr + r.stdout


# ---------------------------------------------------------------- no downgrade, no replayed keyring


def store_listing(vault: Vault) -> set[str]:
    return {i.key for i in vault.backend.list("")}


def test_deleted_keyring_is_an_error_never_a_plain_model(home: Path, model_dir: Path, tmp_path: Path) -> None:
    with Vault.open(home, encryption={"enabled": True}) as v:
        v.push("m", model_dir, version="v1")
        v.primary.delete(keyring_key("m"))  # the attacker
        before = store_listing(v)
    # the victim's next push comes from a client without encryption configured
    with Vault.open(home) as v:
        with pytest.raises(IntegrityError, match="keyring is missing"):
            v.push("m", model_dir, version="v2")
        with pytest.raises(IntegrityError, match="keyring is missing"):
            v.pull("m@v1", tmp_path / "out")
        assert store_listing(v) == before  # no plain pack, recipe, manifest or ref was written
    with Vault.open(home, encryption={"enabled": True}) as v, pytest.raises(IntegrityError, match="missing"):
        v.push("m", model_dir, version="v2")  # nor a fresh domain that would orphan v1


def test_replaced_keyring_is_refused(home: Path, model_dir: Path, tmp_path: Path) -> None:
    other_home = tmp_path / "other-home"
    with Vault.open(home, encryption={"enabled": True}) as v:
        v.push("m", model_dir, version="v1")
        key_file = home / "keys" / "kek.key"
    # someone with the same KEK but no memory of m deletes its keyring and makes a new domain
    enc = {"enabled": True, "provider": {"type": "local_file", "path": str(key_file)}}
    with Vault.open(other_home, store_url=f"file://{home / 'store'}", encryption=enc) as w:
        w.primary.delete(keyring_key("m"))
        w.push("m", model_dir, version="v2")
    with (
        Vault.open(home, encryption={"enabled": True}) as v,
        pytest.raises(IntegrityError, match="another id key"),
    ):
        v.pull("m@v1", tmp_path / "out")


def test_old_keyring_put_back_after_reencrypt_is_refused(home: Path, model_dir: Path, tmp_path: Path) -> None:
    with Vault.open(home, encryption={"enabled": True}) as v:
        v.push("m", model_dir, version="v1")
        old = v.primary.get(keyring_key("m"))
        v.rotate_keys("m", reencrypt=True)
        v.gc(grace_seconds=0)
        v.primary.put(keyring_key("m"), old)  # the attacker replays the copy they saved
        before = store_listing(v)
    with Vault.open(home, encryption={"enabled": True}) as v:
        with pytest.raises(IntegrityError, match="older than generation"):
            v.push("m", model_dir, version="v2")
        assert store_listing(v) == before
