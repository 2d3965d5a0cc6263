"""A push of many small files keeps every check while its per-file cost shrinks.

Small files are read, hashed and chunked in batches (one pool task per batch, one open and one
read per file); the recipe batch is written by one thread with raw descriptors; the source scan
stats each file once. These tests pin what must not change on those paths: a file changed or
removed mid-batch is refused with nothing committed and nothing half-written visible, reads
that come back short still give the whole file, and the recipe objects, scan results and
pickle findings are exactly what the slower paths produced.
"""

from __future__ import annotations

import errno
import json
import os
import pickle
import random
import sqlite3
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from weightvault.cas.pickle_scan import may_hold_pickle, scan_file
from weightvault.core import layout
from weightvault.core.errors import SourceNotFoundError, StorageError
from weightvault.core.manifest import FileRecipe, canonical_json
from weightvault.storage import oscaps
from weightvault.storage.local import LocalBackend
from weightvault.vault import push as push_module
from weightvault.vault.filescan import FileChangedError
from weightvault.vault.push import PushPipeline, _batches, _FileState, _read_small
from weightvault.vault.source import SourceFile, scan_source
from weightvault.vault.statcache import NS, StatCache
from weightvault.vault.vault import Vault

from ..conftest import tree_bytes, write_random

pytestmark = pytest.mark.os_paths


def _tree(root: Path, n: int) -> Path:
    for i in range(n):
        write_random(root / f"d{i % 7}" / f"f{i:04d}.bin", 300 + 97 * i, seed=i)
    return root


def _nothing_committed(v: Vault, home: Path) -> None:
    assert v.list_models() == []
    assert not list(v.backend.list(layout.REFS))
    assert not list(v.backend.list(layout.MANIFESTS))
    assert not list(v.backend.list(layout.RECIPES))  # the recipe batch comes after every file is read
    assert list((home / "store" / ".tmp").iterdir()) == []


# ---- batches -------------------------------------------------------------------------------------


def _before_reading(monkeypatch: pytest.MonkeyPatch, path: str, act: Callable[[_FileState], None]) -> None:
    """Run ``act`` just before the push reads the small file at ``path`` (the source changing
    under a push that is already under way)."""
    real = PushPipeline._small_file

    def reading(self: PushPipeline, st: _FileState) -> None:
        if st.source.path == path:
            act(st)
        real(self, st)

    monkeypatch.setattr(PushPipeline, "_small_file", reading)


def test_small_files_are_cut_into_few_batches_that_cover_every_file_in_order(tmp_path: Path) -> None:
    states = [_FileState(SourceFile(f"f{i:04d}", tmp_path / f"f{i}", 4096, 0, i)) for i in range(2000)]
    batches = _batches(states, 2)
    assert [st for b in batches for st in b] == states  # all of them, each once, in order
    assert all(len(b) <= push_module.BATCH_FILES for b in batches)
    assert all(sum(st.source.size for st in b) <= push_module.BATCH_BYTES for b in batches)
    assert len(batches) < len(states) // 100  # a task per batch, not per file
    few = _batches(states[:40], 2)
    assert len(few) >= 8  # enough tasks for both workers to finish together
    assert _batches([], 2) == []


def test_a_push_of_many_small_files_runs_a_task_per_batch_and_rebuilds_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = _tree(tmp_path / "src", 700)
    tasks: list[int] = []
    real = PushPipeline._small_files

    def counted(self: PushPipeline, batch: list[_FileState]) -> None:
        tasks.append(len(batch))
        real(self, batch)

    monkeypatch.setattr(PushPipeline, "_small_files", counted)
    seen: list[int] = []
    with Vault.open(tmp_path / "home") as v:
        v.push("m", src, version="v1", progress=seen.append)
        assert sum(tasks) == 700 and len(tasks) < 700 // 10
        assert sum(seen) == sum(len(b) for b in tree_bytes(src).values())  # progress counts every byte
        v.pull("m@v1", tmp_path / "out")
        assert v.verify(read_data=True).ok
    assert tree_bytes(tmp_path / "out") == tree_bytes(src)


def test_a_file_that_changes_size_mid_batch_is_refused_and_nothing_is_committed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = _tree(tmp_path / "src", 300)
    victim = src / "d3" / "f0150.bin"

    def grow_a_later_file(st: _FileState) -> None:
        with open(victim, "ab") as f:
            f.write(b"more")

    # f0010 is read before the victim, in the same batch or not
    _before_reading(monkeypatch, "d3/f0010.bin", grow_a_later_file)
    with Vault.open(tmp_path / "home") as v:
        with pytest.raises(FileChangedError, match=r"f0150\.bin"):
            v.push("m", src, version="v1")
        _nothing_committed(v, tmp_path / "home")
        monkeypatch.undo()
        v.push("m", src, version="v1")  # once the tree is stable, the push goes through
        v.pull("m@v1", tmp_path / "out")
    assert tree_bytes(tmp_path / "out") == tree_bytes(src)


