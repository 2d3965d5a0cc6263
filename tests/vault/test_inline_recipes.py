"""Small files' recipes inline in the manifest (docs/format.md, "Recipes", "Manifests"): no
recipe object for them, and every reader (pull, verify, gc, recover, refresh on another machine,
secondaries, key rotation) reads them from the manifest; stores written before the change (a
recipe object per file, format-1 manifests) keep working beside them."""

from __future__ import annotations

import hashlib
import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from weightvault.cas.hashing import chunk_id
from weightvault.core import layout
from weightvault.core.errors import IntegrityError
from weightvault.core.manifest import INLINE_MAX_SIZE, FileEntry, FileRecipe, Manifest, canonical_json
from weightvault.vault.ingest import UploadedFile
from weightvault.vault.vault import Vault

from ..conftest import tree_bytes, write_random


def _small(root: Path, n: int = 12, seed: int = 0) -> Path:
    for i in range(n):
        write_random(root / f"d{i % 3}" / f"f{i:02d}.bin", 1000 + 131 * i, seed=seed * 1000 + i)
    return root


def _objects(v: Vault) -> set[str]:
    return {layout.name_from_key(i.key) for i in v.backend.list(layout.RECIPES)}


def _stored_manifest(v: Vault, commit: str) -> dict[str, object]:
    body = json.loads(v.backend.get(layout.manifest_key(commit)))
    assert isinstance(body, dict)
    return body


