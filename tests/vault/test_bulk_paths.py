"""The throughput paths of push and pull keep the format's guarantees.

* Packs are sealed by a background thread: a push still commits only after every pack it needs
  is durable and indexed, and a failure there leaves nothing visible and resumes.
* Many small objects (a push's recipes, a pull's small cache entries) are made durable as one
  batch (``storage.batch_sync``), not one fsync each, and only then get their names.
* A cold pull whose placement would copy writes the destination in the same pass as the cache
  entry: no second read, and a corrupt pack is still caught, naming the file, with nothing left.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from pathlib import Path
from typing import Any

import pytest

from weightvault.cas.hashing import chunk_id
from weightvault.core import layout
from weightvault.core.errors import CorruptObjectError, DiskFullError, StorageError
from weightvault.storage import batch_sync, oscaps
from weightvault.storage.local import LocalBackend
from weightvault.vault.vault import Vault

from ..conftest import tree_bytes, write_random

pytestmark = pytest.mark.os_paths


class _Calls:
    """How many times a counted function was called."""

    n = 0


def _count(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str) -> _Calls:
    """Count the calls of ``owner.name`` (a function or a method) while passing them through."""
    calls = _Calls()
    real = getattr(owner, name)

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.n += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, counted)
    return calls


def _small_tree(root: Path, n: int) -> Path:
    for i in range(n):
        write_random(root / f"d{i % 5}" / f"f{i:03d}.bin", 500 + 131 * i, seed=i)
    return root


def _model(root: Path) -> Path:
    """Three multi-chunk files (several packs at 1 MiB) and small ones."""
    for i in range(3):
        write_random(root / f"shard-{i}.bin", 3_000_000, seed=10 + i)
    write_random(root / "tok" / "vocab.bin", 40_000, seed=3)
    (root / "config.json").write_text('{"hidden_size": 64}')
    return root


def _pack_tmp_files(home: Path) -> list[Path]:
    return [p for p in (home / "store" / ".tmp").iterdir()]


# ---- packs sealed in the background ------------------------------------------------------------


def test_a_push_commits_only_once_every_pack_is_sealed_and_a_crash_there_recovers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = _model(tmp_path / "src")
    home = tmp_path / "home"
    seen: dict[str, Any] = {}

    def crash_at_commit(self: Vault, model: str, *args: Any) -> str:
        # the moment a version would become visible: every pack the push wrote must be durable
        # in the store and indexed already, and no pack is still being written
        packs = self.index.pack_ids_for_chunks(
            {cid for f in (src / "shard-0.bin", src / "shard-1.bin") for cid in _chunk_ids(self, f)}
        )
        seen["packs"] = packs
        seen["stored"] = all(self.primary.exists(layout.pack_key(p)) for p in packs)
        seen["temp"] = _pack_tmp_files(home)
        raise RuntimeError("power cut before the ref")

    with Vault.open(home, pack_size_mb=1) as v:
        monkeypatch.setattr(Vault, "_create_ref", crash_at_commit)
        with pytest.raises(RuntimeError, match="power cut"):
            v.push("m", src)
        monkeypatch.undo()
        assert len(seen["packs"]) >= 3 and seen["stored"] and seen["temp"] == []
        assert v.list_models() == []
        assert not list(v.backend.list(layout.REFS))
    with Vault.open(home, pack_size_mb=1) as v:  # the next process resumes from what is durable
        result = v.push("m", src)
        assert result.chunks_new == 0 and result.bytes_written == 0
        v.pull("m", tmp_path / "out")
        assert v.verify(read_data=True).ok
    assert tree_bytes(tmp_path / "out") == tree_bytes(src)


def _chunk_ids(v: Vault, path: Path) -> list[bytes]:
    return [chunk_id(c) for c in v.chunker.chunk_bytes(path.read_bytes())]


def test_a_pack_that_fails_to_seal_fails_the_push_and_leaves_nothing_visible(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = _model(tmp_path / "src")
    home = tmp_path / "home"
    real_put = LocalBackend.put
    index_puts = {"n": 0}

    def put(self: LocalBackend, key: str, data: Any, **kw: Any) -> None:
        if key.startswith(layout.INDEX):
            index_puts["n"] += 1
            if index_puts["n"] == 2:  # the second pack's index object: in the sealing thread
                raise DiskFullError("disk full while writing an index object")
        real_put(self, key, data, **kw)

    with Vault.open(home, pack_size_mb=1) as v:
        monkeypatch.setattr(LocalBackend, "put", put)
        with pytest.raises(DiskFullError):
            v.push("m", src)
        monkeypatch.undo()
        assert v.list_models() == []
        assert not list(v.backend.list(layout.REFS)) and not list(v.backend.list(layout.MANIFESTS))
        assert _pack_tmp_files(home) == []  # no half-written pack left behind
        v.push("m", src)
        v.pull("m", tmp_path / "out")
        assert v.verify(read_data=True).ok
    assert tree_bytes(tmp_path / "out") == tree_bytes(src)


# ---- many small objects made durable as one batch ----------------------------------------------


def test_put_many_makes_a_batch_durable_with_two_syncs_not_one_per_object(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, os_paths: str
) -> None:
    backend = LocalBackend(tmp_path / "store")
    items = [(layout.recipe_key(f"ab{i:062x}"), f"body {i}".encode()) for i in range(200)]
    fsyncs = _count(monkeypatch, os, "fsync")
    if os_paths == "native":
        syncs = _count(monkeypatch, oscaps, "syncfs")
    backend.put_many(items)
    for key, body in items:
        assert backend.get(key) == body
    assert list((tmp_path / "store" / ".tmp").iterdir()) == []
    if os_paths == "native":
        assert syncs.n == 2  # the bytes, then the names
        assert fsyncs.n <= 2  # only the new fan-out folders' parents
    else:  # no syncfs: every file and its folder, one by one (slower, as durable)
        assert fsyncs.n >= len(items)


def test_put_many_that_fails_leaves_no_temp_files(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path / "store")
    (tmp_path / "store" / "recipes").write_text("a file where a folder must be")
    with pytest.raises(StorageError):
        backend.put_many(
            [(layout.recipe_key("ab" + "0" * 62), b"x"), (layout.recipe_key("cd" + "0" * 62), b"y")]
        )
    assert list((tmp_path / "store" / ".tmp").iterdir()) == []


def test_a_push_of_many_files_writes_its_recipes_as_one_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = _small_tree(tmp_path / "src", 120)
    # an encrypted model keeps a (sealed) recipe object per file; a plain one's small files carry
    # theirs inline in the manifest and write none
    with Vault.open(tmp_path / "home", encryption={"enabled": True}) as v:
        batches = _count(monkeypatch, LocalBackend, "put_many")
        v.push("m", src, version="v1")
        monkeypatch.undo()
        assert batches.n == 1
        assert len(list(v.backend.list(layout.RECIPES))) == 120
        v.pull("m@v1", tmp_path / "out")
    assert tree_bytes(tmp_path / "out") == tree_bytes(src)
    with Vault.open(tmp_path / "plain") as v:
        batches = _count(monkeypatch, LocalBackend, "put_many")
        v.push("m", src, version="v1")
        monkeypatch.undo()
        assert batches.n == 0
        assert list(v.backend.list(layout.RECIPES)) == []


def test_small_cache_entries_of_a_pull_are_synced_as_one_batch_then_admitted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, os_paths: str
) -> None:
    src = _small_tree(tmp_path / "src", 80)
    with Vault.open(tmp_path / "home", cache_fill="always") as v:
        v.push("m", src)
        fsyncs = _count(monkeypatch, os, "fsync")
        result = v.pull("m", tmp_path / "a", link_mode="copy")
        monkeypatch.undo()
        if os_paths == "native":
            assert fsyncs.n < 10  # not one per file: one syncfs for the batch
        assert result.placement == {"copy": 80}
        assert v.cache is not None
        for f in v.show("m").files:
            entry = v.cache.path_for(f.sha256)
            assert entry.read_bytes() == (src / f.path).read_bytes()
            assert stat.S_IMODE(entry.stat().st_mode) == 0o444
            assert not os.path.samefile(entry, tmp_path / "a" / f.path)
        assert list((v.cache.root / "tmp").iterdir()) == []
        warm = v.pull("m", tmp_path / "b", link_mode="copy")
        assert warm.bytes_from_cache == warm.bytes_total
    assert tree_bytes(tmp_path / "a") == tree_bytes(src) == tree_bytes(tmp_path / "b")


# ---- one pass: destination and cache written together -----------------------------------------


def test_a_cold_pull_that_copies_writes_destination_and_cache_in_one_pass(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = _model(tmp_path / "src")
    with Vault.open(tmp_path / "home", cache_fill="always") as v:
        v.push("m", src)

        def no_second_read(*_a: Any, **_k: Any) -> None:
            raise AssertionError("a cold pull read a cache entry back to copy it")

        monkeypatch.setattr(shutil, "copyfile", no_second_read)  # placement imports it on use
        result = v.pull("m", tmp_path / "a", link_mode="copy")
        monkeypatch.undo()
        assert result.placement == {"copy": 5} and result.bytes_from_store == result.bytes_total
        assert v.cache is not None
        for f in v.show("m").files:
            entry = v.cache.path_for(f.sha256)
            assert entry.read_bytes() == (src / f.path).read_bytes()
            placed = tmp_path / "a" / f.path
            assert not os.path.samefile(entry, placed)
            assert placed.stat().st_mode & stat.S_IWUSR  # the user's own file
        warm = v.pull("m", tmp_path / "b", link_mode="copy")
        assert warm.bytes_from_cache == warm.bytes_total
    assert tree_bytes(tmp_path / "a") == tree_bytes(src) == tree_bytes(tmp_path / "b")


@pytest.mark.parametrize("victim", ["shard-1.bin", "tok/vocab.bin"])
def test_a_corrupt_pack_in_a_one_pass_pull_names_the_file_and_leaves_nothing(
    tmp_path: Path, victim: str
) -> None:
    src = _model(tmp_path / "src")
    dest = tmp_path / "out" / "deep"
    with Vault.open(tmp_path / "home") as v:
        v.push("m", src)
        sha = next(f.sha256 for f in v.show("m").files if f.path == victim)
        recipe = v._recipe(sha, "m")
        cid = recipe.chunks[len(recipe.chunks) // 2][0]
        loc = v.index.locate_chunks([cid])[cid]
        pack = tmp_path / "home" / "store" / layout.pack_key(loc.pack_id)
        os.chmod(pack, 0o644)
        with open(pack, "r+b") as f:
            f.seek(loc.offset + loc.stored_len // 2)
            byte = f.read(1)
            f.seek(-1, os.SEEK_CUR)
            f.write(bytes([byte[0] ^ 0xFF]))
        with pytest.raises(CorruptObjectError, match=victim.replace(".", r"\.")):
            v.pull("m", dest, link_mode="copy")
        assert not (tmp_path / "out").exists()  # the folders it made are gone too
        assert v.cache is not None
        assert not v.cache.path_for(sha).exists()
        assert list((v.cache.root / "tmp").iterdir()) == []


def test_a_pull_whose_batch_sync_fails_admits_nothing_and_leaves_the_destination_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An entry gets its cache name only after the sync that makes it durable: when the sync
    reports a write-back error, no entry of the batch is admitted and the pull is undone."""
    src = _small_tree(tmp_path / "src", 30)
    with Vault.open(tmp_path / "home", cache_fill="always") as v:
        v.push("m", src)

        def failing_sync(self: batch_sync.Batch) -> None:
            raise OSError(errno.EIO, "Input/output error")

        monkeypatch.setattr(batch_sync.Batch, "sync", failing_sync)
        with pytest.raises(StorageError, match="Input/output error"):
            v.pull("m", tmp_path / "out", link_mode="copy")
        monkeypatch.undo()
        assert not (tmp_path / "out").exists()
        assert v.cache is not None
        assert list(v.cache.entries()) == []
        assert list((v.cache.root / "tmp").iterdir()) == []
        v.pull("m", tmp_path / "out", link_mode="copy")
    assert tree_bytes(tmp_path / "out") == tree_bytes(src)


def test_the_one_pass_pull_is_only_for_copies_a_hardlink_fallback_still_links(tmp_path: Path) -> None:
    src = _model(tmp_path / "src")
    with Vault.open(tmp_path / "home", link_fallback="hardlink") as v:
        v.push("m", src)
        cold = v.pull("m", tmp_path / "a")
        if "reflink" in cold.placement:
            pytest.skip("this filesystem clones, so auto never reaches its fallback here")
        assert cold.placement == {"hardlink": 5}
        assert v.cache is not None
        for f in v.show("m").files:
            assert os.path.samefile(tmp_path / "a" / f.path, v.cache.path_for(f.sha256))
    assert tree_bytes(tmp_path / "a") == tree_bytes(src)
