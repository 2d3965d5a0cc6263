"""Compression in the vault: float-aware for safetensors, zstd for the rest, raw when it does not pay."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from weightvault.cas.compression import ENCRYPTED, Codec
from weightvault.core import layout
from weightvault.core.errors import ConfigError, CorruptObjectError
from weightvault.demo.synthetic import generate_model
from weightvault.vault.codecs import BlobEncoder
from weightvault.vault.vault import Vault

from ..conftest import tree_bytes, write_random


@pytest.fixture(scope="module")
def bf16_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("bf16") / "model"
    generate_model(src, 12 << 20, shards=2, dtype="bf16")
    return src


def codecs_by_file(vault: Vault, model: str) -> dict[str, set[int]]:
    out: dict[str, set[int]] = {}
    for f in vault.show(model).files:
        ids = [c for c, _ in vault._recipe(f.sha256, model).chunks]
        out[f.path] = {loc.codec for loc in vault.index.locate_chunks(ids).values()}
    return out


def push_pull(home: Path, src: Path, out: Path, **settings: object) -> tuple[int, int, Vault]:
    v = Vault.open(home, cache_enabled=False, **settings)
    result = v.push("m", src)
    v.pull("m", out)
    return result.bytes_read, v.index.stats()["pack_bytes"], v


@pytest.fixture
def vaults() -> Iterator[list[Vault]]:
    opened: list[Vault] = []
    yield opened
    for v in opened:
        v.close()


def test_float_compression_shrinks_bf16_shards_and_round_trips(
    bf16_model: Path, tmp_path: Path, vaults: list[Vault]
) -> None:
    sizes: dict[str, int] = {}
    for mode in ("none", "zstd", "float"):
        raw, stored, v = push_pull(tmp_path / mode, bf16_model, tmp_path / f"out-{mode}", compression=mode)
        vaults.append(v)
        assert tree_bytes(tmp_path / f"out-{mode}") == tree_bytes(bf16_model)
        sizes[mode] = stored
        codecs = codecs_by_file(v, "m")
        shards = [p for p in codecs if p.endswith(".safetensors")]
        if mode == "none":
            assert all(c == {Codec.RAW} for c in codecs.values())
        elif mode == "zstd":
            assert all(Codec.ZSTD in codecs[p] and Codec.FLOAT_PLANES not in codecs[p] for p in shards)
        else:
            assert all(Codec.FLOAT_PLANES in codecs[p] for p in shards)
            assert codecs["tokenizer.json"] <= {Codec.ZSTD, Codec.RAW}  # no float layout: plain zstd
        assert v.verify(read_data=True).ok
    raw = sum(len(b) for b in tree_bytes(bf16_model).values())
    assert sizes["none"] >= raw
    assert sizes["float"] < sizes["zstd"] < raw
    assert sizes["float"] < 0.8 * raw  # bf16 weights: the exponent plane shrinks a lot


def test_incompressible_chunks_are_stored_raw(tmp_path: Path, vaults: list[Vault]) -> None:
    src = tmp_path / "src"
    write_random(src / "noise.safetensors", 3_000_000)  # not a real header: plain zstd, which loses
    write_random(src / "noise.bin", 2_000_000, seed=2)
    _raw, _stored, v = push_pull(tmp_path / "h", src, tmp_path / "out", compression="float")
    vaults.append(v)
    assert all(c == {Codec.RAW} for c in codecs_by_file(v, "m").values())
    assert tree_bytes(tmp_path / "out") == tree_bytes(src)


def test_compressed_then_encrypted(bf16_model: Path, tmp_path: Path, vaults: list[Vault]) -> None:
    _raw, stored, v = push_pull(
        tmp_path / "h", bf16_model, tmp_path / "out", compression="float", encryption={"enabled": True}
    )
    vaults.append(v)
    codecs = codecs_by_file(v, "m")
    shard = next(p for p in codecs if p.endswith(".safetensors"))
    assert codecs[shard] == {Codec.FLOAT_PLANES | ENCRYPTED}
    raw = sum(len(b) for b in tree_bytes(bf16_model).values())
    assert stored < 0.8 * raw  # compression happens before encryption (ciphertext would not shrink)
    assert tree_bytes(tmp_path / "out") == tree_bytes(bf16_model)


def _flip_a_bit_of_a_float_blob(v: Vault, at: Callable[[int], int]) -> tuple[str, str]:
    """Push-time state: flip one bit of a codec-3 blob of the biggest file, at ``at(stored_len)``
    bytes into the blob; returns the file's path and the chunk id (hex)."""
    entry = max(v.show("m").files, key=lambda f: f.size)
    cid = v._recipe(entry.sha256).chunks[3][0]
    loc = v.index.locate_chunks([cid])[cid]
    assert loc.codec == Codec.FLOAT_PLANES and loc.stored_len < loc.raw_len
    path = v.settings.store_path / layout.pack_key(loc.pack_id)
    data = bytearray(path.read_bytes())
    data[loc.offset + at(loc.stored_len)] ^= 0x01
    path.write_bytes(bytes(data))
    return entry.path, cid.hex()


def test_corrupt_compressed_blob_is_caught(bf16_model: Path, tmp_path: Path) -> None:
    with Vault.open(tmp_path / "h", cache_enabled=False, compression="float") as v:
        v.push("m", bf16_model)
        file, cid = _flip_a_bit_of_a_float_blob(v, lambda stored_len: stored_len - 40)
        with pytest.raises(CorruptObjectError, match=cid):
            v.pull("m", tmp_path / "out", include=[file])