@pytest.fixture
def old_writer(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """Pushes as before inline recipes: no file is small enough to inline (a recipe object each)."""
    monkeypatch.setattr("weightvault.core.manifest.INLINE_MAX_SIZE", -1)
    return monkeypatch


def test_small_files_get_no_recipe_object_a_big_file_keeps_one(tmp_path: Path) -> None:
    src = _small(tmp_path / "src")
    write_random(src / "big.bin", INLINE_MAX_SIZE + 1, seed=7)
    (src / "empty.txt").write_bytes(b"")
    with Vault.open(tmp_path / "home") as v:
        info = v.push("m", src, version="v1").version
        files = {f.path: f for f in v.show("m@v1").files}
        assert _objects(v) == {files["big.bin"].sha256}
        body = _stored_manifest(v, info.commit)
        assert body["format"] == 2
        stored = {f["path"]: f for f in body["files"]}  # type: ignore[attr-defined]
        assert "chunks" not in stored["big.bin"] and stored["empty.txt"]["chunks"] == []
        assert sum(n for _, n in stored["d0/f00.bin"]["chunks"]) == files["d0/f00.bin"].size
        v.pull("m@v1", tmp_path / "out")
        assert v.verify(read_data=True).ok and v.verify().ok
    assert tree_bytes(tmp_path / "out") == tree_bytes(src)


def test_inline_recipes_recover_from_the_store_alone(tmp_path: Path) -> None:
    src = _small(tmp_path / "src")
    home = tmp_path / "home"
    with Vault.open(home) as v:
        v.push("m", src, version="v1")
    (home / "index.db").unlink()  # the index is lost: only the store is left
    for extra in home.glob("index.db-*"):
        extra.unlink()
    with Vault.open(home) as v:
        report = v.recover()
        assert report.ok, report.problems
        shas = [f.sha256 for f in v.show("m@v1").files]
        assert all(v.index.get_recipe(sha) is not None for sha in shas)  # rows rebuilt from the manifest
        v.pull("m@v1", tmp_path / "out")
        assert v.verify(read_data=True).ok
    assert tree_bytes(tmp_path / "out") == tree_bytes(src)


def test_a_second_machine_follows_the_journal_to_a_version_with_inline_recipes(tmp_path: Path) -> None:
    store = tmp_path / "store"
    with Vault.open(tmp_path / "a", store_url=store.as_uri()) as a:
        a.push("m", _small(tmp_path / "s1", seed=1), version="v1")
        with Vault.open(tmp_path / "b", store_url=store.as_uri()) as b:  # a full scan
            b.pull("m@v1", tmp_path / "out1")
            src2 = _small(tmp_path / "s2", seed=2)
            a.push("m", src2, version="v2")
            b.pull("m@v2", tmp_path / "out2")  # learned from the journal
            assert all(b.index.get_recipe(f.sha256) is not None for f in b.show("m@v2").files)
            assert b.verify(read_data=True).ok
    assert tree_bytes(tmp_path / "out1") == tree_bytes(tmp_path / "s1")
    assert tree_bytes(tmp_path / "out2") == tree_bytes(src2)


def test_a_secondary_holds_what_a_version_with_inline_recipes_needs(tmp_path: Path) -> None:
    second = tmp_path / "second"
    src = _small(tmp_path / "src")
    with Vault.open(tmp_path / "home", replicas={"second": second.as_uri()}) as v:
        v.push("m", src, version="v1")
        assert v.replica_status("m@v1")["second"] is True
        for p in (tmp_path / "home" / "store" / "packs").rglob("*"):
            if p.is_file():
                p.unlink()  # the primary loses its packs: reads fall back to the secondary
        result = v.pull("m@v1", tmp_path / "out")
        assert result.fallbacks
    with Vault.open(tmp_path / "from-second", store_url=second.as_uri()) as w:  # the replica alone
        w.pull("m@v1", tmp_path / "out2")
    assert tree_bytes(tmp_path / "out") == tree_bytes(src) == tree_bytes(tmp_path / "out2")


def test_gc_frees_the_chunks_of_the_only_version_that_named_them_inline(tmp_path: Path) -> None:
    with Vault.open(tmp_path / "home", cache_enabled=False) as v:
        v.push("m", _small(tmp_path / "s1", seed=1), version="v1")
        src2 = _small(tmp_path / "s2", seed=2)
        v.push("m", src2, version="v2")
        gone = [c for f in v.show("m@v1").files for c, _ in f.chunks or ()]
        kept = [c for f in v.show("m@v2").files for c, _ in f.chunks or ()]
        assert gone and kept
        assert v.gc(grace_seconds=0).packs_deleted == 0  # everything is live
        v.delete("m@v1")
        v.gc(grace_seconds=0)
        assert v.index.locate_chunks(gone) == {}
        assert set(v.index.locate_chunks(kept)) == set(kept)
        v.pull("m@v2", tmp_path / "out")
        assert v.verify(read_data=True).ok
    assert tree_bytes(tmp_path / "out") == tree_bytes(src2)


def test_an_old_writers_version_and_a_new_one_share_a_store_both_ways(
    tmp_path: Path, old_writer: pytest.MonkeyPatch
) -> None:
    src = _small(tmp_path / "src")
    with Vault.open(tmp_path / "home", cache_enabled=False) as v:
        old = v.push("m", src, version="v1").version  # as before: a recipe object per file
        assert _stored_manifest(v, old.commit)["format"] == 1
        assert _objects(v) == {f.sha256 for f in v.show("m@v1").files}
        old_writer.undo()
        # an unlabelled re-push of the same tree is unchanged, whatever format the latest has
        assert v.push("m", src).unchanged
        write_random(src / "new.bin", 5000, seed=99)
        new = v.push("m", src, version="v2").version
        assert _stored_manifest(v, new.commit)["format"] == 2
        new_sha = {f.path: f.sha256 for f in v.show("m@v2").files}["new.bin"]
        assert new_sha not in _objects(v)
        v.delete("m@v1")
        v.gc(grace_seconds=0)
        # the old recipe objects of files v2 holds inline stay (readers by SHA-256 may use them)
        assert _objects(v) == {f.sha256 for f in v.show("m@v2").files if f.path != "new.bin"}
        v.pull("m@v2", tmp_path / "out")
        assert v.verify(read_data=True).ok
        # the other way: an old writer after a new one writes its recipe objects, which the
        # index rows of the inline recipes must not stand in for
        old_writer.setattr("weightvault.core.manifest.INLINE_MAX_SIZE", -1)
        write_random(src / "newer.bin", 7000, seed=98)
        v.push("m", src, version="v3")
        assert {f.sha256 for f in v.show("m@v3").files} <= _objects(v)
        v.delete("m@v2")
        v.gc(grace_seconds=0)
        shutil.rmtree(tmp_path / "out")
        v.pull("m@v3", tmp_path / "out")
        assert v.verify(read_data=True).ok
    assert tree_bytes(tmp_path / "out") == tree_bytes(src)


def test_a_manifest_naming_unknown_chunks_inline_is_refused(tmp_path: Path) -> None:
    """What a bucket writer could put there: a well-formed manifest under its own commit id whose
    inline recipe names chunks the store does not have."""
    home = tmp_path / "home"
    with Vault.open(home) as v:
        v.push("m", _small(tmp_path / "src", 2), version="v1")
        bogus = Manifest("m", (FileEntry("x.bin", 10, "ab" * 32, ((b"\x01" * 32, 10),)),))
        commit, _ = v.store.put_manifest(bogus)
        v.store.create_version_ref("m", "bad", commit, datetime.now(UTC))
    with Vault.open(tmp_path / "fresh", store_url=(home / "store").as_uri()) as w:
        with pytest.raises(IntegrityError, match="not in the index"):
            w.pull("m@bad", tmp_path / "out")
        assert not (tmp_path / "out").exists()
        report = w.verify("m@bad")
        assert report.affected_versions["m@bad"] == ["m@bad:x.bin: 1 chunk(s) not in the index"]
        assert w.verify("m@v1").ok


def test_a_stored_manifest_whose_inline_lengths_do_not_add_up_is_refused(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with Vault.open(home) as v:
        v.push("m", _small(tmp_path / "src", 2), version="v1")
        cid = next(c for f in v.show("m@v1").files for c, _ in f.chunks or ())
        entry = {"chunks": [[cid.hex(), 9]], "path": "x.bin", "sha256": "ab" * 32, "size": 10}
        body = {"files": [entry], "format": 2, "lineage": [], "message": "", "metadata": {}}
        data = canonical_json({**body, "model": "m", "parent": None})
        commit = hashlib.sha256(data).hexdigest()[:40]
        v.backend.put(layout.manifest_key(commit), data)
        v.store.create_version_ref("m", "bad", commit, datetime.now(UTC))
        report = v.recover()
        assert not report.ok
        assert any("bad" in p and "do not add up" in p for p in report.problems), report.problems
        assert [r.label for r in v.index.list_versions("m")] == ["v1"]


def test_a_plain_version_with_inline_recipes_is_reencrypted(tmp_path: Path) -> None:
    home = tmp_path / "home"
    src = _small(tmp_path / "src")
    with Vault.open(home, cache_enabled=False) as v:
        v.push("m", src, version="v1")
    with Vault.open(home, encryption={"enabled": True}, cache_enabled=False) as v:
        v.push("m", _small(tmp_path / "s2", seed=2), version="v2")  # the model gets its keys
        v.rotate_keys(reencrypt=True)
        v.gc(grace_seconds=0)
        v.pull("m@v1", tmp_path / "out")
        assert v.verify(read_data=True).ok
        # the plain chunks of v1's files were converted and collected
        plain = [c for f in v.show("m@v1").files for c, _ in f.chunks or ()]
        assert plain and v.index.locate_chunks(plain) == {}
    assert tree_bytes(tmp_path / "out") == tree_bytes(src)


def test_an_uploaded_version_carries_small_files_inline_and_streams_them(tmp_path: Path) -> None:
    """The server's chunk-upload commit writes the same entries as a push, and the download path
    (``open_file``, behind the API and the Hub endpoint) reads the inline recipe."""
    small = bytes(range(256)) * 40
    big = write_random(tmp_path / "big.bin", INLINE_MAX_SIZE + 10, seed=3).read_bytes()
    with Vault.open(tmp_path / "home") as v:
        uploaded = []
        for path, data in (("small.bin", small), ("big.bin", big)):
            pieces = [bytes(p) for p in v.chunker.chunk_bytes(data)]
            v.put_chunks("m", [(chunk_id(p), p) for p in pieces])
            chunks = tuple((chunk_id(p), len(p)) for p in pieces)
            uploaded.append(
                UploadedFile(path, FileRecipe(hashlib.sha256(data).hexdigest(), len(data), chunks))
            )
        v.commit_upload("m", uploaded, version="v1")
        files = {f.path: f for f in v.show("m@v1").files}
        assert files["small.bin"].chunks is not None and files["big.bin"].chunks is None
        assert _objects(v) == {files["big.bin"].sha256}
        assert b"".join(v.open_file("m@v1", "small.bin").iter_bytes()) == small
        assert b"".join(v.open_file("m@v1", "big.bin").iter_bytes(5, 9)) == big[5:9]
        assert v.verify(read_data=True).ok