def test_a_batch_that_fails_midway_leaves_no_version_and_no_objects_but_its_packs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = _tree(tmp_path / "src", 300)
    _before_reading(monkeypatch, "d1/f0001.bin", lambda st: (src / "d5" / "f0201.bin").unlink())
    with Vault.open(tmp_path / "home") as v:
        with pytest.raises(SourceNotFoundError, match=r"f0201\.bin"):
            v.push("m", src, version="v1")
        _nothing_committed(v, tmp_path / "home")
        assert v.verify(read_data=True).ok  # what was sealed before the failure is whole


def test_a_file_rewritten_in_place_with_the_same_size_is_still_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = _tree(tmp_path / "src", 50)
    target = src / "d2" / "f0030.bin"

    def rewrite(st: _FileState) -> None:
        data = target.read_bytes()
        target.write_bytes(bytes(255 - b for b in data))
        os.utime(target, ns=(st.source.mtime_ns + 10**9, st.source.mtime_ns + 10**9))

    _before_reading(monkeypatch, "d2/f0030.bin", rewrite)
    with Vault.open(tmp_path / "home") as v:
        with pytest.raises(FileChangedError, match=r"f0030\.bin"):
            v.push("m", src)
        _nothing_committed(v, tmp_path / "home")


# ---- one read per small file ---------------------------------------------------------------------


def _source(path: Path) -> SourceFile:
    st = path.stat()
    return SourceFile(path.name, path, st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns, st.st_dev)


