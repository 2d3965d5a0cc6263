"""How a pull places cached files (``link_mode``), on the test machine's own filesystem.

The copy-on-write case needs a filesystem with clones: see ``test_reflink_xfs.py``.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest

from weightvault.core.errors import ConfigError, InvalidInputError
from weightvault.storage.clone import CloneUnsupportedError, clone_file
from weightvault.vault.config import load_settings
from weightvault.vault.vault import Vault

from ..conftest import tree_bytes

pytestmark = pytest.mark.os_paths


def clones_work(folder: Path) -> bool:
    """Whether this process can clone a file within ``folder``'s filesystem."""
    folder.mkdir(parents=True, exist_ok=True)
    src, dst = folder / ".probe-src", folder / ".probe-dst"
    src.write_bytes(b"x" * 4096)
    try:
        clone_file(src, dst)
        return True
    except CloneUnsupportedError:
        return False
    finally:
        src.unlink()
        dst.unlink(missing_ok=True)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_default_pull_gives_independent_files_an_edit_reaches_nothing_else(
    vault: Vault, model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The issue's report: with hardlinks, an edit in folder A changed folder B. Not by default,
    not even for copies of cache entries (``cache_fill: always``; ``auto`` writes each once)."""
    monkeypatch.setattr(vault.settings, "cache_fill", "always")
    vault.push("m", model_dir)
    expected = "reflink" if clones_work(tmp_path / "probe") else "copy"
    a = vault.pull("m", tmp_path / "a")
    b = vault.pull("m", tmp_path / "b")
    assert a.link_mode == b.link_mode == "auto"
    assert a.placement == b.placement == {expected: 4}  # the cold pull builds in the cache, then places
    assert vault.cache is not None
    for f in vault.show("m").files:
        cached = vault.cache.path_for(f.sha256)
        for folder in ("a", "b"):
            placed = tmp_path / folder / f.path
            assert not os.path.samefile(placed, cached)
            assert placed.stat().st_mode & stat.S_IWUSR  # the user's own, editable file
    # a user edits folder A: appends to one file, rewrites another in place
    with open(tmp_path / "a" / "config.json", "a") as f:
        f.write(" ")
    with open(tmp_path / "a" / "model-00001-of-00002.safetensors", "r+b") as f:
        f.write(b"\0" * 4096)
    assert tree_bytes(tmp_path / "b") == tree_bytes(model_dir)
    for f in vault.show("m").files:
        assert sha(vault.cache.path_for(f.sha256)) == f.sha256
    c = vault.pull("m", tmp_path / "c")
    assert c.bytes_from_cache == c.bytes_total  # the cache entries were untouched: still handed out
    assert tree_bytes(tmp_path / "c") == tree_bytes(model_dir)


def test_auto_falls_back_to_hardlinks_when_configured(model_dir: Path, tmp_path: Path) -> None:
    if clones_work(tmp_path / "probe"):
        pytest.skip("this filesystem clones, so auto never reaches its fallback here (see test_reflink_xfs)")
    with Vault.open(tmp_path / "home", link_fallback="hardlink") as v:
        v.push("m", model_dir)
        v.pull("m", tmp_path / "a")
        warm = v.pull("m", tmp_path / "b")
        assert warm.placement == {"hardlink": 4}
        assert v.cache is not None
        for f in v.show("m").files:
            assert os.path.samefile(tmp_path / "b" / f.path, v.cache.path_for(f.sha256))


def test_copy_mode_places_copies(
    vault: Vault, model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(vault.settings, "cache_fill", "always")  # copies of cache entries
    vault.push("m", model_dir)
    result = vault.pull("m", tmp_path / "a", link_mode="copy")
    assert result.placement == {"copy": 4}
    assert vault.cache is not None
    for f in vault.show("m").files:
        assert not os.path.samefile(tmp_path / "a" / f.path, vault.cache.path_for(f.sha256))
    assert tree_bytes(tmp_path / "a") == tree_bytes(model_dir)


def test_reflink_mode_without_clones_fails_before_writing_anything(
    vault: Vault, model_dir: Path, tmp_path: Path
) -> None:
    if clones_work(tmp_path / "probe"):
        pytest.skip("this filesystem clones; the refusal is tested across filesystems in test_reflink_xfs")
    vault.push("m", model_dir)
    with pytest.raises(ConfigError, match="reflink"):
        vault.pull("m", tmp_path / "out", link_mode="reflink")
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".wv-probe")]
    assert vault.cache is not None
    assert not list(vault.cache.entries())
    assert not any(vault.cache.temp_file().parent.iterdir())


def test_unknown_link_modes_are_errors(
    vault: Vault, model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    vault.push("m", model_dir)
    with pytest.raises(InvalidInputError, match="symlink"):
        vault.pull("m", tmp_path / "out", link_mode="symlink")
    assert not (tmp_path / "out").exists()
    with pytest.raises(ConfigError, match="link_mode"):
        load_settings(tmp_path / "h", link_mode="symlink")
    with pytest.raises(ConfigError, match="link_fallback"):
        load_settings(tmp_path / "h", link_fallback="reflink")
    with pytest.raises(ConfigError, match="cache_permissions"):
        load_settings(tmp_path / "h", cache_permissions="world")
    cfg = tmp_path / "config.yaml"
    cfg.write_text("model_weights:\n  cache_enabled: true\n  link_mode: symlinks\n")
    with pytest.raises(ConfigError, match="link_mode"):
        load_settings(tmp_path / "h", cfg)
    monkeypatch.setenv("WEIGHTVAULT_LINK_MODE", "clone")
    with pytest.raises(ConfigError, match="link_mode"):
        load_settings(tmp_path / "h")
    monkeypatch.setenv("WEIGHTVAULT_LINK_MODE", "copy")
    assert load_settings(tmp_path / "h").link_mode == "copy"
