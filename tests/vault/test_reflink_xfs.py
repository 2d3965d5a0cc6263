"""Copy-on-write pulls on a real XFS filesystem with reflink, made in a loop-mounted image file.

Skipped, with the reason, where loop mounts cannot be made (not root, no mkfs.xfs, no loop
devices); everything else in the suite still runs.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from weightvault.core.errors import ConfigError
from weightvault.storage import oscaps
from weightvault.testing.extents import extents, physical_ranges
from weightvault.testing.loopfs import LoopMountUnavailableError, xfs_mount
from weightvault.vault.vault import Vault

from ..conftest import tree_bytes


@pytest.fixture(scope="module")
def xfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with contextlib.ExitStack() as stack:
        try:
            mountpoint = stack.enter_context(xfs_mount(tmp_path_factory.mktemp("xfs-image")))
        except LoopMountUnavailableError as exc:
            pytest.skip(f"no XFS with reflink in a loop-mounted image here: {exc}")
        yield mountpoint


@pytest.fixture
def on_xfs(xfs: Path, request: pytest.FixtureRequest) -> Path:
    """A fresh folder on the XFS filesystem for one test."""
    folder = xfs / request.node.name
    folder.mkdir()
    return folder


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_warm_pull_on_xfs_clones_and_an_edit_reaches_nothing_else(on_xfs: Path, model_dir: Path) -> None:
    with Vault.open(on_xfs / "home") as v:
        v.push("m", model_dir)
        cold = v.pull("m", on_xfs / "a")
        warm = v.pull("m", on_xfs / "b")
        assert cold.placement == warm.placement == {"reflink": 4}
        assert warm.bytes_from_cache == warm.bytes_total
        assert v.cache is not None
        files = v.show("m").files
        for f in files:
            cached = v.cache.path_for(f.sha256)
            a, b = on_xfs / "a" / f.path, on_xfs / "b" / f.path
            assert len({cached.stat().st_ino, a.stat().st_ino, b.stat().st_ino}) == 3  # separate inodes
            assert a.stat().st_mode & stat.S_IWUSR  # an ordinary, writable file
            # the same blocks, marked shared: a clone, not a copy
            assert physical_ranges(a) == physical_ranges(b) == physical_ranges(cached)
            assert all(e.shared for e in extents(b))

        shard = next(f for f in files if f.path == "model-00001-of-00002.safetensors")
        before = physical_ranges(v.cache.path_for(shard.sha256))
        with open(on_xfs / "a" / shard.path, "r+b") as out:  # rewritten in place, as some tools do
            out.write(b"\xff" * 65536)
        with open(on_xfs / "a" / "config.json", "a") as out:
            out.write("\n")
        assert physical_ranges(on_xfs / "a" / shard.path)[0] != before[0]  # copy-on-write moved it
        assert physical_ranges(v.cache.path_for(shard.sha256)) == before
        for f in files:
            assert sha(v.cache.path_for(f.sha256)) == f.sha256
        assert tree_bytes(on_xfs / "b") == tree_bytes(model_dir)
        again = v.pull("m", on_xfs / "c", link_mode="reflink")
        assert again.placement == {"reflink": 4} and again.bytes_from_cache == again.bytes_total
        assert tree_bytes(on_xfs / "c") == tree_bytes(model_dir)


def test_copy_mode_on_xfs_shares_no_blocks(on_xfs: Path, model_dir: Path) -> None:
    with Vault.open(on_xfs / "home", link_mode="copy", cache_fill="always") as v:
        v.push("m", model_dir)
        v.pull("m", on_xfs / "a")
        assert v.cache is not None
        for f in v.show("m").files:
            placed = on_xfs / "a" / f.path
            assert not any(e.shared for e in extents(placed))
            assert physical_ranges(placed) != physical_ranges(v.cache.path_for(f.sha256))
        assert tree_bytes(on_xfs / "a") == tree_bytes(model_dir)


def test_an_encrypted_model_clones_from_its_private_cache(on_xfs: Path, model_dir: Path) -> None:
    with Vault.open(on_xfs / "home", encryption={"enabled": True}) as v:
        v.push("m", model_dir)
        result = v.pull("m", on_xfs / "a")
        assert result.placement == {"reflink": 4}
        assert v.cache is not None
        for e in v.cache.entries():
            assert e.private and stat.S_IMODE(e.path.stat().st_mode) == 0o400
        for f in v.show("m").files:
            assert physical_ranges(on_xfs / "a" / f.path) == physical_ranges(v.cache.path_for(f.sha256, True))
        assert tree_bytes(on_xfs / "a") == tree_bytes(model_dir)


def test_from_an_ext4_cache_into_xfs_auto_copies_and_link_promises_are_refused(
    xfs: Path, tmp_path: Path, model_dir: Path, request: pytest.FixtureRequest
) -> None:
    dest_root = xfs / request.node.name
    dest_root.mkdir()
    # home and cache on the test machine's own disk; the copies come from cache entries
    with Vault.open(tmp_path / "home", cache_fill="always") as v:
        v.push("m", model_dir)
        assert os.stat(v.cache.root if v.cache else tmp_path).st_dev != os.stat(xfs).st_dev
        result = v.pull("m", dest_root / "auto")
        assert result.placement == {"copy": 4}
        assert tree_bytes(dest_root / "auto") == tree_bytes(model_dir)
        for mode in ("hardlink", "reflink"):
            with pytest.raises(ConfigError, match=mode):
                v.pull("m", dest_root / mode, link_mode=mode)
            assert not (dest_root / mode).exists()
        assert sorted(p.name for p in dest_root.iterdir()) == ["auto"]  # no probe left behind


def test_without_the_linux_paths_auto_copies_on_xfs_too(
    on_xfs: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What macOS does on a filesystem without clones: the fallbacks, on a filesystem that has them."""
    for name, value in oscaps.portable_values().items():
        monkeypatch.setattr(oscaps, name, value)
    with Vault.open(on_xfs / "home", cache_fill="always") as v:
        v.push("m", model_dir)
        result = v.pull("m", on_xfs / "a")
        assert result.placement == {"copy": 4}
        with pytest.raises(ConfigError, match="reflink"):
            v.pull("m", on_xfs / "b", link_mode="reflink")
        assert tree_bytes(on_xfs / "a") == tree_bytes(model_dir)