def test_a_small_file_is_read_whole_even_when_reads_come_back_short(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "f.bin"
    data = write_random(path, 10_000, seed=1).read_bytes()
    src = _source(path)
    real = os.read
    calls: list[int] = []

    def short(fd: int, n: int) -> bytes:
        calls.append(n)
        return real(fd, min(n, 777))

    monkeypatch.setattr(push_module.os, "read", short)
    assert _read_small(src) == data
    assert len(calls) > 10
    monkeypatch.undo()
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert _read_small(_source(empty)) == b""


@pytest.mark.parametrize("change", [b"grown", b""])
def test_a_small_file_of_another_size_than_scanned_is_refused(tmp_path: Path, change: bytes) -> None:
    path = tmp_path / "f.bin"
    data = write_random(path, 5000, seed=2).read_bytes()
    src = _source(path)
    path.write_bytes(data + change if change else data[:-10])
    with pytest.raises(FileChangedError, match="changed size"):
        _read_small(src)


# ---- recipe objects and scan results are the same bytes --------------------------------------


def test_recipes_encode_to_the_canonical_json_of_the_format(tmp_path: Path) -> None:
    rng = random.Random(5)
    for n in [0, 1, 2, 17]:
        chunks = tuple((rng.randbytes(32), rng.randint(1, 1 << 20)) for _ in range(n))
        recipe = FileRecipe(rng.randbytes(32).hex(), sum(c[1] for c in chunks), chunks)
        generic = canonical_json(
            {
                "format": 1,
                "sha256": recipe.sha256,
                "size": recipe.size,
                "chunks": [[cid.hex(), k] for cid, k in chunks],
            }
        )
        assert recipe.to_bytes() == generic
        assert FileRecipe.from_bytes(recipe.to_bytes()) == recipe
    odd = FileRecipe('not "hex"', 0, ())  # not a SHA-256: still canonical, escapes and all
    assert json.loads(odd.to_bytes())["sha256"] == 'not "hex"'


def test_the_scan_finds_the_same_files_with_links_ignores_and_order(tmp_path: Path) -> None:
    root = tmp_path / "src"
    write_random(root / "b" / "x.bin", 10, seed=1)
    write_random(root / "a.bin", 20, seed=2)
    write_random(root / "real" / "deep" / "y.bin", 30, seed=3)
    write_random(root / ".git" / "HEAD", 5, seed=4)
    write_random(root / "c" / "__pycache__" / "m.pyc", 5, seed=5)
    os.symlink("real", root / "linked")  # a folder link inside the source: followed
    os.symlink("a.bin", root / "z.bin")  # a file link inside: the target's bytes
    files = scan_source(root)
    assert [f.path for f in files] == [
        "a.bin",
        "b/x.bin",
        "linked/deep/y.bin",
        "real/deep/y.bin",
        "z.bin",
    ]
    by_path = {f.path: f for f in files}
    assert by_path["linked/deep/y.bin"].abspath == (root / "real" / "deep" / "y.bin").resolve()
    assert by_path["z.bin"].abspath == (root / "a.bin").resolve()
    for f in files:
        st = f.abspath.stat()
        assert (f.size, f.mtime_ns, f.inode, f.ctime_ns, f.dev) == (
            st.st_size,
            st.st_mtime_ns,
            st.st_ino,
            st.st_ctime_ns,
            st.st_dev,
        )
    assert [f.path for f in scan_source(root, default_ignores=False)][:2] == [".git/HEAD", "a.bin"]


def _pickles(tmp_path: Path) -> list[Path]:
    out = []
    for proto in range(6):
        p = tmp_path / f"p{proto}.pkl"
        p.write_bytes(pickle.dumps({"w": [1, 2, 3], "f": os.getcwd}, protocol=proto))
        out.append(p)
    z = tmp_path / "model.pt"
    with zipfile.ZipFile(z, "w") as archive:
        archive.writestr("model/data.pkl", pickle.dumps({"a": 1}, protocol=2))
    out.append(z)
    for i, head in enumerate([b"", b"P", b"PK", b"{}", b"\x80", b"\x80\x09xx", b"\x00\x01", b"hello"]):
        p = tmp_path / f"other{i}"
        p.write_bytes(head + os.urandom(i * 3))
        out.append(p)
    return out


def test_files_skipped_by_their_first_bytes_are_exactly_those_with_no_pickle(tmp_path: Path) -> None:
    for path in _pickles(tmp_path):
        with open(path, "rb") as f:
            report = scan_file(f, path.stat().st_size)
            f.seek(0)
            head = f.read(4)
        if report is not None:
            assert may_hold_pickle(head), path.name
        if path.suffix in (".pkl", ".pt"):
            assert report is not None, path.name


def test_a_push_records_the_same_pickle_findings_with_the_head_check(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "evil.pkl").write_bytes(pickle.dumps(os.system, protocol=4))
    (src / "plain.bin").write_bytes(b"\x00" * 100)
    (src / "config.json").write_text("{}")
    with Vault.open(tmp_path / "home") as v:
        v.push("m", src, version="v1")
        safety = v.show("m@v1").safety
    assert set(safety) == {"evil.pkl"}
    assert safety["evil.pkl"]["verdict"] == "dangerous"


# ---- the recipe batch ------------------------------------------------------------------------------


def test_a_batch_in_a_fresh_store_syncs_its_new_folders_with_the_names_not_one_by_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, os_paths: str
) -> None:
    backend = LocalBackend(tmp_path / "store")
    items = [(layout.recipe_key(f"{i:02x}" + "0" * 62), f"body {i}".encode()) for i in range(256)]
    fsynced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        fsynced.append(os.readlink(f"/proc/self/fd/{fd}") if os.path.exists("/proc/self/fd") else "?")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    backend.put_many(items)
    monkeypatch.undo()
    for key, body in items:
        assert backend.get(key) == body
    if os_paths == "native" and oscaps.syncfs is not None:
        assert fsynced == []  # 256 new folders: made durable by the batch's second syncfs
    else:  # one by one: every file, every folder, and the folder that holds the new ones
        assert str(tmp_path / "store" / "recipes") in fsynced
        assert len(fsynced) >= len(items) + 256
    again = LocalBackend(tmp_path / "store")  # a later batch into the same folders
    again.put_many([(layout.recipe_key("00" + "1" * 62), b"later")])
    assert again.get(layout.recipe_key("00" + "1" * 62)) == b"later"


def test_a_batch_whose_writes_fail_midway_leaves_no_temp_and_no_object(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = LocalBackend(tmp_path / "store")
    items = [(layout.recipe_key(f"{i:02x}" + "a" * 62), b"x" * 100) for i in range(50)]
    real = os.write
    count = [0]

    def full_after_20(fd: int, data: Any) -> int:
        count[0] += 1
        if count[0] > 20:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data)

    monkeypatch.setattr(os, "write", full_after_20)
    with pytest.raises(StorageError):
        backend.put_many(items)
    monkeypatch.undo()
    assert list((tmp_path / "store" / ".tmp").iterdir()) == []
    assert not list(backend.list(layout.RECIPES))
    backend.put_many(items)  # and the same batch goes through afterwards
    assert all(backend.get(k) == b for k, b in items)


# ---- the stat cache answers a whole tree in a few queries -----------------------------------------


