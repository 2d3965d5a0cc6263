"""Attacks by someone who can write the bucket but holds no key (docs/security.md).

Each test plays the attacker on a local folder store (the bucket), then the victim's normal
command, and checks that the victim refuses, writes nothing under the attacker's keys and leaks
nothing.
"""

from __future__ import annotations

import http.server
import json
import random
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from weightvault.cas.encryption import DataKey
from weightvault.cas.pack import decode_table
from weightvault.core import layout
from weightvault.core.errors import (
    ConcurrentModificationError,
    ConfigError,
    IntegrityError,
    RevisionNotFoundError,
    WeightvaultError,
)
from weightvault.core.manifest import Manifest
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
        w.primary.delete(layout.version_ref_key("m", "v1"))  # else its authenticated ref gives it away
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


# ---------------------------------------------------------------- authenticated refs and manifests


def two_models(home: Path, model_dir: Path, tmp_path: Path) -> dict[str, str]:
    """m@v1, m@v2 (production -> v2) and o@v3, encrypted; returns label -> commit."""
    other = tmp_path / "other-model"
    other.mkdir()
    (other / "weights.bin").write_bytes(b"another model's weights " * 5000)
    with Vault.open(home, encryption={"enabled": True}) as v:
        v1 = v.push("m", model_dir, version="v1").version.commit
        (model_dir / "config.json").write_text('{"hidden_size": 128}')
        v2 = v.push("m", model_dir, version="v2").version.commit
        v.set_alias("m", "production", "v2")
        v3 = v.push("o", other, version="v3").version.commit
    return {"v1": v1, "v2": v2, "v3": v3}


def fresh_machine(home: Path, tmp_path: Path) -> Vault:
    """Another home on the same store with the same KEK (and no pins)."""
    enc = {"enabled": True, "provider": {"type": "local_file", "path": str(home / "keys" / "kek.key")}}
    return Vault.open(tmp_path / "fresh-home", store_url=f"file://{home / 'store'}", encryption=enc)


def put_ref(vault: Vault, key: str, body: dict[str, Any]) -> None:
    vault.primary.put(key, json.dumps(body).encode())


def test_edited_refs_are_refused_by_recover_pull_and_verify(
    home: Path, model_dir: Path, tmp_path: Path
) -> None:
    commits = two_models(home, model_dir, tmp_path)
    with Vault.open(home, encryption={"enabled": True}) as v:
        # the attacker moves production back to v1 and adds m@v3 naming the other model's version
        alias = json.loads(v.primary.get(layout.alias_ref_key("m", "production")))
        put_ref(v, layout.alias_ref_key("m", "production"), {**alias, "label": "v1", "commit": commits["v1"]})
        forged = json.loads(v.primary.get(layout.version_ref_key("o", "v3")))
        put_ref(v, layout.version_ref_key("m", "v3"), {**forged, "model": "m"})
        report = v.verify(read_data=True)
        assert not report.ok and any("production" in p and "MAC" in p for p in report.problems)
    with fresh_machine(home, tmp_path) as w:
        counts = w.recover()
        assert counts["refused_refs"] == 2
        assert w.resolve("m@v2").commit == commits["v2"]
        with pytest.raises(RevisionNotFoundError):
            w.resolve("m@production")  # refused, never the old version
        with pytest.raises(RevisionNotFoundError):
            w.pull("m@v3", tmp_path / "out")  # never the other model's content
        assert not (tmp_path / "out").exists()


def test_plain_ref_slipped_into_an_encrypted_model_is_refused(
    home: Path, model_dir: Path, tmp_path: Path
) -> None:
    commits = two_models(home, model_dir, tmp_path)
    with Vault.open(home) as v:  # an attacker's plain ref, as a client without keys would write it
        body = {"model": "m", "label": "v9", "commit": commits["v1"], "created": "2030-01-01T00:00:00+00:00"}
        put_ref(v, layout.version_ref_key("m", "v9"), body)
    with fresh_machine(home, tmp_path) as w:
        assert w.recover()["refused_refs"] == 1
        assert [x.label for x in w.list_versions("m")] == ["v2", "v1"]


def test_swapped_manifests_are_refused(home: Path, model_dir: Path, tmp_path: Path) -> None:
    commits = two_models(home, model_dir, tmp_path)
    with Vault.open(home, encryption={"enabled": True}) as v:
        one, two = (v.primary.get(layout.manifest_key(commits[x])) for x in ("v1", "v2"))
        v.primary.put(layout.manifest_key(commits["v1"]), two)
        v.primary.put(layout.manifest_key(commits["v2"]), one)
        v.primary.put(layout.manifest_key(commits["v3"]), one)  # and into the other model
        report = v.verify()
        assert {"m@v1", "m@v2", "o@v3"} <= set(report.affected_versions)
    with fresh_machine(home, tmp_path) as w:
        counts = w.recover()
        assert counts["versions"] == 0 and counts["skipped"] >= 3


