"""Many small files: recipes written many at a time and indexed in one transaction, small files
pulled by their own wider pool; the result must be the same store and the same all-or-nothing
pull as one file at a time."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from weightvault.core import layout
from weightvault.core.errors import CorruptObjectError
from weightvault.vault.vault import Vault

from ..conftest import tree_bytes, write_random


def _tree(root: Path, n: int = 60) -> Path:
    for i in range(n):
        write_random(root / f"d{i % 7}" / f"f{i:03d}.bin", 1000 + 97 * i, seed=i)
    shutil.copy(root / "d0" / "f000.bin", root / "same-as-f000.bin")  # one recipe for two files
    write_random(root / "big.bin", 600_000, seed=99)  # through the large-file pool
    return root


def test_every_recipe_is_inline_in_the_manifest_and_recover_rebuilds_the_push(tmp_path: Path) -> None:
    src = _tree(tmp_path / "src")
    home = tmp_path / "home"
    with Vault.open(home) as v:
        v.push("m", src, version="v1")
        info = v.show("m@v1")
        assert list(v.backend.list(layout.RECIPES)) == []  # small files: no recipe objects
        assert all(f.chunks is not None for f in info.files)
        assert len({f.sha256 for f in info.files}) == len(info.files) - 1
    fresh = tmp_path / "fresh"
    shutil.copytree(home / "store", fresh / "store")  # another machine: the store alone
    with Vault.open(fresh) as v:
        v.recover()
        v.pull("m@v1", tmp_path / "out")
        assert v.verify(read_data=True).ok
    assert tree_bytes(tmp_path / "out") == tree_bytes(src)


def test_an_encrypted_push_of_many_files_pulls_back(tmp_path: Path) -> None:
    src = _tree(tmp_path / "src", 30)
    with Vault.open(tmp_path / "home", encryption={"enabled": True}) as v:
        v.push("m", src, version="v1")
        v.pull("m@v1", tmp_path / "out")
    assert tree_bytes(tmp_path / "out") == tree_bytes(src)


def test_a_bad_small_file_leaves_the_destination_untouched(vault: Vault, tmp_path: Path) -> None:
    src = _tree(tmp_path / "src")
    vault.push("m", src, version="v1")
    victim = vault.show("m@v1").files[5]
    assert victim.size < 64 << 10
    cid = vault._recipe(victim.sha256).chunks[0][0]
    loc = vault.index.locate_chunks([cid])[cid]
    path = Path(vault.settings.store_path) / layout.pack_key(loc.pack_id)
    data = bytearray(path.read_bytes())
    data[loc.offset + loc.stored_len // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "keep.txt").write_text("mine")
    with pytest.raises(CorruptObjectError):
        vault.pull("m@v1", dest)
    assert tree_bytes(dest) == {"keep.txt": b"mine"}