def test_the_stat_cache_answers_more_files_than_one_query_holds(tmp_path: Path) -> None:
    root = tmp_path / "src"
    for i in range(900):  # more than two queries' worth of paths
        (root / f"d{i % 3}").mkdir(parents=True, exist_ok=True)
        (root / f"d{i % 3}" / f"f{i:04d}").write_bytes(b"x" * (i + 1))
    files = scan_source(root)
    second = 1_700_000_000 * NS
    aged = [SourceFile(f.path, f.abspath, f.size, second, f.inode, second, f.dev) for f in files]
    recipes = [
        FileRecipe(f"{i:064x}", f.size, ((bytes([i % 256]) * 32, f.size),)) for i, f in enumerate(aged)
    ]
    cache = StatCache(tmp_path / "sc.db")
    findings = {aged[5].path: {"verdict": "dangerous"}}
    cache.record([(f, r, second + NS) for f, r in zip(aged, recipes, strict=True)], "s", findings)
    hits = cache.lookup(aged, "s")
    assert hits == {f.abspath: r for f, r in zip(aged, recipes, strict=True)}
    checked = cache.checked(aged)
    assert len(checked) == 900 and checked[aged[5].abspath] == {"verdict": "dangerous"}
    assert sum(v is not None for v in checked.values()) == 1
    changed = [
        *aged[:400],
        SourceFile(
            aged[400].path,
            aged[400].abspath,
            aged[400].size,
            second + 1,
            aged[400].inode,
            second,
            aged[400].dev,
        ),
        *aged[401:],
    ]
    assert aged[400].abspath not in cache.lookup(changed, "s")  # another mtime: no hint
    assert aged[400].abspath not in cache.checked(changed)
    assert len(cache.lookup(changed, "s")) == 899
    assert cache.lookup(aged, "other") == {}
    cache.close()


# ---- one index probe per batch ---------------------------------------------------------------------


def test_a_batch_probes_the_index_once_and_stores_only_chunks_it_lacks(
    vault: Vault, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _tree(tmp_path / "a", 120)
    vault.push("m", first, version="v1")
    second = tmp_path / "b"  # the same contents under other names (no stat-cache hint), and news
    for i, f in enumerate(sorted(p for p in first.rglob("*") if p.is_file())):
        (second / "copy").mkdir(parents=True, exist_ok=True)
        (second / "copy" / f"{i:04d}.bin").write_bytes(f.read_bytes())
    for i in range(10):
        (second / "new" / f"{i}.bin").parent.mkdir(parents=True, exist_ok=True)
        (second / "new" / f"{i}.bin").write_bytes(b"twice" * 100 if i < 2 else os.urandom(2000 + i))
    probes: list[int] = []
    one_by_one: list[bytes] = []
    real_many = type(vault.index).has_chunks
    real_one = type(vault.index).has_chunk

    def many(self: Any, ids: Any) -> set[bytes]:
        probes.append(len(ids))
        return real_many(self, ids)

    def one(self: Any, cid: bytes) -> bool:
        one_by_one.append(cid)
        return real_one(self, cid)

    monkeypatch.setattr(type(vault.index), "has_chunks", many)
    monkeypatch.setattr(type(vault.index), "has_chunk", one)
    result = vault.push("m", second, version="v2")
    monkeypatch.undo()
    assert one_by_one == []  # small files: never a probe per chunk
    assert 0 < len(probes) < 130 // 10
    assert sum(probes) == 130 - 1  # every distinct chunk once ("twice" is one chunk)
    assert result.chunks_total == 130 and result.chunks_new == 9  # 8 random + the shared one
    assert vault.index.has_chunks([]) == set()
    vault.pull("m@v2", tmp_path / "out")
    assert tree_bytes(tmp_path / "out") == tree_bytes(second)
    assert vault.verify(read_data=True).ok


def test_recipes_in_use_again_restart_their_grace_period_in_both_indexes(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from weightvault.registry.index import RegistryIndex
    from weightvault.registry.lightindex import LightIndex

    first, later = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC)
    old = [(f"{i:064x}", i, b"body %d" % i) for i in range(1200)]  # more than one batch of names
    new = [(f"{i:064x}", i, b"body %d" % i) for i in range(1100, 1300)]
    light = LightIndex(tmp_path / "light.db", create=True)
    light.put_recipes(old, first)
    light.put_recipes(new, later)
    light.close()
    full = RegistryIndex.sqlite(tmp_path / "full.db")
    full.put_recipes(old, first)
    full.put_recipes(new, later)
    full.close()
    for db in ("light.db", "full.db"):
        con = sqlite3.connect(tmp_path / db)
        rows = dict(con.execute("SELECT name, created_at FROM recipes").fetchall())
        con.close()
        assert len(rows) == 1300
        assert {rows[f"{i:064x}"] for i in range(1100)} == {"2026-01-01 00:00:00.000000"}, db
        assert {rows[f"{i:064x}"] for i in range(1100, 1300)} == {"2026-02-01 00:00:00.000000"}, db
