"""Chunk-level deduplication: what a changed or shifted shard costs to push again."""

from __future__ import annotations

from pathlib import Path

import pytest

from weightvault.demo.synthetic import change_one_tensor, generate_model, insert_tensor
from weightvault.vault.vault import Vault

from ..conftest import tree_bytes

MODEL_BYTES = 256 << 20


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("synthetic") / "model"
    generate_model(dest, MODEL_BYTES, shards=2, dtype="bf16", seed=0)
    return dest


def _store_bytes(vault: Vault) -> int:
    return int(vault.stats()["pack_bytes"])


def test_one_percent_change_stores_a_small_multiple(vault: Vault, synthetic: Path, tmp_path: Path) -> None:
    import shutil

    src = tmp_path / "m"
    shutil.copytree(synthetic, src)
    first = vault.push("m", src)
    assert first.bytes_written >= MODEL_BYTES * 0.95  # random-ish weights: nearly everything is new
    before = _store_bytes(vault)
    shard = sorted(src.glob("*.safetensors"))[0]
    region = change_one_tensor(shard, fraction=0.01)
    second = vault.push("m", src)
    added = _store_bytes(vault) - before
    assert second.bytes_written <= added <= second.bytes_written + 65536  # plus pack tables
    assert added <= 0.05 * shard.stat().st_size, (added, region)
    assert added >= region.length  # the changed bytes themselves must be stored
    vault.pull("m", tmp_path / "out")
    assert tree_bytes(tmp_path / "out") == tree_bytes(src)


def test_inserted_tensor_shifts_bytes_but_stores_little(
    vault: Vault, synthetic: Path, tmp_path: Path
) -> None:
    import shutil

    src = tmp_path / "m"
    shutil.copytree(synthetic, src)
    vault.push("m", src)
    before = _store_bytes(vault)
    shard = sorted(src.glob("*.safetensors"))[1]
    inserted = insert_tensor(shard, 2 << 20)
    vault.push("m", src)
    added = _store_bytes(vault) - before
    # new tensor + the grown header + chunks around the two edits; never the shard again
    assert added <= inserted.length + 12 * (1 << 20), added
    assert added < 0.2 * shard.stat().st_size
    vault.pull("m", tmp_path / "out")
    assert tree_bytes(tmp_path / "out") == tree_bytes(src)


def test_identical_content_across_models_is_stored_once(vault: Vault, model_dir: Path) -> None:
    vault.push("a", model_dir)
    before = _store_bytes(vault)
    result = vault.push("team/b", model_dir)
    assert result.chunks_new == 0 and _store_bytes(vault) == before
