"""Encryption at rest: what the bucket sees, tampering, wrong keys, rotation and re-encryption."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from weightvault.cas.compression import ENCRYPTED
from weightvault.core import layout
from weightvault.core.errors import ConcurrentModificationError, CorruptObjectError
from weightvault.demo.synthetic import generate_model
from weightvault.keys import KeyNotFoundError, KeyProviderError, WrongKeyError, open_key_provider
from weightvault.keys.env import generate_key_text
from weightvault.keys.local_file import LocalFileKeyProvider
from weightvault.registry.index import RegistryIndex
from weightvault.testing.safetensors import safetensors_prefix
from weightvault.vault.keyring import KeyringRecord, iter_wrapped, keyring_key, parse_keyring_key
from weightvault.vault.vault import Vault

from ..conftest import tree_bytes, write_random

SENTINEL = b"WV-SENTINEL-\x8f\x13-c0ffee-9d1e"
FAST_ARGON = {"memory_kib": 19456, "iterations": 2, "lanes": 1}  # OWASP's minimum: the cheapest allowed


def sentinel_model(root: Path, size: int = 3_000_000, seed: int = 1) -> Path:
    """Files full of a known pattern (in the weights and in config.json)."""
    root.mkdir(parents=True, exist_ok=True)
    import random

    rng = random.Random(seed)
    for name, n in (("model.safetensors", size), ("extra/weights.bin", size // 3)):
        out = bytearray()
        while len(out) < n:
            out += rng.randbytes(rng.randrange(1000, 40_000)) + SENTINEL * rng.randrange(1, 50)
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        head = safetensors_prefix(n) if name.endswith(".safetensors") else b""
        (root / name).write_bytes(head + bytes(out[: n - len(head)]))
    (root / "config.json").write_text(json.dumps({"note": SENTINEL.decode("latin-1"), "hidden_size": 64}))
    return root


def store_objects(vault: Vault) -> dict[str, bytes]:
    """Every file under the store folder, .tmp included: what someone holding the bucket has."""
    root = vault.settings.store_path
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def listing(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def open_enc(home: Path, **kw: Any) -> Vault:
    kw.setdefault("encryption", {"enabled": True})
    return Vault.open(home, **kw)


@pytest.fixture
def enc_vault(home: Path) -> Iterator[Vault]:
    v = open_enc(home)
    yield v
    v.close()


def keyrings(vault: Vault) -> dict[str, KeyringRecord]:
    out = {}
    for info in vault.backend.list("keys/"):
        model = parse_keyring_key(info.key)
        if model is None:  # the claims of conditional keyring rewrites: digests once written
            assert "/keyring.claims/" in info.key and not info.key.endswith("/keyring")
            assert b"wrapped" not in vault.backend.get(info.key)
            continue
        out[model] = KeyringRecord.from_bytes(vault.backend.get(info.key), model)
    return out


# ---------------------------------------------------------------- what the bucket sees


@pytest.mark.parametrize("compression", ["none", "float"])
def test_no_weight_or_file_bytes_in_any_stored_object(home: Path, tmp_path: Path, compression: str) -> None:
    src = sentinel_model(tmp_path / "src")
    with open_enc(home, compression=compression) as v:
        v1 = v.push("org/secret", src, version="v1", metadata={"team": "nlp"})
        (src / "config.json").write_text(json.dumps({"note": SENTINEL.decode("latin-1"), "v": 2}))
        v.push("org/secret", src, version="v2")
        objects = store_objects(v)
        assert any(k.startswith("packs/") for k in objects) and keyring_key("org/secret") in objects
        for key, data in objects.items():
            assert SENTINEL not in data, key
            assert SENTINEL[:12] not in data, key
        # recipes are named by a keyed hash and sealed: neither file hashes nor chunk ids show
        shas = {f.sha256 for ref in ("org/secret@v1", "org/secret@v2") for f in v.show(ref).files}
        recipe_names = {layout.name_from_key(k) for k in objects if k.startswith("recipes/")}
        assert recipe_names and not recipe_names & shas
        for key, data in objects.items():
            if key.startswith("recipes/"):
                assert not data.startswith(b"{") and b"chunks" not in data
        # every blob is sealed, under slot 1, and chunk ids are not the plain BLAKE3 of the data
        stats = v.index.stats()
        assert stats["chunks"] > 0
        for pack in v.index.packs():
            for _cid, loc in v.index.chunks_in_pack(pack.id):
                assert loc.codec & ENCRYPTED and loc.key_slot == 1
        v.pull("org/secret@v1", tmp_path / "out")
        assert v1.version.commit == v.resolve("org/secret@v1").commit
    (src / "config.json").write_text(json.dumps({"note": SENTINEL.decode("latin-1"), "hidden_size": 64}))
    assert tree_bytes(tmp_path / "out") == tree_bytes(src)


def test_secrets_are_nowhere_in_the_store_or_the_index(enc_vault: Vault, home: Path, tmp_path: Path) -> None:
    src = sentinel_model(tmp_path / "src", 500_000)
    enc_vault.push("m", src)
    dom = enc_vault.keys.domain("m")
    assert dom is not None
    kek_text = (home / "keys" / "kek.key").read_bytes().strip()
    kek = base64.b64decode(kek_text)
    secrets = [kek, kek_text, dom.id_key.material, *(k.material for k in dom.data_keys.values())]
    secrets += [base64.b64encode(s) for s in secrets[2:]]
    blobs = list(store_objects(enc_vault).values())
    blobs.append((home / "index.db").read_bytes())
    blobs += [p.read_bytes() for p in home.glob("index.db-*")]
    for secret in secrets:
        assert all(secret not in b for b in blobs)
    assert (home / "keys" / "kek.key").stat().st_mode & 0o777 == 0o600


def test_dedup_within_a_model_but_not_across_encrypted_models(enc_vault: Vault, model_dir: Path) -> None:
    first = enc_vault.push("a", model_dir)
    again = enc_vault.push("a", model_dir)
    assert first.chunks_new == first.chunks_total > 0
    assert again.chunks_new == 0 and again.bytes_written == 0  # same model: its versions share chunks
    other = enc_vault.push("b", model_dir)
    assert other.chunks_new == other.chunks_total  # another domain: chunk ids are keyed differently


# ---------------------------------------------------------------- tampering and replicas


def _flip_in_first_blob(store: Path, vault: Vault, model: str) -> str:
    entry = max(vault.show(model).files, key=lambda f: f.size)
    first = vault._recipe(entry.sha256, model).chunks[0][0]
    loc = vault.index.locate_chunks([first])[first]
    path = store / layout.pack_key(loc.pack_id)
    data = bytearray(path.read_bytes())
    data[loc.offset + loc.stored_len // 2] ^= 0x04
    path.write_bytes(bytes(data))
    return entry.path


def test_flipped_bit_in_a_pack_fails_authentication(
    enc_vault: Vault, model_dir: Path, tmp_path: Path
) -> None:
    enc_vault.push("m", model_dir)
    path = _flip_in_first_blob(enc_vault.settings.store_path, enc_vault, "m")
    with pytest.raises(CorruptObjectError, match="failed authentication") as info:
        enc_vault.pull("m", tmp_path / "out")
    assert path in str(info.value)
    assert not [p for p in (tmp_path / "out").rglob("*") if p.is_file() and p.name == Path(path).name]
    report = enc_vault.verify("m", read_data=True)
    assert not report.ok and any("failed authentication" in p for p in report.problems)


def test_flipped_bits_fall_back_to_the_backup_replica(home: Path, model_dir: Path, tmp_path: Path) -> None:
    backup = tmp_path / "backup"
    with open_enc(home, replicas={"backup": backup.as_uri()}, sync_enabled=True, cache_enabled=False) as v:
        pushed = v.push("m", model_dir, version="v1")
        assert pushed.replication == {"backup": "ok"}
        assert (backup / keyring_key("m")).is_file()
        assert v.replica_status("m@v1") == {"local": True, "backup": True}
        path = _flip_in_first_blob(v.settings.store_path, v, "m")
    # a damaged keyring on the primary too: caught by its MAC, the backup's copy is used
    ring = home / "store" / keyring_key("m")
    body = json.loads(ring.read_text())
    body["data_keys"][0]["state"] = "retired" if body["data_keys"][0]["state"] == "active" else "active"
    body["data_keys"].append({**body["data_keys"][0], "slot": 7})
    ring.write_text(json.dumps(body))
    with open_enc(home, replicas={"backup": backup.as_uri()}, sync_enabled=True, cache_enabled=False) as v:
        result = v.pull("m@v1", tmp_path / "out")
        assert tree_bytes(tmp_path / "out") == tree_bytes(model_dir)
        assert any(f.startswith("local:") and "packs/" in f and "corrupt" in f for f in result.fallbacks)
        assert any(f.startswith("local:") and "keys/_/m/keyring" in f for f in result.fallbacks)
        assert path in {f.path for f in result.version.files}


def test_every_object_of_an_encrypted_version_can_be_checked_alone(enc_vault: Vault, model_dir: Path) -> None:
    """``Vault.version_keys``/``object_ok`` are what sync, status and repair need for encrypted models."""
    info = enc_vault.push("m", model_dir, version="v1").version
    rec = enc_vault.index.resolve("m", "v1")
    keys = enc_vault.version_keys(rec)
    assert keys[0] == keyring_key("m") and keys[-1] == layout.version_ref_key("m", "v1")
    assert any(k.startswith("recipes/") for k in keys) and any(k.startswith("packs/") for k in keys)
    assert not {layout.recipe_key(f.sha256) for f in enc_vault.show("m@v1").files} & set(keys)
    for key in keys:
        data = enc_vault.backend.get(key)
        assert enc_vault.object_ok(key, data), key
        if key.startswith(("packs/", "recipes/", "keys/", "manifests/")):
            bad = bytearray(data)
            bad[len(bad) // 3] ^= 0x01
            assert not enc_vault.object_ok(key, bytes(bad)), key
    assert info.commit == rec.commit


def test_reencrypt_reaches_the_backup_replica(home: Path, model_dir: Path, tmp_path: Path) -> None:
    backup = tmp_path / "backup"
    with open_enc(home, replicas={"backup": backup.as_uri()}, sync_enabled=True, cache_enabled=False) as v:
        v.push("m", model_dir, version="v1")
        v.rotate_keys(reencrypt=True)
        ring = KeyringRecord.from_bytes((backup / keyring_key("m")).read_bytes(), "m")
        assert [s.slot for s in ring.slots] == [2]  # the backup's keyring moved too
        for p in (home / "store" / "packs").rglob("*"):
            if p.is_file():
                p.unlink()  # the primary loses every pack: the backup has the new ones
        result = v.pull("m@v1", tmp_path / "out")
        assert result.fallbacks and all(f.startswith("local:") for f in result.fallbacks)
    assert tree_bytes(tmp_path / "out") == tree_bytes(model_dir)


# ---------------------------------------------------------------- wrong or missing keys


def test_wrong_key_file_names_the_provider_and_writes_nothing(
    home: Path, model_dir: Path, tmp_path: Path
) -> None:
    with open_enc(home) as v:
        v.push("m", model_dir, version="v1")
    key_file = home / "keys" / "kek.key"
    other = LocalFileKeyProvider.create(tmp_path / "other.key")
    key_file.write_bytes((tmp_path / "other.key").read_bytes())
    before = listing(home / "store")
    with open_enc(home) as v:
        with pytest.raises(WrongKeyError) as info:
            v.push("m", model_dir, version="v2")
        # names the provider, never a fingerprint of a key held here
        assert "local_file" in str(info.value) and other.key_id not in str(info.value)
        with pytest.raises(WrongKeyError, match="local_file"):
            v.pull("m@v1", tmp_path / "out")
        assert not (tmp_path / "out").exists()
        with pytest.raises(KeyProviderError, match="local_file"):
            v.rotate_keys()
    assert listing(home / "store") == before


def test_missing_key_file_is_not_silently_recreated(home: Path, model_dir: Path) -> None:
    with open_enc(home) as v:
        v.push("m", model_dir)
    (home / "keys" / "kek.key").unlink()
    before = listing(home / "store")
    with open_enc(home) as v:
        for model in ("m", "new-model"):
            with pytest.raises(KeyNotFoundError) as info:
                v.push(model, model_dir)
            assert "local_file" in str(info.value) and "kek.key" in str(info.value)
    assert not (home / "keys" / "kek.key").exists()
    assert listing(home / "store") == before


def test_missing_env_variable(home: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WV_TEST_KEK", generate_key_text())
    enc = {"enabled": True, "provider": {"type": "env", "variable": "WV_TEST_KEK"}}
    with Vault.open(home, encryption=enc) as v:
        v.push("m", model_dir, version="v1")
    monkeypatch.delenv("WV_TEST_KEK")
    before = listing(home / "store")
    with Vault.open(home, encryption=enc) as v:
        with pytest.raises(KeyNotFoundError) as info:
            v.push("m", model_dir, version="v2")
        assert "'env'" in str(info.value) and "WV_TEST_KEK" in str(info.value)
    assert listing(home / "store") == before


def test_wrong_passphrase(
    home: Path, model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    provider = {"type": "passphrase", "passphrase_env": "WV_TEST_PW", **FAST_ARGON}
    enc = {"enabled": True, "provider": provider}
    monkeypatch.setenv("WV_TEST_PW", "correct horse battery staple")
    with Vault.open(home, encryption=enc) as v:
        v.push("m", model_dir, version="v1")
        ring = keyrings(v)["m"]
        assert ring.provider["type"] == "passphrase" and "salt" in ring.provider
        assert "correct horse" not in json.dumps(ring.provider)
    monkeypatch.setenv("WV_TEST_PW", "Tr0ub4dor&3")
    before = listing(home / "store")
    with Vault.open(home, encryption=enc) as v:
        with pytest.raises(WrongKeyError, match="passphrase") as info:
            v.push("m", model_dir, version="v2")
        assert "wrong passphrase" in str(info.value)
        with pytest.raises(WrongKeyError):
            v.pull("m", tmp_path / "out")
    assert listing(home / "store") == before
    monkeypatch.setenv("WV_TEST_PW", "correct horse battery staple")
    with Vault.open(home, encryption=enc) as v:
        v.pull("m", tmp_path / "out")
    assert tree_bytes(tmp_path / "out") == tree_bytes(model_dir)


# ---------------------------------------------------------------- rotation


def _assert_key_opens_nothing(vault: Vault, key_file: Path) -> None:
    old = LocalFileKeyProvider(key_file)
    rings = keyrings(vault)
    assert rings
    for ring in rings.values():
        for wrapped in iter_wrapped(ring):
            with pytest.raises(WrongKeyError):
                old.unwrap(wrapped.wrapped)


def test_rotate_rewraps_without_touching_the_data(home: Path, tmp_path: Path) -> None:
    src = tmp_path / "big"
    generate_model(src, 200 << 20, shards=2)
    with open_enc(home) as v:
        v.push("big", src, version="v1")
        v.push("small", sentinel_model(tmp_path / "s", 200_000))
        old_key = tmp_path / "old.key"
        shutil.copy2(home / "keys" / "kek.key", old_key)
        packs_before = listing(home / "store" / "packs")
        report = v.rotate_keys()  # no timing threshold (a loaded machine): no data object is rewritten
        assert set(report.models) == {"big", "small"} and all(e["rewrapped"] for e in report.models.values())
        assert listing(home / "store" / "packs") == packs_before  # no data rewritten
        _assert_key_opens_nothing(v, old_key)
        assert (home / "keys" / "kek.key").read_bytes() != old_key.read_bytes()
        assert not (home / "keys" / "kek.key.new").exists()
    with open_enc(home, cache_enabled=False) as v:  # a fresh process: only the new key file exists
        v.pull("big@v1", tmp_path / "out")
        assert tree_bytes(tmp_path / "out") == tree_bytes(src)
        assert v.verify(read_data=True).ok


def test_rotate_one_model_to_a_new_key_file(
    enc_vault: Vault, home: Path, model_dir: Path, tmp_path: Path
) -> None:
    enc_vault.push("a", model_dir)
    enc_vault.push("b", model_dir)
    old_key = tmp_path / "old.key"
    shutil.copy2(home / "keys" / "kek.key", old_key)
    report = enc_vault.rotate_keys("a", new_provider={"type": "local_file", "path": str(tmp_path / "a.key")})
    assert set(report.models) == {"a"}
    rings = keyrings(enc_vault)
    assert rings["a"].provider["path"] == str(tmp_path / "a.key") and rings["a"].kek_id != rings["b"].kek_id
    with pytest.raises(WrongKeyError):
        LocalFileKeyProvider(old_key).unwrap(rings["a"].id_key.wrapped)
    with open_enc(home, cache_enabled=False) as v:  # the keyring says where a's key is now
        v.pull("a", tmp_path / "out-a")
        v.pull("b", tmp_path / "out-b")
    assert tree_bytes(tmp_path / "out-a") == tree_bytes(model_dir) == tree_bytes(tmp_path / "out-b")


def test_rotate_to_a_new_passphrase(
    home: Path, model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    enc = {"enabled": True, "provider": {"type": "passphrase", "passphrase_env": "WV_PW_A", **FAST_ARGON}}
    monkeypatch.setenv("WV_PW_A", "first passphrase")
    monkeypatch.setenv("WV_PW_B", "second passphrase")
    with Vault.open(home, encryption=enc) as v:
        v.push("m", model_dir)
        salt = base64.b64encode(os.urandom(16)).decode()
        new = {"type": "passphrase", "passphrase_env": "WV_PW_B", "salt": salt, **FAST_ARGON}
        v.rotate_keys(new_provider=new)
        ring = keyrings(v)["m"]
        assert ring.provider["passphrase_env"] == "WV_PW_B" and ring.provider["salt"] == salt
        old = open_key_provider({**enc["provider"], "salt": keyrings(v)["m"].provider["salt"]})
        with pytest.raises(WrongKeyError):
            old.unwrap(ring.id_key.wrapped)
    with Vault.open(home, encryption=enc, cache_enabled=False) as v:  # config still names WV_PW_A
        v.pull("m", tmp_path / "out")
    assert tree_bytes(tmp_path / "out") == tree_bytes(model_dir)
    monkeypatch.setenv("WV_PW_B", "a wrong guess")
    with Vault.open(home, encryption=enc) as v, pytest.raises(WrongKeyError, match="passphrase"):
        v.pull("m", tmp_path / "out2")


def test_rotate_with_nothing_encrypted_changes_nothing(vault: Vault, model_dir: Path, home: Path) -> None:
    vault.push("m", model_dir)
    report = vault.rotate_keys()
    assert report.models == {} and not (home / "keys").exists()


def _live_slots(vault: Vault, model: str) -> set[int]:
    return {int(s) for s in next(m for m in vault.key_status(model)["models"])["live"]}


def test_reencrypt_moves_every_live_chunk_to_a_new_data_key(
    home: Path, model_dir: Path, tmp_path: Path
) -> None:
    with open_enc(home, pack_size_mb=1, compression="zstd") as v:
        c1 = v.push("m", model_dir, version="v1").version.commit
        write_random(model_dir / "model-00002-of-00002.safetensors", 2_500_000, seed=9)
        c2 = v.push("m", model_dir, version="v2").version.commit
        old_ids = {s.key.key_id for s in keyrings(v)["m"].slots}
        old_key = tmp_path / "old.key"
        shutil.copy2(home / "keys" / "kek.key", old_key)
        new_key = {"type": "local_file", "path": str(tmp_path / "n.key")}
        report = v.rotate_keys("m", reencrypt=True, new_provider=new_key)
        r = report.models["m"]["reencrypt"]
        assert r["slot"] == 2 and r["dropped_slots"] == [1] and r["chunks_written"] > 0
        ring = keyrings(v)["m"]
        assert [s.slot for s in ring.slots] == [2] and ring.reencrypt_target is None
        assert not {s.key.key_id for s in ring.slots} & old_ids  # the old data key is gone
        assert _live_slots(v, "m") == {2}
        _assert_key_opens_nothing(v, old_key)
        assert v.resolve("m@v1").commit == c1 and v.resolve("m@v2").commit == c2
        v.gc(grace_seconds=0)
        assert all(loc.key_slot == 2 for p in v.index.packs() for _c, loc in v.index.chunks_in_pack(p.id))
        assert v.verify(read_data=True).ok
    with open_enc(home, cache_enabled=False, encryption={"enabled": True, "provider": new_key}) as v:
        v.pull("m@v2", tmp_path / "o2")
        v.pull("m@v1", tmp_path / "o1")
    assert tree_bytes(tmp_path / "o2") == tree_bytes(model_dir)
    assert tree_bytes(tmp_path / "o1")["config.json"] == (model_dir / "config.json").read_bytes()


def test_interrupted_reencrypt_keeps_reads_working_and_resumes(
    home: Path, model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with open_enc(home, pack_size_mb=1) as v:
        v.push("m", model_dir, version="v1")
        total = v.index.stats()["chunks"]
        real_add_pack = RegistryIndex.add_pack
        calls = {"n": 0}

        def failing_add_pack(self: RegistryIndex, *a: Any, **kw: Any) -> None:
            calls["n"] += 1
            if calls["n"] == 2:
                raise OSError("injected failure after the first pack")
            real_add_pack(self, *a, **kw)

        monkeypatch.setattr(RegistryIndex, "add_pack", failing_add_pack)
        with pytest.raises(OSError, match="injected"):
            v.rotate_keys(reencrypt=True)
        monkeypatch.setattr(RegistryIndex, "add_pack", real_add_pack)
        ring = keyrings(v)["m"]
        assert ring.reencrypt_target == 2 and {s.slot for s in ring.slots} == {1, 2}
        assert _live_slots(v, "m") == {1, 2}  # half way: some chunks moved, reads still work
    with open_enc(home, cache_enabled=False) as v:
        v.pull("m@v1", tmp_path / "mid")
        assert tree_bytes(tmp_path / "mid") == tree_bytes(model_dir)
        again = v.rotate_keys(reencrypt=True).models["m"]["reencrypt"]
        assert again["slot"] == 2 and 0 < again["chunks_written"] < total  # resumed, not restarted
        assert _live_slots(v, "m") == {2} and [s.slot for s in keyrings(v)["m"].slots] == [2]
        v.pull("m@v1", tmp_path / "end")
    assert tree_bytes(tmp_path / "end") == tree_bytes(model_dir)


def test_push_during_reencrypt_that_lost_its_key_is_refused(enc_vault: Vault, model_dir: Path) -> None:
    enc_vault.push("m", model_dir, version="v1")
    dom = enc_vault.keys.domain("m")
    assert dom is not None
    enc_vault.rotate_keys("m", reencrypt=True)  # drops slot 1
    enc_vault.keys._cache.domains["m"] = dom  # a process that opened the keys before the rotation
    write_random(model_dir / "new.bin", 100_000, seed=5)
    with pytest.raises(ConcurrentModificationError, match="rotated during the push"):
        enc_vault.push("m", model_dir, version="v2")
    enc_vault.keys.forget()
    enc_vault.push("m", model_dir, version="v2")
    assert _live_slots(enc_vault, "m") == {2}


# ---------------------------------------------------------------- turning encryption on


def test_turning_encryption_on_for_an_existing_vault(home: Path, tmp_path: Path) -> None:
    src = sentinel_model(tmp_path / "src", 1_500_000)
    with Vault.open(home) as v:
        c1 = v.push("m", src, version="v1").version.commit
        v.push("plain-neighbour", src)
        assert any(SENTINEL in d for d in store_objects(v).values())
    (src / "extra" / "more.bin").write_bytes(SENTINEL * 1000)
    (src / "extra" / "weights.bin").write_bytes(SENTINEL * 2000)  # v1's version stays plain
    with open_enc(home) as v:
        pushed = v.push("m", src, version="v2")
        assert pushed.chunks_new == pushed.chunks_total  # keyed ids: nothing shared with the plain v1
        # files v1 shares with v2 are now read through their keyed recipes; v1's own stay plain
        assert _live_slots(v, "m") == {0, 1}
        v.pull("m@v1", tmp_path / "o1")
        report = v.rotate_keys("m", reencrypt=True)
        assert report.models["m"]["reencrypt"]["files_rekeyed"] >= 1
        assert _live_slots(v, "m") == {2}
        assert v.resolve("m@v1").commit == c1
        v.gc(grace_seconds=0)
        # the plain neighbour keeps its plain data; m's own plaintext is gone from the store
        status = {e["model"]: e for e in v.key_status()["models"]}
        assert status["plain-neighbour"]["encrypted"] is False and status["m"]["encrypted"] is True
        v.delete("plain-neighbour@" + v.list_versions("plain-neighbour")[0].label)
        v.gc(grace_seconds=0)
        leaked = [k for k, d in store_objects(v).items() if SENTINEL in d]
        assert leaked == []
        v.pull("m@v1", tmp_path / "o1b")
        v.pull("m@v2", tmp_path / "o2")
    assert tree_bytes(tmp_path / "o1") == tree_bytes(tmp_path / "o1b")
    assert tree_bytes(tmp_path / "o2") == tree_bytes(src)


def test_recover_rebuilds_an_encrypted_index(
    enc_vault: Vault, home: Path, model_dir: Path, tmp_path: Path
) -> None:
    enc_vault.push("m", model_dir, version="v1")
    enc_vault.rotate_keys(reencrypt=True)  # two packs now hold the same chunks: the newest seal wins
    counts = enc_vault.recover()
    assert counts["versions"] == 1 and counts["skipped"] == 0
    enc_vault.close()
    with open_enc(home, cache_enabled=False) as v:
        assert v.verify(read_data=True).ok
        v.pull("m@v1", tmp_path / "out")
    assert tree_bytes(tmp_path / "out") == tree_bytes(model_dir)


# ---------------------------------------------------------------- AWS KMS, against moto's server


@pytest.fixture(scope="module")
def kms_endpoint(moto_endpoint: str) -> str:
    return moto_endpoint


def test_aws_kms_end_to_end(
    home: Path, model_dir: Path, tmp_path: Path, kms_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3

    for k in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    kms = boto3.client("kms", endpoint_url=kms_endpoint, region_name="us-east-1")
    first, second = (kms.create_key()["KeyMetadata"]["KeyId"] for _ in range(2))
    provider = {"type": "aws_kms", "key_id": first, "endpoint_url": kms_endpoint, "region": "us-east-1"}
    with Vault.open(home, encryption={"enabled": True, "provider": provider}) as v:
        v.push("m", model_dir, version="v1")
        ring = keyrings(v)["m"]
        assert ring.provider == provider and ring.kek_id == first
        same = v.rotate_keys()  # same KMS key: re-wrapped under its current material
        assert same.models["m"]["rewrapped"]
        report = v.rotate_keys(new_provider={**provider, "key_id": second})
        assert report.kek_id == second and keyrings(v)["m"].kek_id == second
        old = open_key_provider(provider)
        with pytest.raises(KeyProviderError, match="aws_kms"):
            old.unwrap(keyrings(v)["m"].id_key.wrapped)
    config = {"enabled": True, "provider": {**provider, "key_id": second}}
    with Vault.open(home, cache_enabled=False, encryption=config) as v:
        v.pull("m@v1", tmp_path / "out")
        v.push("m", model_dir, version="v2")
    assert tree_bytes(tmp_path / "out") == tree_bytes(model_dir)


def test_env_setting_and_store_keyring_listing(
    home: Path, monkeypatch: pytest.MonkeyPatch, model_dir: Path
) -> None:
    monkeypatch.setenv("WEIGHTVAULT_ENCRYPTION", json.dumps({"enabled": True}))
    with Vault.open(home) as v:
        assert v.settings.encryption.enabled
        v.push("ns/m", model_dir)
        assert v.keys.models() == ["ns/m"]
    assert os.stat(home / "keys" / "kek.key").st_mode & 0o077 == 0