def test_versions_written_with_different_settings_read_back(bf16_model: Path, tmp_path: Path) -> None:
    home, src = tmp_path / "h", tmp_path / "src"
    shutil.copytree(bf16_model, src)
    with Vault.open(home, compression="none") as v:
        v.push("m", src, version="plain")
    (src / "config.json").write_text('{"changed": true}')
    with Vault.open(home, compression="float") as v:
        v.push("m", src, version="float")
    with Vault.open(home, compression="zstd", cache_enabled=False) as v:  # reads ignore the setting
        v.pull("m@plain", tmp_path / "a")
        v.pull("m@float", tmp_path / "b")
        assert v.verify(read_data=True).ok
    assert tree_bytes(tmp_path / "b") == tree_bytes(src)
    assert tree_bytes(tmp_path / "a") == tree_bytes(bf16_model)


def test_unknown_compression_setting_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="compression"):
        Vault.open(tmp_path / "h", compression="lz4")


def test_one_big_file_is_encoded_on_every_worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "one"
    generate_model(src, 24 << 20, shards=1, dtype="bf16")
    threads: set[str] = set()
    real_call = BlobEncoder.__call__

    def spy(self: BlobEncoder, *a: Any) -> Any:
        threads.add(threading.current_thread().name)
        return real_call(self, *a)

    monkeypatch.setattr(BlobEncoder, "__call__", spy)
    with Vault.open(tmp_path / "h", compression="float", cache_enabled=False) as v:
        v.push("m", src)
        assert {t.rsplit("_", 1)[0] for t in threads} == {"wv-encode"} and len(threads) == 2
        v.pull("m", tmp_path / "out")
        assert v.index.stats()["pack_bytes"] < 0.8 * sum(len(b) for b in tree_bytes(src).values())
    assert tree_bytes(tmp_path / "out") == tree_bytes(src)


def test_a_failing_encoder_fails_the_push_cleanly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "one"
    generate_model(src, 24 << 20, shards=1, dtype="bf16")
    calls = {"n": 0}
    real_call = BlobEncoder.__call__

    def failing(self: BlobEncoder, *a: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 5:
            raise RuntimeError("injected encoder failure")
        return real_call(self, *a)

    monkeypatch.setattr(BlobEncoder, "__call__", failing)
    with Vault.open(tmp_path / "h", compression="float") as v:
        with pytest.raises(RuntimeError, match="injected"):
            v.push("m", src)
        assert v.list_models() == [] and v.index.stats()["packs"] == 0
        assert not [p for p in (tmp_path / "h" / "store" / ".tmp").iterdir()]
        monkeypatch.setattr(BlobEncoder, "__call__", real_call)
        v.push("m", src)  # and the next push works


def test_flipped_bit_in_a_raw_mantissa_section_is_caught_by_the_chunk_id(
    bf16_model: Path, tmp_path: Path
) -> None:
    """Codec 3 has no checksum of its own: a bit flipped in a section stored as it is (the low
    bytes of bf16 weights) decodes to wrong bytes of the right length, which the chunk id check
    after every decode refuses, on pull and on verify --read-data."""
    with Vault.open(tmp_path / "h", cache_enabled=False, compression="float") as v:
        v.push("m", bf16_model)
        # 200 bytes in is past the header and lengths: in the raw low-byte plane.
        file, cid = _flip_a_bit_of_a_float_blob(v, lambda stored_len: 200)
        assert not v.verify("m", read_data=True).ok
        with pytest.raises(CorruptObjectError, match=cid):
            v.pull("m", tmp_path / "out", include=[file])


def test_codec2_blobs_of_older_stores_still_read_verify_and_repack(
    bf16_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pushes wrote codec 2 before codec 3 existed: such blobs still pull and verify, next to
    codec-3 blobs of a later push, survive a gc that repacks their pack, and a fresh machine
    recovers its index from the store's pack tables and reads both."""
    import functools

    from weightvault.cas import compression

    home, src = tmp_path / "h", tmp_path / "src"
    shutil.copytree(bf16_model, src)
    with monkeypatch.context() as m:
        m.setattr(
            compression,
            "encode_chunk_view",
            functools.partial(compression.encode_chunk_view, float_codec=Codec.ZSTD_FLOAT),
        )
        with Vault.open(home, compression="float") as v:
            v.push("m", src, version="old")
    shard = next(p for p in sorted(src.iterdir()) if p.suffix == ".safetensors")
    data = bytearray(shard.read_bytes())
    data[-1000:] = bytes(1000)  # the last chunk changes; the others stay codec-2 blobs
    shard.write_bytes(bytes(data))
    with Vault.open(home, compression="float", cache_enabled=False, gc_repack_threshold=0.999) as v:
        v.push("m", src, version="new")
        assert {Codec.ZSTD_FLOAT, Codec.FLOAT_PLANES} <= codecs_by_file(v, "m")[shard.name]
        v.pull("m@old", tmp_path / "old")
        v.delete("m@old")
        assert v.gc(grace_seconds=0).packs_repacked >= 1  # the old pack lost the changed chunk
        assert {Codec.ZSTD_FLOAT, Codec.FLOAT_PLANES} <= codecs_by_file(v, "m")[shard.name]
        assert v.verify(read_data=True).ok
        v.pull("m@new", tmp_path / "new")
    assert tree_bytes(tmp_path / "old") == tree_bytes(bf16_model)
    assert tree_bytes(tmp_path / "new") == tree_bytes(src)
    fresh = tmp_path / "fresh"
    shutil.copytree(home / "store", fresh / "store")
    with Vault.open(fresh, cache_enabled=False) as v:
        assert v.recover()["packs"] >= 1
        assert {Codec.ZSTD_FLOAT, Codec.FLOAT_PLANES} <= codecs_by_file(v, "m")[shard.name]
        assert v.verify(read_data=True).ok
        v.pull("m@new", tmp_path / "again")
    assert tree_bytes(tmp_path / "again") == tree_bytes(src)
