"""When a pull fills the cache (``cache_fill``), on a store in a local folder.

A local store placed by copy writes the destination once and leaves the cache alone; a
placement that shares the entry (hardlink) fills it; ``always`` fills it on every pull. The
remote-store case is in ``tests/storage/test_cache_fill_cloud.py``.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import yaml

from weightvault.core.errors import ConfigError, IntegrityError
from weightvault.vault.cache import FileCache
from weightvault.vault.config import load_settings
from weightvault.vault.vault import Vault

from ..conftest import run_cli, tree_bytes
from .test_pull_atomic import _corrupt_chunk_of

pytestmark = pytest.mark.os_paths


def cache_files(cache: FileCache) -> list[Path]:
    """Every file under the cache's root: entries and temp files alike."""
    return sorted(p for p in cache.root.rglob("*") if p.is_file())


def test_local_store_placed_by_copy_writes_the_destination_only(
    home: Path, model_dir: Path, tmp_path: Path
) -> None:
    with Vault.open(home, link_mode="copy") as v:
        assert v.settings.cache_fill == "auto"
        v.push("m", model_dir)
        first = v.pull("m", tmp_path / "a")
        assert tree_bytes(tmp_path / "a") == tree_bytes(model_dir)
        assert first.placement == {"written": 4}
        assert first.bytes_from_store == first.bytes_total and first.bytes_from_cache == 0
        assert v.cache is not None and cache_files(v.cache) == []
        # a repeat pull rebuilds from the local packs again, still one write, still verified
        again = v.pull("m", tmp_path / "b")
        assert tree_bytes(tmp_path / "b") == tree_bytes(model_dir)
        assert again.bytes_from_store == again.bytes_total and cache_files(v.cache) == []
        # the user's own, editable files, as a copy from the cache gives
        for f in (tmp_path / "b").rglob("*"):
            if f.is_file():
                assert f.stat().st_mode & stat.S_IWUSR


def test_pull_into_an_existing_folder_writes_the_destination_only(
    home: Path, model_dir: Path, tmp_path: Path
) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "mine.txt").write_text("keep me")
    with Vault.open(home, link_mode="copy") as v:
        v.push("m", model_dir)
        v.pull("m", dest)
        assert v.cache is not None and cache_files(v.cache) == []
    assert tree_bytes(dest) == {**tree_bytes(model_dir), "mine.txt": b"keep me"}
    assert not [p for p in dest.rglob("*") if p.name.endswith(".wv-tmp")]


def test_hardlink_placement_fills_the_cache_and_links_to_it(
    home: Path, model_dir: Path, tmp_path: Path
) -> None:
    with Vault.open(home, link_mode="hardlink") as v:
        v.push("m", model_dir)
        result = v.pull("m", tmp_path / "a")
        assert result.placement == {"hardlink": 4}
        assert tree_bytes(tmp_path / "a") == tree_bytes(model_dir)
        assert v.cache is not None
        for f in v.show("m").files:
            assert os.path.samefile(tmp_path / "a" / f.path, v.cache.path_for(f.sha256))
        again = v.pull("m", tmp_path / "b")
        assert again.bytes_from_cache == again.bytes_total


def test_always_fills_the_cache_of_a_local_store_placed_by_copy(
    home: Path, model_dir: Path, tmp_path: Path
) -> None:
    with Vault.open(home, link_mode="copy", cache_fill="always") as v:
        v.push("m", model_dir)
        v.pull("m", tmp_path / "a")
        assert v.cache is not None
        assert {e.sha256 for e in v.cache.entries()} == {f.sha256 for f in v.show("m").files}
        again = v.pull("m", tmp_path / "b")
        assert again.bytes_from_cache == again.bytes_total and again.placement == {"copy": 4}
    # entries already cached are used under ``auto`` too: the setting decides writes, not reads
    with Vault.open(home, link_mode="copy") as v:
        third = v.pull("m", tmp_path / "c")
        assert third.bytes_from_cache == third.bytes_total
        assert tree_bytes(tmp_path / "c") == tree_bytes(model_dir)


def test_cache_disabled_still_means_never(home: Path, model_dir: Path, tmp_path: Path) -> None:
    with Vault.open(home, cache_enabled=False, cache_fill="always") as v:
        v.push("m", model_dir)
        v.pull("m", tmp_path / "a")
        assert v.cache is None
    assert tree_bytes(tmp_path / "a") == tree_bytes(model_dir)
    assert not (home / "cache").exists() or cache_files(FileCache(home / "cache", 1 << 30)) == []


def test_corrupt_pack_is_detected_and_nothing_is_left(home: Path, model_dir: Path, tmp_path: Path) -> None:
    with Vault.open(home, link_mode="copy") as v:
        v.push("m", model_dir, version="v1")
        _corrupt_chunk_of(v, home, "model-00001-of-00002.safetensors", "m@v1")
        dest = tmp_path / "new" / "dest"
        with pytest.raises(IntegrityError):
            v.pull("m@v1", dest)
        assert not (tmp_path / "new").exists()
        assert v.cache is not None and cache_files(v.cache) == []


@pytest.mark.parametrize("where", ["argument", "environment", "config file"])
def test_an_unknown_value_is_a_config_error(
    where: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    kwargs: dict[str, str] = {}
    if where == "argument":
        kwargs["cache_fill"] = "never"
    elif where == "environment":
        monkeypatch.setenv("WEIGHTVAULT_CACHE_FILL", "never")
    else:
        home.mkdir()
        (home / "config.yaml").write_text(yaml.safe_dump({"cache_fill": "never"}))
    with pytest.raises(ConfigError, match="cache_fill"):
        load_settings(home, **kwargs)
    with pytest.raises(ConfigError, match="cache_fill"):
        Vault.open(home, **kwargs)
    made = sorted(p.name for p in home.iterdir()) if home.exists() else []
    assert made == (["config.yaml"] if where == "config file" else [])  # no home, store or index


def test_the_cli_reports_an_unknown_value_in_one_line(home: Path, model_dir: Path, tmp_path: Path) -> None:
    home.mkdir()
    (home / "config.yaml").write_text(yaml.safe_dump({"cache_fill": "sometimes"}))
    out = run_cli(home, "pull", "m", str(tmp_path / "dest"))
    assert out.returncode == 4, out
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "cache_fill" in lines[0], out.stderr
    assert not (tmp_path / "dest").exists()
    assert sorted(p.name for p in home.iterdir()) == ["config.yaml"]
