from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

import pytest

from weightvault.vault.vault import Vault

from ..conftest import tree_bytes, write_random

# push, pull, cache and durability also run with the Linux-only paths off (as on macOS)
pytestmark = pytest.mark.os_paths


def test_hardlink_mode_places_read_only_links_of_the_cache(
    vault: Vault, model_dir: Path, tmp_path: Path
) -> None:
    vault.push("m", model_dir)
    cold = vault.pull("m", tmp_path / "a", link_mode="hardlink")
    assert cold.bytes_from_store == cold.bytes_total and cold.bytes_from_cache == 0
    warm = vault.pull("m", tmp_path / "b", link_mode="hardlink")
    assert warm.bytes_from_cache == warm.bytes_total and warm.bytes_from_store == 0
    assert warm.link_mode == "hardlink" and warm.placement == {"hardlink": 4}
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
    with Vault.open(tmp_path / "home", cache_max_size_gb=(7 << 20) / (1 << 30), cache_fill="always") as v:
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
    vault.pull("m", tmp_path / "a", link_mode="hardlink")
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
        result = v.pull("m", tmp_path / "o")
        assert v.cache is None
        assert result.placement == {"written": 4}
        assert not (tmp_path / "home" / "cache").exists()
        assert tree_bytes(tmp_path / "o") == tree_bytes(model_dir)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_an_encrypted_models_plaintext_is_cached_for_this_user_only(home: Path, tmp_path: Path) -> None:
    """Folders 0700, files 0400 once admitted, 0600 while being written; nothing in the shared area."""
    src = tmp_path / "src"
    write_random(src / "w.safetensors", 3 << 20, seed=5)
    (src / "config.json").write_text("{}")
    with Vault.open(home, encryption={"enabled": True}) as v:
        v.push("secret", src)
        assert v.cache is not None
        private_tmp = v.cache.temp_file(private=True).parent
        temp_modes: set[int] = set()

        def watch(_: int) -> None:  # called as bytes are written: look at the temp files then
            for p in private_tmp.iterdir():
                with contextlib.suppress(FileNotFoundError):  # another file's temp admitted meanwhile
                    temp_modes.add(_mode(p))

        result = v.pull("secret", tmp_path / "out", link_mode="hardlink", progress=watch)
        assert result.placement == {"hardlink": 2}
        assert temp_modes == {0o600}
        entries = list(v.cache.entries())
        assert len(entries) == 2 and all(e.private for e in entries)
        for e in entries:
            assert _mode(e.path) == 0o400
            folder = e.path.parent
            while folder != v.cache.root:
                assert _mode(folder) == 0o700, folder
                folder = folder.parent
            assert os.path.samefile(
                e.path, tmp_path / "out" / ("w.safetensors" if e.size > 100 else "config.json")
            )
        assert not any((v.cache.root / "files").iterdir())  # the shared area holds none of it
        assert tree_bytes(tmp_path / "out") == tree_bytes(src)
        warm = v.pull("secret", tmp_path / "again")
        assert warm.bytes_from_cache == warm.bytes_total


def test_plain_models_are_shared_by_default_and_private_when_configured(
    model_dir: Path, tmp_path: Path
) -> None:
    with Vault.open(tmp_path / "h1", cache_fill="always") as v:
        v.push("m", model_dir)
        v.pull("m", tmp_path / "o1")
        assert v.cache is not None
        entries = list(v.cache.entries())
        assert entries and all(not e.private and _mode(e.path) == 0o444 for e in entries)
    with Vault.open(tmp_path / "h2", cache_permissions="private", cache_fill="always") as v:
        v.push("m", model_dir)
        v.pull("m", tmp_path / "o2")
        assert v.cache is not None
        entries = list(v.cache.entries())
        assert entries and all(e.private and _mode(e.path) == 0o400 for e in entries)
        assert all(_mode(e.path.parent) == 0o700 for e in entries)
        assert _mode(v.cache.root / "private") == 0o700
        warm = v.pull("m", tmp_path / "o3")
        assert warm.bytes_from_cache == warm.bytes_total


def test_a_private_entry_whose_mode_was_widened_is_dropped(home: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_random(src / "w.bin", 1 << 20, seed=6)
    with Vault.open(home, encryption={"enabled": True}, cache_fill="always") as v:
        v.push("secret", src)
        v.pull("secret", tmp_path / "a")
        assert v.cache is not None
        (entry,) = v.cache.entries()
        entry.path.chmod(0o444)  # someone made it readable to everyone: it is not handed out again
        again = v.pull("secret", tmp_path / "b")
        assert again.bytes_from_store == again.bytes_total
        (entry,) = v.cache.entries()
        assert _mode(entry.path) == 0o400
