"""Id-key rotation (``keys rotate MODEL --new-domain``): when a key holder leaves, the model
moves to a domain whose keys they never saw (docs/security.md, "Revoking a key holder").

Real local folder stores; the departed holder is played with the keyring and the unwrapped
keys saved before the rotation."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from weightvault.cas.pack import PackEntry, decode_table
from weightvault.core import layout
from weightvault.core.errors import IntegrityError, RevisionNotFoundError, WeightvaultError
from weightvault.core.manifest import FileRecipe
from weightvault.vault import domains, refauth
from weightvault.vault.keyring import Domain, KeyringRecord, keyring_key
from weightvault.vault.vault import Vault

from ..conftest import run_cli, tree_bytes

ENC: dict[str, Any] = {"encryption": {"enabled": True}, "cache_enabled": False}


def write_random(path: Path, size: int, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(random.Random(seed).randbytes(size))


def three_versions(home: Path, tmp_path: Path, **opts: Any) -> dict[str, dict[str, bytes]]:
    """m@v1..v3 (v2 and v3 share a big file; production -> v2, latest -> v3); returns the
    content of every label and alias."""
    src = tmp_path / "src"
    write_random(src / "weights.safetensors.bin", 3_000_000, seed=1)
    (src / "config.json").write_text('{"hidden_size": 64}')
    contents: dict[str, dict[str, bytes]] = {}
    with Vault.open(home, **{**ENC, **opts}) as v:
        v.push("m", src, version="v1", message="first", metadata={"lr": "0.1"})
        write_random(src / "extra" / "head.bin", 700_000, seed=2)
        v.push("m", src, version="v2", lineage=[{"kind": "dataset", "name": "d", "version": "1"}])
        (src / "config.json").write_text('{"hidden_size": 128}')
        v.push("m", src, version="v3")
        v.set_alias("m", "production", "v2")
        v.set_alias("m", "newest", "v3")
        for name in ("v1", "v2", "v3", "production", "newest"):
            v.pull(f"m@{name}", tmp_path / f"before-{name}")
            contents[name] = tree_bytes(tmp_path / f"before-{name}")
    return contents


def pulled(v: Vault, tmp_path: Path, tag: str) -> dict[str, dict[str, bytes]]:
    out = {}
    for name in ("v1", "v2", "v3", "production", "newest"):
        dest = tmp_path / f"{tag}-{name}"
        v.pull(f"m@{name}", dest)
        out[name] = tree_bytes(dest)
    return out


def chunk_lengths(v: Vault, sha256: str) -> list[int]:
    _name, recipe = v._find_recipe(sha256, "m")
    return [n for _cid, n in recipe.chunks]


def test_new_domain_keeps_every_version_and_alias_and_cuts_new_chunks(home: Path, tmp_path: Path) -> None:
    before = three_versions(home, tmp_path)
    with Vault.open(home, **ENC) as v:
        old_versions = {i.label: i for i in v.list_versions("m")}
        big = next(f for f in v.show("m@v1").files if f.path == "weights.safetensors.bin")
        old_lengths = chunk_lengths(v, big.sha256)
        old_id = v.keys.domain("m").id_key_id  # type: ignore[union-attr]
        report = v.rotate_domain("m")
        assert report.versions == 3 and report.aliases == 2 and report.id_key_from == old_id
        dom = v.keys.domain("m", refresh=True)
        assert dom is not None and dom.id_key_id == report.id_key_to != old_id
        assert dom.record.next_domain is None and dom.record.replaces == (old_id,)
        assert len(dom.record.slots) == 1  # the old domain's data keys left the keyring
        new_versions = {i.label: i for i in v.list_versions("m")}
        for label, old in old_versions.items():
            new = new_versions[label]
            assert new.commit != old.commit and report.commits[old.commit] == new.commit
            assert (new.created, new.message, new.metadata) == (old.created, old.message, old.metadata)
        assert new_versions["v2"].parent == new_versions["v1"].commit  # parents follow
        assert v.show("m@v2").lineage == ({"kind": "dataset", "name": "d", "version": "1"},)
        assert v.resolve("m@production").label == "v2" and v.resolve("m@newest").label == "v3"
        # the new seed cuts the same file at other places
        assert sum(chunk_lengths(v, big.sha256)) == big.size
        assert chunk_lengths(v, big.sha256) != old_lengths
        assert not v.verify(read_data=True).problems
    # every version and alias reads back byte for byte, here and on a machine that pinned the old id key
    with Vault.open(home, **ENC) as v:
        assert pulled(v, tmp_path, "after") == before


def test_old_keys_open_nothing_new_and_forge_nothing(home: Path, tmp_path: Path) -> None:
    before = three_versions(home, tmp_path)
    with Vault.open(home, **ENC) as v:
        old_dom = v.keys.domain("m")
        assert old_dom is not None
        old_ring = v.primary.get(keyring_key("m"))
        old_v1_ref = v.primary.get(layout.version_ref_key("m", "v1"))
        v.rotate_domain("m")
        new_v1 = v.resolve("m@v1").commit
        sealed = v.primary.get(layout.manifest_key(new_v1))
    # the departed holder's keys: the old domain opens no new manifest, recipe or chunk
    with pytest.raises(WeightvaultError):
        old_dom.open_manifest(new_v1, sealed)
    with Vault.open(home, **ENC) as v:
        new_dom = v.keys.domain("m")
        assert new_dom is not None
        big = next(f for f in v.show("m@v1").files if f.size == 3_000_000)
        name = new_dom.recipe_name(big.sha256)
        assert name != old_dom.recipe_name(big.sha256)
        with pytest.raises(WeightvaultError):
            old_dom.open_recipe(name, v.primary.get(layout.recipe_key(name)))
        recipe = FileRecipe.from_bytes(new_dom.open_recipe(name, v.primary.get(layout.recipe_key(name))))
        loc = v.index.locate_chunks([recipe.chunks[0][0]])[recipe.chunks[0][0]]
        cid = recipe.chunks[0][0]
        entry, blob = _stored_blob(v, loc.pack_id, cid)
        assert entry.key_slot not in old_dom.ciphers
        for cipher in old_dom.ciphers.values():
            with pytest.raises(WeightvaultError):
                cipher.open(blob, chunk_id=cid, codec=entry.codec, raw_len=entry.raw_len)
        # a ref forged with the old id key (v1's new commit under a new label; production moved
        # back to v1) and v1's own pre-rotation ref put back are all refused
        forged = refauth.sign(
            old_dom,
            "version",
            {"model": "m", "label": "v9", "commit": new_v1, "created": "2026-11-29T00:00:00+00:00"},
        )
        v.primary.put(layout.version_ref_key("m", "v9"), json.dumps(forged).encode())
        alias = refauth.sign(
            old_dom, "alias", {"model": "m", "alias": "production", "label": "v1", "commit": new_v1}
        )
        v.primary.put(layout.alias_ref_key("m", "production"), json.dumps(alias).encode())
        v.primary.put(layout.version_ref_key("m", "v1"), old_v1_ref)
    fresh = tmp_path / "fresh-home"
    enc = {"enabled": True, "provider": {"type": "local_file", "path": str(home / "keys" / "kek.key")}}
    with Vault.open(fresh, store_url=f"file://{home / 'store'}", encryption=enc, cache_enabled=False) as w:
        report = w.recover()
        assert report["refused_refs"] == 3  # v9, production, and v1's old ref
        with pytest.raises(RevisionNotFoundError):
            w.resolve("m@production")  # never moved back to v1
        with pytest.raises((RevisionNotFoundError, IntegrityError)):
            w.pull("m@v9", tmp_path / "out-v9")
        with pytest.raises((RevisionNotFoundError, IntegrityError)):
            w.pull("m@v1", tmp_path / "out-v1")
        w.pull("m@v2", tmp_path / "out-v2")
        assert tree_bytes(tmp_path / "out-v2") == before["v2"]
    # and the old keyring put back is refused by the home that rotated (its pin moved on)
    with Vault.open(home, **ENC) as v:
        v.primary.put(keyring_key("m"), old_ring)
        with pytest.raises(IntegrityError, match="another id key"):
            v.pull("m@v2", tmp_path / "out-replayed")


def _stored_blob(v: Vault, pack_id: str, cid: bytes) -> tuple[PackEntry, bytes]:
    data = v.primary.get(layout.pack_key(pack_id))
    entry = next(e for e in decode_table(data) if e.chunk_id == cid)
    return entry, data[entry.offset : entry.offset + entry.stored_len]


def test_a_home_that_pinned_the_old_domain_follows_the_switch(home: Path, tmp_path: Path) -> None:
    before = three_versions(home, tmp_path)
    other = tmp_path / "other-home"
    enc = {"enabled": True, "provider": {"type": "local_file", "path": str(home / "keys" / "kek.key")}}
    opts: dict[str, Any] = {
        "store_url": f"file://{home / 'store'}",
        "encryption": enc,
        "cache_enabled": False,
    }
    with Vault.open(other, **opts) as w:
        w.pull("m@v1", tmp_path / "pin")  # pins the old id key, indexes the old commits
        old_ring = w.primary.get(keyring_key("m"))
    with Vault.open(home, **ENC) as v:
        v.rotate_domain("m")
    with Vault.open(other, **opts) as w:
        assert pulled(w, tmp_path, "other") == before
        w.primary.put(keyring_key("m"), old_ring)  # a replayed old keyring
        w.keys.forget()
        with pytest.raises(IntegrityError, match="another id key"):
            w.pull("m@v3", tmp_path / "replayed")


def test_gc_after_the_rotation_deletes_the_old_domains_packs(home: Path, tmp_path: Path) -> None:
    before = three_versions(home, tmp_path)
    with Vault.open(home, **ENC) as v:
        old_packs = {i.key for i in v.primary.list("packs/")}
        old_manifests = {i.key for i in v.primary.list("manifests/")}
        v.rotate_domain("m")
        for _ in range(2):  # condemn, then delete
            v.gc(grace_seconds=0)
        left = {i.key for i in v.primary.list("packs/")}
        assert left and not (left & old_packs)
        assert not ({i.key for i in v.primary.list("manifests/")} & old_manifests)
        assert pulled(v, tmp_path, "after-gc") == before


def test_interrupted_rotation_stays_readable_and_a_rerun_completes_it(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = three_versions(home, tmp_path)
    real_version = domains._Mover.version
    moved: list[str] = []

    def crash_after_two(self: domains._Mover, rec: Any) -> None:
        if len(moved) == 2:
            raise KeyboardInterrupt("power cut")
        real_version(self, rec)
        moved.append(rec.label)

    monkeypatch.setattr(domains._Mover, "version", crash_after_two)
    with Vault.open(home, **ENC) as v:
        old_id = v.keys.domain("m").id_key_id  # type: ignore[union-attr]
        with pytest.raises(KeyboardInterrupt):
            v.rotate_domain("m")
        assert moved == ["v1", "v2"]
        ring = KeyringRecord.from_bytes(v.primary.get(keyring_key("m")), "m")
        assert ring.next_domain is not None and ring.id_key.key_id == old_id
        assert v.key_status("m")["models"][0]["new_domain_in_progress"] is True
        assert pulled(v, tmp_path, "mid") == before  # the old domain still serves everything
    monkeypatch.setattr(domains._Mover, "version", real_version)
    with Vault.open(home, **ENC) as v:
        assert pulled(v, tmp_path, "mid-other-process") == before
        report = v.rotate_domain("m")
        assert report.id_key_from == old_id and report.versions == 3
        assert report.files_moved == 1  # v3's new config.json only: v1 and v2's files were moved before
        ring = KeyringRecord.from_bytes(v.primary.get(keyring_key("m")), "m")
        assert ring.next_domain is None and ring.replaces == (old_id,)
    with Vault.open(home, **ENC) as v:
        assert pulled(v, tmp_path, "done") == before


@pytest.mark.parametrize("step", ["_announce", "_settle"])
def test_interruption_after_the_switch_is_settled_by_a_rerun(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    before = three_versions(home, tmp_path)
    enc = {"enabled": True, "provider": {"type": "local_file", "path": str(home / "keys" / "kek.key")}}
    opts: dict[str, Any] = {
        "store_url": f"file://{home / 'store'}",
        "encryption": enc,
        "cache_enabled": False,
    }
    with Vault.open(tmp_path / "indexed-home", **opts) as w:
        w.list_versions("m")  # indexes the old commits and pins the old domain

    def crash(*_a: Any, **_k: Any) -> None:
        raise KeyboardInterrupt("power cut")

    monkeypatch.setattr(domains, step, crash)
    with Vault.open(home, **ENC) as v, pytest.raises(KeyboardInterrupt):
        v.rotate_domain("m")
    monkeypatch.undo()
    with Vault.open(home, **ENC) as v:
        ring = v.keys.domain("m")
        assert ring is not None and ring.record.replaces and ring.record.next_domain is None  # switched
        raw = json.loads(v.primary.get(layout.alias_ref_key("m", "production")))
        assert "next" in raw  # refs still in transition
    # readers in the new domain read them: a home that never saw the model, one that indexed the
    # old commits (from the journal, or by re-reading the refs when nothing was journalled)
    with Vault.open(tmp_path / "fresh-home", **opts) as w:
        assert pulled(w, tmp_path, "fresh") == before
    with Vault.open(tmp_path / "indexed-home", **opts) as w:
        assert pulled(w, tmp_path, "indexed") == before
    with Vault.open(home, **ENC) as v:
        v.rotate_domain("m")
        raw = json.loads(v.primary.get(layout.alias_ref_key("m", "production")))
        assert "next" not in raw
        assert pulled(v, tmp_path, "settled") == before


def test_a_push_during_the_rotation_is_moved_too(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    three_versions(home, tmp_path)
    extra = tmp_path / "extra-src"
    write_random(extra / "w.bin", 500_000, seed=9)
    pusher = Vault.open(home, **ENC)
    real_aliases = domains._Mover.aliases
    pushed: list[str] = []

    def push_meanwhile(self: domains._Mover) -> None:
        if not pushed:  # after the versions were moved, before the switch
            pushed.append(pusher.push("m", extra, version="v4").version.commit)
        real_aliases(self)

    monkeypatch.setattr(domains._Mover, "aliases", push_meanwhile)
    try:
        with Vault.open(home, **ENC) as v:
            report = v.rotate_domain("m")
            assert report.versions == 4 and pushed[0] in report.commits
        # the pusher's process still holds the old domain: its next push is told to retry, then works
        write_random(extra / "w2.bin", 10_000, seed=10)
        with pytest.raises(WeightvaultError, match="push again"):
            pusher.push("m", extra, version="v5")
        pusher.push("m", extra, version="v5")
    finally:
        pusher.close()
    with Vault.open(home, **ENC) as v:
        v.pull("m@v4", tmp_path / "v4")
        assert (tmp_path / "v4" / "w.bin").read_bytes() == (extra / "w.bin").read_bytes()
        v.pull("m@v5", tmp_path / "v5")
        assert tree_bytes(tmp_path / "v5") == tree_bytes(extra)


def test_every_replica_gets_the_new_domain(home: Path, tmp_path: Path) -> None:
    backup = tmp_path / "backup"
    opts: dict[str, Any] = {"replicas": {"backup": backup.as_uri()}, "sync_enabled": True}
    before = three_versions(home, tmp_path, **opts)
    with Vault.open(home, **ENC, **opts) as v:
        report = v.rotate_domain("m")
        assert not report.replica_errors
        ring = KeyringRecord.from_bytes((backup / keyring_key("m")).read_bytes(), "m")
        assert ring.id_key.key_id == report.id_key_to
        for name in ("v1", "v2", "v3", "production", "newest"):
            dest = tmp_path / f"backup-{name}"
            v.pull(f"m@{name}", dest, provider="backup")
            assert tree_bytes(dest) == before[name]
        raw = json.loads((backup / layout.version_ref_key("m", "v1")).read_bytes())
        assert "next" not in raw and raw["commit"] == report.commits[next(iter(report.commits))]


def test_domain_is_a_keyring_field_that_format_2_readers_keep(home: Path, tmp_path: Path) -> None:
    three_versions(home, tmp_path)
    with Vault.open(home, **ENC) as v:
        plain_ring = v.primary.get(keyring_key("m"))
        assert b"next_domain" not in plain_ring and b"replaces" not in plain_ring
        dom = v.keys.domain("m")
        assert dom is not None
        started = v.keys.begin_domain(dom)
        raw = json.loads(v.primary.get(keyring_key("m")))
        assert raw["format"] == 2 and raw["next_domain"]["version"] == 1
        assert isinstance(started.pending, Domain)
        # a flipped bit in the new field fails the keyring's MAC
        raw["next_domain"]["created"] = "2000-01-01T00:00:00+00:00"
        rec = KeyringRecord.from_bytes(json.dumps(raw).encode(), "m")
        with pytest.raises(IntegrityError):
            rec.check_mac(dom.mac_key)


def test_cli_new_domain(home: Path, tmp_path: Path) -> None:
    before = three_versions(home, tmp_path)
    (tmp_path / "cfg.yaml").write_text("encryption:\n  enabled: true\ncache_enabled: false\n")
    cfg = ["--config", str(tmp_path / "cfg.yaml")]
    for args, code, words in (
        (["keys", "rotate", "--new-domain"], 4, "name the model"),
        (["keys", "rotate", "m", "--new-domain", "--reencrypt"], 4, "--reencrypt"),
        (["keys", "rotate", "m", "--new-domain", "--new-key-file", str(tmp_path / "k")], 4, "first"),
        (["keys", "rotate", "nosuch", "--new-domain"], 4, "not encrypted"),
    ):
        r = run_cli(home, *cfg, *args)
        assert r.returncode == code, (args, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and words in lines[0], (args, r.stderr)
    assert not (tmp_path / "k").exists()
    r = run_cli(home, *cfg, "keys", "rotate", "m", "--new-domain", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["model"] == "m" and out["versions"] == 3 and out["id_key_to"] != out["id_key_from"]
    with Vault.open(home, **ENC) as v:
        assert pulled(v, tmp_path, "cli") == before
