"""A pull completes or leaves the destination as it was; it creates the folders it needs."""

from __future__ import annotations

from pathlib import Path

import pytest

from weightvault.core import layout
from weightvault.core.errors import IntegrityError
from weightvault.vault.vault import Vault

from ..conftest import tree_bytes, write_random


def _corrupt_chunk_of(vault: Vault, home: Path, commit_file: str, ref: str) -> None:
    """Flip a byte inside the stored data of one file of ``ref`` (the others stay readable)."""
    info = vault.show(ref)
    entry = next(f for f in info.files if f.path == commit_file)
    recipe = vault._recipe(entry.sha256, info.model)
    cid = recipe.chunks[len(recipe.chunks) // 2][0]
    loc = vault.index.locate_chunks([cid])[cid]
    pack = home / "store" / layout.pack_key(loc.pack_id)
    data = bytearray(pack.read_bytes())
    data[loc.offset + loc.stored_len // 2] ^= 0xFF
    pack.write_bytes(bytes(data))


@pytest.fixture
def four_files(tmp_path: Path) -> Path:
    src = tmp_path / "four"
    for i in range(4):
        write_random(src / f"part-{i}.bin", 600_000 + i, seed=10 + i)
    return src


def test_failed_pull_into_a_new_folder_leaves_nothing(home: Path, four_files: Path, tmp_path: Path) -> None:
    with Vault.open(home, cache_enabled=False, workers=1) as v:
        v.push("m", four_files, version="v1")
        _corrupt_chunk_of(v, home, "part-2.bin", "m@v1")
        dest = tmp_path / "new" / "deeper" / "dest"
        with pytest.raises(IntegrityError):
            v.pull("m@v1", dest)
        assert not (tmp_path / "new").exists()  # the folders the pull created are gone too


def test_failed_pull_leaves_an_existing_folder_as_it_was(
    home: Path, four_files: Path, tmp_path: Path
) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "mine.txt").write_text("keep me")
    (dest / "part-0.bin").write_bytes(b"old content the pull would replace")
    before = tree_bytes(dest)
    with Vault.open(home, cache_enabled=False) as v:
        v.push("m", four_files, version="v1")
        _corrupt_chunk_of(v, home, "part-3.bin", "m@v1")
        with pytest.raises(IntegrityError):
            v.pull("m@v1", dest, force=True)
    assert tree_bytes(dest) == before
    assert sorted(p.name for p in dest.iterdir()) == ["mine.txt", "part-0.bin"]  # no temp files left


def test_pull_creates_parent_folders(vault: Vault, model_dir: Path, tmp_path: Path) -> None:
    vault.push("llama-7b", model_dir)
    dest = tmp_path / "deployed" / "llama-7b"
    vault.pull("llama-7b", dest)
    assert tree_bytes(dest) == tree_bytes(model_dir)


def test_include_matching_nothing_is_reported_and_creates_nothing(
    vault: Vault, model_dir: Path, tmp_path: Path
) -> None:
    vault.push("m", model_dir, version="v1")
    result = vault.pull("m@v1", tmp_path / "out", include=["*.gguf"])
    assert result.files == () and result.unmatched_includes == ("*.gguf",)
    assert not (tmp_path / "out").exists()
    result = vault.pull("m@v1", tmp_path / "out2", include=["*.json", "*.gguf"])
    assert result.files == ("config.json",) and result.unmatched_includes == ("*.gguf",)