def test_a_plain_models_ref_must_name_a_manifest_of_that_model(
    vault: Vault, model_dir: Path, tmp_path: Path
) -> None:
    other = vault.push("other", model_dir, version="v1").version.commit
    vault.push("m", model_dir, version="v1")
    body = {"model": "m", "label": "v2", "commit": other, "created": "2030-01-01T00:00:00+00:00"}
    put_ref(vault, layout.version_ref_key("m", "v2"), body)
    vault.recover()
    with pytest.raises(RevisionNotFoundError):
        vault.resolve("m@v2")


def test_the_bucket_shows_no_file_hashes_paths_or_guessable_commit_ids(
    home: Path, model_dir: Path, tmp_path: Path
) -> None:
    with Vault.open(home, encryption={"enabled": True}) as v:
        v.push("m", model_dir, version="v1")
        info = v.show("m@v1")
        objects = {i.key: v.backend.get(i.key) for i in v.backend.list("")}
    blob = b"".join(objects.values())
    for f in info.files:
        assert f.sha256.encode() not in blob and bytes.fromhex(f.sha256) not in blob
    assert b"tokenizer/vocab.bin" not in blob and b"config.json" not in blob
    # the commit id is keyed: a guessed manifest's SHA-256 confirms nothing
    plain = Manifest(model="m", files=info.files, parent=None, message="", metadata={}, lineage=())
    assert info.commit != plain.commit_id()


def chunk_lengths(vault: Vault) -> list[int]:
    return sorted(
        e.raw_len for i in vault.backend.list("index/") for e in decode_table(vault.backend.get(i.key))
    )


def test_the_chunker_of_an_encrypted_model_is_keyed(tmp_path: Path) -> None:
    src = tmp_path / "model"
    src.mkdir()
    (src / "weights.bin").write_bytes(random.Random(5).randbytes(6_000_000))
    lengths = []
    for n, enc in enumerate(({"enabled": False}, {"enabled": True}, {"enabled": True})):
        with Vault.open(tmp_path / f"home-{n}", encryption=enc) as v:
            v.push("m", src)
            lengths.append(chunk_lengths(v))
            assert sum(lengths[-1]) == 6_000_000
    public, keyed_a, keyed_b = lengths
    # the public chunker's boundaries (what an attacker computes for a known file) are not there
    assert keyed_a != public and keyed_b != public and keyed_a != keyed_b


# ---------------------------------------------------------------- rotation races and the old KEK


