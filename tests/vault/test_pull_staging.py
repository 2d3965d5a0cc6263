"""A pull into a folder that does not exist yet builds it whole in a sibling staging folder and
renames it once; the cache entries of small files are created with their final mode and sealed
by descriptor. The guarantees must be those of the per-file path: nothing under the final name
before every file is verified, nothing left after a failure, the same modes and contents."""

from __future__ import annotations

import os
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from weightvault.core import layout
from weightvault.core.errors import CorruptObjectError, DestinationConflictError
from weightvault.vault.cache import CACHE_MTIME_NS, FileCache
from weightvault.vault.vault import Vault

from ..conftest import tree_bytes, write_random


def _tree(root: Path, n: int = 40) -> Path:
    for i in range(n):
        write_random(root / f"d{i % 5}" / f"f{i:03d}.bin", 1000 + 211 * i, seed=i)
    write_random(root / "big.bin", 600_000, seed=99)  # through the large-file pool
    return root


@pytest.fixture
def pushed(tmp_path: Path) -> Iterator[tuple[Vault, Path]]:
    src = _tree(tmp_path / "src")
    with Vault.open(tmp_path / "home") as v:
        v.push("m", src, version="v1")
        yield v, src


def _siblings(dest: Path) -> list[str]:
    return sorted(p.name for p in dest.parent.iterdir()) if dest.parent.exists() else []


def _corrupt_small_file(v: Vault, index: int) -> None:
    victim = sorted(v.show("m@v1").files, key=lambda f: f.path)[index]
    cid = v._recipe(victim.sha256).chunks[0][0]
    loc = v.index.locate_chunks([cid])[cid]
    path = Path(v.settings.store_path) / layout.pack_key(loc.pack_id)
    data = bytearray(path.read_bytes())
    data[loc.offset + loc.stored_len // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_nothing_appears_under_the_final_name_until_every_file_is_built(
    pushed: tuple[Vault, Path], tmp_path: Path
) -> None:
    v, src = pushed
    dest = tmp_path / "out" / "model"
    seen: list[tuple[bool, list[str]]] = []

    def progress(_n: int) -> None:
        seen.append((dest.exists(), _siblings(dest)))

    v.pull("m@v1", dest, progress=progress)
    assert seen and not any(exists for exists, _ in seen)
    staging = {name for _, names in seen for name in names}
    assert len(staging) == 1 and next(iter(staging)).startswith(".model.")
    assert next(iter(staging)).endswith(".wv-tmp")
    assert tree_bytes(dest) == tree_bytes(src)
    assert _siblings(dest) == ["model"]  # the staging folder became the destination


@pytest.mark.parametrize("cache", [True, False])
def test_a_failed_pull_into_a_new_folder_leaves_nothing(tmp_path: Path, cache: bool) -> None:
    src = _tree(tmp_path / "src")
    with Vault.open(tmp_path / "home", cache_enabled=cache) as v:
        v.push("m", src, version="v1")
        _corrupt_small_file(v, 17)
        dest = tmp_path / "new" / "deeper" / "model"
        with pytest.raises(CorruptObjectError):
            v.pull("m@v1", dest)
        assert not (tmp_path / "new").exists()  # no staging folder, no parent the pull made
        if v.cache is not None:
            assert list((v.cache.root / "tmp").iterdir()) == []
            # small entries join the cache only after the whole pull (their batch sync); a large
            # one is fsynced on its own and may stay: it was verified
            assert {e.size for e in v.cache.entries()} <= {600_000}


def test_an_interrupted_pull_into_a_new_folder_leaves_nothing(
    pushed: tuple[Vault, Path], tmp_path: Path
) -> None:
    v, _ = pushed
    dest = tmp_path / "out" / "model"
    (tmp_path / "out").mkdir()
    calls = 0

    def progress(_n: int) -> None:
        nonlocal calls
        calls += 1
        if calls == 10:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        v.pull("m@v1", dest, progress=progress)
    assert _siblings(dest) == []
    assert v.cache is not None and list((v.cache.root / "tmp").iterdir()) == []


def test_a_destination_made_meanwhile_is_not_touched(pushed: tuple[Vault, Path], tmp_path: Path) -> None:
    v, _ = pushed
    dest = tmp_path / "out" / "model"
    once = threading.Lock()  # progress comes from several pull workers at once

    def progress(_n: int) -> None:
        with once:
            if not dest.exists():
                dest.mkdir()
                (dest / "theirs.txt").write_text("made by someone else")

    with pytest.raises(DestinationConflictError, match="appeared"):
        v.pull("m@v1", dest, progress=progress)
    assert tree_bytes(dest) == {"theirs.txt": b"made by someone else"}
    assert _siblings(dest) == ["model"]


