from __future__ import annotations

import os
from pathlib import Path

import pytest

from weightvault.core.errors import SourceNotFoundError, UnsafePathError
from weightvault.vault.vault import Vault

from ..conftest import write_random


def _nothing_stored(v: Vault) -> None:
    assert v.list_models() == []
    assert v.stats()["packs"] == 0


def test_symlink_pointing_outside_is_refused(vault: Vault, model_dir: Path, tmp_path: Path) -> None:
    secret = write_random(tmp_path / "secret.bin", 100)
    os.symlink(secret, model_dir / "leak.bin")
    with pytest.raises(UnsafePathError, match="outside"):
        vault.push("m", model_dir)
    _nothing_stored(vault)


def test_symlinked_folder_pointing_outside_is_refused(vault: Vault, model_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", model_dir / "sub")
    with pytest.raises(UnsafePathError):
        vault.push("m", model_dir)
    _nothing_stored(vault)


def test_symlink_inside_is_followed_like_a_hub_cache(vault: Vault, model_dir: Path, tmp_path: Path) -> None:
    os.symlink("config.json", model_dir / "alias.json")
    vault.push("m", model_dir)
    vault.pull("m", tmp_path / "o")
    assert (tmp_path / "o" / "alias.json").read_text() == '{"hidden_size": 64}'
    assert not (tmp_path / "o" / "alias.json").is_symlink()


def test_symlink_loop_and_dangling_links(vault: Vault, model_dir: Path) -> None:
    os.symlink(".", model_dir / "loop")
    with pytest.raises(UnsafePathError):
        vault.push("m", model_dir)
    os.unlink(model_dir / "loop")
    os.symlink("nowhere", model_dir / "dangling")
    with pytest.raises((SourceNotFoundError, UnsafePathError)):
        vault.push("m", model_dir)
    _nothing_stored(vault)


@pytest.mark.parametrize("name", ["back\\slash.bin", "ctrl\x01.bin"])
def test_odd_file_names_are_refused(vault: Vault, model_dir: Path, name: str) -> None:
    (model_dir / name).write_bytes(b"x")
    with pytest.raises(UnsafePathError):
        vault.push("m", model_dir)
    _nothing_stored(vault)


def test_special_files_are_refused(vault: Vault, model_dir: Path) -> None:
    os.mkfifo(model_dir / "pipe")
    with pytest.raises(UnsafePathError, match="not a regular file"):
        vault.push("m", model_dir)
    _nothing_stored(vault)


def test_pull_never_writes_through_a_symlinked_folder(vault: Vault, model_dir: Path, tmp_path: Path) -> None:
    vault.push("m", model_dir)
    dest = tmp_path / "dest"
    dest.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, dest / "tokenizer")
    with pytest.raises(UnsafePathError):
        vault.pull("m", dest)
    assert list(outside.iterdir()) == []
