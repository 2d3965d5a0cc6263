from __future__ import annotations

import os
import stat
from pathlib import Path

from weightvault.vault.vault import Vault

from ..conftest import tree_bytes, write_random


def test_warm_pull_hardlinks_read_only_files_from_the_cache(
    vault: Vault, model_dir: Path, tmp_path: Path
) -> None:
    vault.push("m", model_dir)
    cold = vault.pull("m", tmp_path / "a")
    assert cold.bytes_from_store == cold.bytes_total and cold.bytes_from_cache == 0
    warm = vault.pull("m", tmp_path / "b")
    assert warm.bytes_from_cache == warm.bytes_total and warm.bytes_from_store == 0
    assert vault.cache is not None
    for f in vault.show("m").files:
        placed = tmp_path / "b" / f.path
        cached = vault.cache.path_for(f.sha256)
        assert os.path.samefile(placed, cached)
        assert not placed.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    assert tree_bytes(tmp_path / "b") == tree_bytes(model_dir)


def test_cache_evicts_least_recently_used_beyond_its_limit(tmp_path: Path) -> None:
    src = tmp_path / "src"
    for i in range(4):
        write_random(src / f"m{i}" / "w.bin", 3 << 20, seed=i)
    with Vault.open(tmp_path / "home", cache_max_size_gb=(7 << 20) / (1 << 30)) as v:
        for i in range(4):
            v.push(f"m{i}", src / f"m{i}")
        for i in range(3):
            v.pull(f"m{i}", tmp_path / f"o{i}")
        assert v.cache is not None
        assert v.cache.total_bytes() <= 7 << 20
        shas = {e.sha256 for e in v.cache.entries()}
        first = v.show("m0").files[0].sha256
        assert first not in shas  # the least recently used went first
        # using m1 again makes it recent: pulling m3 must evict m2, not m1
        v.pull("m1", tmp_path / "again")
        v.pull("m3", tmp_path / "o3")
        shas = {e.sha256 for e in v.cache.entries()}
        assert v.show("m1").files[0].sha256 in shas and v.show("m2").files[0].sha256 not in shas
        # evicted entries do not take files away from where they were placed
        assert (tmp_path / "o0" / "w.bin").read_bytes() == (src / "m0" / "w.bin").read_bytes()


def test_a_cache_entry_modified_through_a_link_is_never_reused(
    vault: Vault, model_dir: Path, tmp_path: Path
) -> None:
    vault.push("m", model_dir)
    vault.pull("m", tmp_path / "a")
    victim = tmp_path / "a" / "config.json"
    victim.chmod(0o644)  # a user makes the placed file writable and edits it in place
    victim.write_text('{"hidden_size": 99}')
    vault.pull("m", tmp_path / "b")
    assert (tmp_path / "b" / "config.json").read_text() == '{"hidden_size": 64}'


def test_files_larger_than_the_cache_bypass_it(tmp_path: Path, model_dir: Path) -> None:
    with Vault.open(tmp_path / "home", cache_max_size_gb=(1 << 20) / (1 << 30)) as v:
        v.push("m", model_dir)
        v.pull("m", tmp_path / "o")
        assert v.cache is not None
        assert all(e.size <= 1 << 20 for e in v.cache.entries())
        assert tree_bytes(tmp_path / "o") == tree_bytes(model_dir)


def test_cache_disabled(tmp_path: Path, model_dir: Path) -> None:
    with Vault.open(tmp_path / "home", cache_enabled=False) as v:
        v.push("m", model_dir)
        v.pull("m", tmp_path / "o")
        assert v.cache is None
        assert not (tmp_path / "home" / "cache").exists()
        assert tree_bytes(tmp_path / "o") == tree_bytes(model_dir)