def test_an_existing_folder_is_still_pulled_into_file_by_file(
    pushed: tuple[Vault, Path], tmp_path: Path
) -> None:
    v, src = pushed
    dest = tmp_path / "out" / "model"
    dest.mkdir(parents=True)
    (dest / "mine.txt").write_text("keep me")
    v.pull("m@v1", dest)
    assert tree_bytes(dest) == {**tree_bytes(src), "mine.txt": b"keep me"}
    assert _siblings(dest) == ["model"]
    assert not [p for p in dest.rglob("*") if p.name.endswith(".wv-tmp")]


@pytest.mark.os_paths
def test_modes_of_pulled_files_and_cache_entries(
    pushed: tuple[Vault, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    v, src = pushed
    mask = os.umask(0)
    os.umask(mask)
    # ``cache_fill: auto``, a local store placed by copy: written straight from the store, the
    # same modes as a copy from the cache; ``always``: through the cache
    for fill, dest in (("auto", tmp_path / "direct"), ("always", tmp_path / "model")):
        monkeypatch.setattr(v.settings, "cache_fill", fill)
        v.pull("m@v1", dest)
        for path in (p for p in dest.rglob("*") if p.is_file()):
            assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask  # writable copies, as before
        assert tree_bytes(dest) == tree_bytes(src)
        assert v.cache is not None
        assert fill == "always" or not list(v.cache.entries())
    assert v.cache is not None
    entries = list(v.cache.entries())
    assert len(entries) == len({f.sha256 for f in v.show("m@v1").files})
    for e in entries:
        st = e.path.stat()
        assert stat.S_IMODE(st.st_mode) == 0o444 and st.st_mtime_ns == CACHE_MTIME_NS
    # the cache serves the next pull: every file placed from it
    result = v.pull("m@v1", tmp_path / "again")
    assert result.bytes_from_store == 0
    assert tree_bytes(tmp_path / "again") == tree_bytes(src)


@pytest.mark.os_paths
def test_cache_entries_get_their_mode_under_a_strict_umask(tmp_path: Path) -> None:
    src = _tree(tmp_path / "src", 8)
    old = os.umask(0o077)  # would make a 0444 entry 0400: the pull sets the mode itself
    try:
        with Vault.open(tmp_path / "home", cache_fill="always") as v:
            v.push("m", src, version="v1")
            v.pull("m@v1", tmp_path / "model")
            assert v.cache is not None
            entries = list(v.cache.entries())
            assert entries and all(stat.S_IMODE(e.path.stat().st_mode) == 0o444 for e in entries)
            assert v.pull("m@v1", tmp_path / "again").bytes_from_store == 0
    finally:
        os.umask(old)


def test_an_encrypted_models_entries_stay_private(tmp_path: Path) -> None:
    src = _tree(tmp_path / "src", 8)
    with Vault.open(tmp_path / "home", encryption={"enabled": True}, cache_fill="always") as v:
        v.push("m", src, version="v1")
        v.pull("m@v1", tmp_path / "model")
        assert v.cache is not None
        entries = list(v.cache.entries())
        assert entries and all(e.private for e in entries)
        assert all(stat.S_IMODE(e.path.stat().st_mode) == 0o400 for e in entries)
    assert tree_bytes(tmp_path / "model") == tree_bytes(src)


def test_a_sealed_temp_file_waiting_for_its_batch_is_not_cleaned_as_stale(tmp_path: Path) -> None:
    """A sealed entry carries the cache's pinned mtime (2020) before it is admitted: the clean-up
    of abandoned temp files (gc) must judge it by when it was written."""
    cache = FileCache(tmp_path / "cache", 1 << 30)
    temp, fd = cache.open_entry()
    os.write(fd, b"bytes")
    cache.seal(fd)
    os.close(fd)
    assert temp.stat().st_mtime_ns == CACHE_MTIME_NS
    assert cache.clean_temp(time.time() - 3600) == 0
    assert temp.exists()
    cache.admit_sealed(temp, "ab" * 32)
    assert cache.usable("ab" * 32, 5) is not None


def _open_pack_fds(store: Path) -> list[str]:
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(store)):
            out.append(target)
    return out


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts descriptors through /proc")
def test_packs_kept_open_by_a_pull_are_closed_after_it(pushed: tuple[Vault, Path], tmp_path: Path) -> None:
    v, src = pushed
    store = Path(v.settings.store_path)
    during: list[list[str]] = []
    v.pull("m@v1", tmp_path / "model", progress=lambda _n: during.append(_open_pack_fds(store)))
    assert any(during)  # the packs were read through kept descriptors
    assert _open_pack_fds(store) == []
    assert tree_bytes(tmp_path / "model") == tree_bytes(src)