def test_first_push_of_another_model_during_a_rotation_stays_readable(
    home: Path, model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Vault.open(home, encryption={"enabled": True}) as v:
        v.push("a", model_dir, version="v1")
    rotating = Vault.open(home, encryption={"enabled": True})
    other = Vault.open(home, encryption={"enabled": True})
    real_rewrap = rotating.keys.rewrap
    pushed: list[str] = []

    def rewrap_while_another_model_is_pushed(*args: Any, **kw: Any) -> Any:
        if not pushed:  # after the rotation listed the models, before it replaces the key file
            pushed.append(other.push("b", model_dir, version="v1").version.commit)
        return real_rewrap(*args, **kw)

    monkeypatch.setattr(rotating.keys, "rewrap", rewrap_while_another_model_is_pushed)
    old_key = (home / "keys" / "kek.key").read_bytes()
    report = rotating.rotate_keys()
    assert pushed and report.replaced_key_file and (home / "keys" / "kek.key").read_bytes() != old_key
    # and a push that opened the old key before the rotation but makes its keyring after it
    other.push("c", model_dir, version="v1")
    rotating.close()
    other.close()
    with Vault.open(home, encryption={"enabled": True}, cache_enabled=False) as v:
        for m in ("a", "b", "c"):
            v.pull(f"{m}@v1", tmp_path / f"out-{m}")
            assert (tmp_path / f"out-{m}" / "config.json").read_bytes() == (
                model_dir / "config.json"
            ).read_bytes()


def test_old_kek_is_kept_while_a_replica_keyring_needs_it(
    home: Path, model_dir: Path, tmp_path: Path
) -> None:
    backup = tmp_path / "backup"
    opts: dict[str, Any] = {
        "encryption": {"enabled": True},
        "replicas": {"backup": backup.as_uri()},
        "sync_enabled": True,
        "cache_enabled": False,
    }
    key_file = home / "keys" / "kek.key"
    with Vault.open(home, **opts) as v:
        v.push("m", model_dir, version="v1")
        old_key = key_file.read_bytes()
        # the backup cannot take the new keyring (here: its keys folder is in the way)
        saved = (backup / "keys").rename(tmp_path / "saved-keys")
        (backup / "keys").write_text("in the way")
        report = v.rotate_keys()
        assert report.replaced_key_file is None and report.kept_old_key_file == str(key_file)
        assert report.old_key_needed_by and all(p.startswith("backup") for p in report.old_key_needed_by)
        assert key_file.read_bytes() == old_key  # the old KEK still opens the backup's copy
        v.pull("m@v1", tmp_path / "out1")  # the primary's keyring opens with the staged new key
        (backup / "keys").unlink()
        saved.rename(backup / "keys")
        v.sync()
        report = v.rotate_keys()
        assert report.replaced_key_file == str(key_file) and not report.old_key_needed_by
    assert key_file.read_bytes() != old_key
    ring = KeyringRecord.from_bytes((backup / keyring_key("m")).read_bytes(), "m")
    with Vault.open(home, **opts) as v:
        assert ring.kek_id == v.keys.configured().key_id
        v.pull("m@v1", tmp_path / "out2")


def test_keyring_rewrites_are_conditional(home: Path, model_dir: Path) -> None:
    with Vault.open(home, encryption={"enabled": True}) as v:
        v.push("m", model_dir, version="v1")
    first = Vault.open(home, encryption={"enabled": True})
    second = Vault.open(home, encryption={"enabled": True})
    try:
        d1, d2 = first.keys.domain("m"), second.keys.domain("m")
        assert d1 is not None and d2 is not None
        first.keys.add_data_key(d1, first.keys.configured())
        with pytest.raises(ConcurrentModificationError):
            second.keys.add_data_key(d2, second.keys.configured())  # based on the generation it read
        ring = second.keys.domain("m", refresh=True)
        assert ring is not None and sorted(ring.slots) == [1, 2] and ring.record.generation == 2
    finally:
        first.close()
        second.close()


def test_deleted_keyring_is_noticed_by_a_machine_that_never_saw_the_model(
    home: Path, model_dir: Path, tmp_path: Path
) -> None:
    with Vault.open(home, encryption={"enabled": True}) as v:
        v.push("m", model_dir, version="v1")
        v.primary.delete(keyring_key("m"))  # the attacker
        before = store_listing(v)
    # a fresh home on the same store, no pin, no encryption configured
    with Vault.open(tmp_path / "fresh", store_url=f"file://{home / 'store'}") as w:
        with pytest.raises(IntegrityError, match="keyring is missing"):
            w.push("m", model_dir, version="v2")
        assert store_listing(w) == before
        assert w.recover()["refused_refs"] == 1  # the authenticated ref is not taken as a plain one


def test_deleted_keyring_leaving_only_a_claim_is_noticed(home: Path, model_dir: Path, tmp_path: Path) -> None:
    with Vault.open(home, encryption={"enabled": True}) as v:
        v.push("m", model_dir, version="v1")
        dom = v.keys.domain("m")
        assert dom is not None
        v.keys.add_data_key(dom, v.keys.configured())  # a keyring rewrite: claims generation 2
        kept = sorted(i.key for i in v.primary.list(f"{layout.KEYS}_/m/"))
        assert kept == [keyring_key("m"), f"{layout.KEYS}_/m/keyring.claims/0000000002"]
        # the attacker deletes the keyring and every ref, so no MAC is left to see
        v.primary.delete(keyring_key("m"))
        for info in list(v.primary.list(layout.model_refs_prefix("m"))):
            v.primary.delete(info.key)
        before = store_listing(v)
    with Vault.open(tmp_path / "fresh", store_url=f"file://{home / 'store'}") as w:
        with pytest.raises(IntegrityError, match="keyring is missing"):
            w.push("m", model_dir, version="v2")
        assert store_listing(w) == before


def test_deleted_keyring_is_noticed_from_the_first_listed_ref_alone(
    home: Path, model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Vault.open(home, encryption={"enabled": True}) as v:
        for label in ("v1", "v2", "v3"):
            (model_dir / "config.json").write_text(f'{{"label": "{label}"}}')
            v.push("m", model_dir, version=label)
        v.primary.delete(keyring_key("m"))  # the attacker
        first = next(iter(v.primary.list(layout.model_refs_prefix("m")))).key
        before = store_listing(v)
    # a fresh home: its index knows no version of m (the refresh refuses their authenticated
    # refs), so the listing's first ref is all the check reads
    with Vault.open(tmp_path / "fresh", store_url=f"file://{home / 'store'}") as w:
        with pytest.raises(IntegrityError, match="keyring is missing"):
            w.push("m", model_dir, version="v4")  # its first refresh reads every ref once
        assert w.index.latest_label("m") is None
        read: list[str] = []
        real_get = w.store.backend.get

        def get(key: str) -> bytes:
            if key.startswith(layout.REFS):
                read.append(key)
            return real_get(key)

        monkeypatch.setattr(w.store.backend, "get", get)
        with pytest.raises(IntegrityError, match="keyring is missing"):
            w.push("m", model_dir, version="v4")
        assert read == [first]
        assert store_listing(w) == before


def test_edited_refs_are_refused_by_the_automatic_refresh(
    home: Path, model_dir: Path, tmp_path: Path
) -> None:
    commits = two_models(home, model_dir, tmp_path)
    with Vault.open(home, encryption={"enabled": True}) as v:
        alias = json.loads(v.primary.get(layout.alias_ref_key("m", "production")))
        put_ref(v, layout.alias_ref_key("m", "production"), {**alias, "label": "v1", "commit": commits["v1"]})
    with fresh_machine(home, tmp_path) as w:  # no recover: reading refreshes the index from the store
        assert w.resolve("m@v2").commit == commits["v2"]
        with pytest.raises(WeightvaultError):
            w.pull("m@production", tmp_path / "out")  # refused, never the old version
        assert not (tmp_path / "out").exists()
