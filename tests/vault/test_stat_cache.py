"""The stat cache: a re-push of unchanged files reads none of them, and nothing it vouches for
can ever put stale bytes into a version."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from weightvault.core.manifest import FileRecipe
from weightvault.vault.push import PushPipeline
from weightvault.vault.source import scan_source
from weightvault.vault.statcache import NS, StatCache, trusted
from weightvault.vault.vault import Vault

from ..conftest import tree_bytes, write_random


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths the push pipeline reads (small files and large ones)."""
    seen: list[str] = []
    small, hashed = PushPipeline._small_file, PushPipeline._hash_file

    def small_spy(self: PushPipeline, st: object) -> None:
        seen.append(st.source.path)  # type: ignore[attr-defined]
        small(self, st)  # type: ignore[arg-type]

    def hash_spy(self: PushPipeline, st: object) -> None:
        seen.append(st.source.path)  # type: ignore[attr-defined]
        hashed(self, st)  # type: ignore[arg-type]

    monkeypatch.setattr(PushPipeline, "_small_file", small_spy)
    monkeypatch.setattr(PushPipeline, "_hash_file", hash_spy)
    return seen


def _age(root: Path, seconds: int = 5) -> None:
    """Make every file look written a while ago: mtime seconds back, and (ctime cannot be set)
    wait until the second of the ctime that ``utime`` gave them is over."""
    past = time.time_ns() - seconds * NS
    for p in root.rglob("*"):
        if p.is_file():
            os.utime(p, ns=(past, past))
    ctime = max(p.stat().st_ctime_ns for p in root.rglob("*") if p.is_file())
    while time.time_ns() // NS <= ctime // NS:
        time.sleep(0.05)


def test_unchanged_files_are_not_read_again(
    vault: Vault, model_dir: Path, tmp_path: Path, reads: list[str]
) -> None:
    _age(model_dir)
    vault.push("m", model_dir, version="v1")
    assert sorted(reads) == sorted(tree_bytes(model_dir))
    reads.clear()
    vault.push("m", model_dir, version="v2")
    assert reads == []  # every file came from the stat cache
    vault.pull("m@v2", tmp_path / "out")
    assert tree_bytes(tmp_path / "out") == tree_bytes(model_dir)


def test_a_file_rewritten_with_the_same_size_and_mtime_is_read_again(
    vault: Vault, tmp_path: Path, reads: list[str]
) -> None:
    src = tmp_path / "src"
    write_random(src / "w.bin", 50_000, seed=1)
    _age(src)
    vault.push("m", src, version="v1")
    before = os.stat(src / "w.bin")
    write_random(src / "w.bin", 50_000, seed=2)  # same size, new bytes, in the same second
    os.utime(src / "w.bin", ns=(before.st_atime_ns, before.st_mtime_ns))  # mtime restored too
    after = os.stat(src / "w.bin")
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (
        before.st_size,
        before.st_mtime_ns,
        before.st_ino,
    )
    reads.clear()
    vault.push("m", src, version="v2")
    assert reads == ["w.bin"]
    vault.pull("m@v2", tmp_path / "out")
    assert (tmp_path / "out" / "w.bin").read_bytes() == (src / "w.bin").read_bytes()


def test_a_file_changed_within_the_second_it_was_hashed_is_read_again(tmp_path: Path) -> None:
    """On a clock of one-second granularity a rewrite in that second leaves every stat field
    equal; the entry must not be trusted then, only once its second is over."""
    f = tmp_path / "w.bin"
    f.write_bytes(b"x" * 100)
    second = 1_700_000_000 * NS
    os.utime(f, ns=(second, second))
    src = scan_source(f)[0]
    src = type(src)(src.path, src.abspath, src.size, second, src.inode, second, src.dev)  # coarse clock
    recipe = FileRecipe("00" * 32, 100, ((b"\x01" * 32, 100),))
    cache = StatCache(tmp_path / "sc.db")
    cache.record([(src, recipe, second + NS // 2)], "s")  # stat'ed in the file's own second
    assert not trusted(src, second + NS // 2)
    assert cache.lookup([src], "s") == {}
    cache.record([(src, recipe, second + NS)], "s")  # stat'ed a second later: the stat is proof
    assert cache.lookup([src], "s") == {f: recipe}
    assert cache.lookup([src], "another scheme") == {}
    cache.close()


def test_a_cached_recipe_whose_chunks_are_gone_is_not_used(
    vault: Vault, tmp_path: Path, reads: list[str]
) -> None:
    src = tmp_path / "src"
    write_random(src / "w.bin", 30_000, seed=3)
    _age(src)
    files = scan_source(src)
    bogus = FileRecipe("ab" * 32, 30_000, ((b"\x07" * 32, 30_000),))  # a chunk no store has
    scheme = f"plain:{vault.store.config.store_id}:{vault.chunker.params}"
    vault.stat_cache.record([(files[0], bogus, time.time_ns())], scheme)
    assert vault.stat_cache.lookup(files, scheme)  # the entry would match ...
    vault.push("m", src, version="v1")
    assert reads == ["w.bin"]  # ... but its chunk is not indexed, so the file was read
    vault.pull("m@v1", tmp_path / "out")
    assert (tmp_path / "out" / "w.bin").read_bytes() == (src / "w.bin").read_bytes()
