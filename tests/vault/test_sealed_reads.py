"""What a read checks per chunk: a sealed chunk by its AES-GCM tag (bound to its chunk id, codec and
length), a plain chunk by hashing it to its id; every file by its SHA-256 (docs/security.md, "What
a read checks"). The bucket is the attacker here: it may put any valid blob anywhere."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import weightvault.cas.encryption as encryption
import weightvault.vault.codecs as codecs
from weightvault.cas.compression import ENCRYPTED
from weightvault.core import layout
from weightvault.core.errors import CorruptObjectError
from weightvault.registry.index import ChunkLocation
from weightvault.vault.vault import Vault

from ..conftest import tree_bytes, write_random

SMALL = 200_000  # below the chunker's minimum: one chunk per file, equal sizes give equal blobs


def _open(home: Path, *, encrypted: bool, backup: Path | None = None, **kw: Any) -> Vault:
    if encrypted:
        kw["encryption"] = {"enabled": True}
    if backup is not None:
        kw.update(replicas={"backup": backup.as_uri()}, sync_enabled=True)
    return Vault.open(home, cache_enabled=False, **kw)


def _twins(root: Path) -> Path:
    """Two files of the same size, one chunk each, different bytes."""
    write_random(root / "a.bin", SMALL, seed=11)
    write_random(root / "b.bin", SMALL, seed=12)
    return root


def _loc(v: Vault, model: str, path: str, ref: str = "") -> tuple[bytes, ChunkLocation]:
    entry = next(f for f in v.show(ref or model).files if f.path == path)
    chunks = v._recipe(entry.sha256, model).chunks
    assert len(chunks) == 1
    cid = chunks[0][0]
    return cid, v.index.locate_chunks([cid])[cid]


def _blob(store: Path, loc: ChunkLocation) -> bytes:
    with open(store / layout.pack_key(loc.pack_id), "rb") as f:
        f.seek(loc.offset)
        return f.read(loc.stored_len)


def _put_blob(store: Path, loc: ChunkLocation, blob: bytes) -> None:
    assert len(blob) == loc.stored_len
    with open(store / layout.pack_key(loc.pack_id), "r+b") as f:
        f.seek(loc.offset)
        f.write(blob)


def _swap_a_for_b(v: Vault, model: str) -> bytes:
    """Put b.bin's stored blob where a.bin's is, in the primary; a.bin's chunk id."""
    store = v.settings.store_path
    a_id, a = _loc(v, model, "a.bin")
    _, b = _loc(v, model, "b.bin")
    assert a.stored_len == b.stored_len and a.codec == b.codec and a.key_slot == b.key_slot
    _put_blob(store, a, _blob(store, b))
    return a_id


# ---------------------------------------------------------------- sealed chunks


def test_another_chunks_sealed_blob_is_refused_and_a_good_replica_serves(home: Path, tmp_path: Path) -> None:
    src, backup = _twins(tmp_path / "src"), tmp_path / "backup"
    with _open(home, encrypted=True, backup=backup) as v:
        v.push("m", src, version="v1")
        a_id, a = _loc(v, "m", "a.bin")
        assert a.codec & ENCRYPTED  # a valid blob sealed under the same key, for another chunk
        _swap_a_for_b(v, "m")
    with _open(home, encrypted=True) as v:  # the primary alone: refused by the tag, not placed
        with pytest.raises(CorruptObjectError, match="failed authentication") as info:
            v.pull("m@v1", tmp_path / "alone")
        assert a_id.hex() in str(info.value)
        assert not (tmp_path / "alone" / "a.bin").exists()
    with _open(home, encrypted=True, backup=backup) as v:  # the backup's copy is read instead
        result = v.pull("m@v1", tmp_path / "out")
        assert tree_bytes(tmp_path / "out") == tree_bytes(src)
        assert any(f.startswith("local:") and "packs/" in f for f in result.fallbacks)


@pytest.mark.parametrize("where", ["nonce", "ciphertext", "tag"])
def test_tampered_sealed_blob_is_refused(home: Path, tmp_path: Path, where: str) -> None:
    src = _twins(tmp_path / "src")
    with _open(home, encrypted=True) as v:
        v.push("m", src, version="v1")
        a_id, a = _loc(v, "m", "a.bin")
        blob = bytearray(_blob(v.settings.store_path, a))
        blob[{"nonce": 3, "ciphertext": len(blob) // 2, "tag": len(blob) - 5}[where]] ^= 0x20
        _put_blob(v.settings.store_path, a, bytes(blob))
        with pytest.raises(CorruptObjectError, match="failed authentication") as info:
            v.pull("m@v1", tmp_path / "out")
        assert a_id.hex() in str(info.value)
        with pytest.raises(CorruptObjectError, match="failed authentication"):
            v.open_file("m@v1", "a.bin").open().read(10)  # a range read: no file SHA-256 to save it
        assert v.open_file("m@v1", "b.bin").open().read() == (src / "b.bin").read_bytes()


@pytest.mark.parametrize("compression", ["none", "zstd"])
def test_encrypted_pull_and_download_rebuild_the_files(
    home: Path, tmp_path: Path, model_dir: Path, compression: str
) -> None:
    with _open(home, encrypted=True, compression=compression) as v:
        v.push("m", model_dir, version="v1")
        assert all(
            loc.codec & ENCRYPTED
            for f in v.show("m@v1").files
            for loc in v.index.locate_chunks([c for c, _ in v._recipe(f.sha256, "m").chunks]).values()
        )
        v.pull("m@v1", tmp_path / "out")
        assert tree_bytes(tmp_path / "out") == tree_bytes(model_dir)
        for f in v.show("m@v1").files:  # the server's download path: blocks held until the end
            fs = v.open_file("m@v1", f.path)
            blocks = list(fs.reader.blocks([c for c, _ in fs.recipe.chunks], fs.what, block_max=1 << 20))
            assert b"".join(blocks) == (model_dir / f.path).read_bytes(), f.path


def _counting(fn: Callable[[Any], bytes], calls: list[int]) -> Callable[[Any], bytes]:
    def spy(data: Any) -> bytes:
        calls.append(len(data))
        return fn(data)

    return spy


def test_pull_does_not_hash_sealed_chunks_but_verify_does(
    home: Path, tmp_path: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The spy sits on the domain's keyed chunk-id hash (made by ``chunk_id_function``)."""
    keyed: list[int] = []
    real = encryption.chunk_id_function
    monkeypatch.setattr(encryption, "chunk_id_function", lambda key: _counting(real(key), keyed))
    with _open(home, encrypted=True) as v:
        v.push("m", model_dir, version="v1")
        assert sum(keyed) == sum(f.size for f in v.show("m@v1").files)  # the spy sees the real hash
        n_chunks = sum(len(v._recipe(f.sha256, "m").chunks) for f in v.show("m@v1").files)
        keyed.clear()
        v.pull("m@v1", tmp_path / "out")
        assert tree_bytes(tmp_path / "out") == tree_bytes(model_dir)
        assert keyed == []
        report = v.verify("m@v1", read_data=True)
        assert report.ok and len(keyed) == n_chunks == report.checked_chunks


def test_verify_finds_a_sealed_chunk_whose_id_does_not_match_its_content(home: Path, tmp_path: Path) -> None:
    """What only a key holder could write (a blob sealed for an id that is not its bytes' hash):
    a pull refuses the file by its SHA-256, verify and re-encryption name the chunk."""
    src = _twins(tmp_path / "src")
    with _open(home, encrypted=True) as v:
        v.push("m", src, version="v1")
        a_id, a = _loc(v, "m", "a.bin")
        dom = v.keys.domain("m")
        assert dom is not None
        wrong = (src / "b.bin").read_bytes()
        forged = dom.ciphers[a.key_slot].seal(wrong, chunk_id=a_id, codec=a.codec, raw_len=a.raw_len)
        _put_blob(v.settings.store_path, a, bytes(forged))
        with pytest.raises(CorruptObjectError, match="SHA-256"):
            v.pull("m@v1", tmp_path / "out")
        assert not (tmp_path / "out" / "a.bin").exists()
        report = v.verify("m@v1", read_data=True)
        assert any(a_id.hex() in p and "hash mismatch" in p for p in report.problems)
        # re-encryption proves each chunk before its old key goes: it stops, the old key stays
        with pytest.raises(CorruptObjectError, match="hash mismatch"):
            v.rotate_keys("m", reencrypt=True)
        assert a.key_slot in v.keys.domain("m", refresh=True).ciphers  # type: ignore[union-attr]


# ---------------------------------------------------------------- plain chunks


def test_plain_chunk_of_the_right_length_with_wrong_bytes_is_caught_by_its_hash(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src, backup = _twins(tmp_path / "src"), tmp_path / "backup"
    with _open(home, encrypted=False, backup=backup) as v:
        v.push("m", src, version="v1")
        a_id = _swap_a_for_b(v, "m")
    plain: list[int] = []
    monkeypatch.setattr(codecs, "plain_chunk_id", _counting(codecs.plain_chunk_id, plain))
    with _open(home, encrypted=False) as v:
        with pytest.raises(CorruptObjectError, match="hash mismatch") as info:  # the chunk, not the file
            v.pull("m@v1", tmp_path / "alone")
        assert a_id.hex() in str(info.value) and plain
    with _open(home, encrypted=False, backup=backup) as v:
        result = v.pull("m@v1", tmp_path / "out")
        assert tree_bytes(tmp_path / "out") == tree_bytes(src)
        assert any(f.startswith("local:") and "packs/" in f for f in result.fallbacks)


def test_plain_chunks_of_an_encrypted_model_are_still_hashed(home: Path, tmp_path: Path) -> None:
    """A version pushed before the model got its keys keeps plain chunks, read by the model's
    domain reader: those have no tag, so their hash is checked."""
    src = _twins(tmp_path / "src")
    with _open(home, encrypted=False) as v:
        v.push("m", src, version="v1")
        a_id = _swap_a_for_b(v, "m")
    write_random(tmp_path / "v2" / "c.bin", SMALL, seed=13)  # not a.bin: its keyed recipe would be read
    with _open(home, encrypted=True) as v:
        v.push("m", tmp_path / "v2", version="v2")
        assert v.keys.domain("m") is not None
        assert _loc(v, "m", "c.bin", "m@v2")[1].codec & ENCRYPTED
        assert not _loc(v, "m", "a.bin", "m@v1")[1].codec & ENCRYPTED
        with pytest.raises(CorruptObjectError, match="hash mismatch") as info:
            v.pull("m@v1", tmp_path / "out")
        assert a_id.hex() in str(info.value)


PULL_PROBE = """
import sys
from pathlib import Path
from weightvault.vault.vault import Vault
with Vault.open(Path(sys.argv[1]), encryption={"enabled": True}, cache_enabled=False) as v:
    v.pull("m@v1", Path(sys.argv[2]))
print(",".join(m for m in ("numpy", "zstandard", "weightvault.cas.compression") if m in sys.modules))
"""


def test_encrypted_pull_without_compression_loads_no_compression_codecs(home: Path, tmp_path: Path) -> None:
    """numpy and zstandard cost ~0.1 CPU-s to import: a pull of sealed raw blobs needs neither."""
    src = _twins(tmp_path / "src")
    with _open(home, encrypted=True) as v:
        v.push("m", src, version="v1")
    got = subprocess.run(
        [sys.executable, "-c", PULL_PROBE, str(home), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert got.returncode == 0, got.stderr
    assert got.stdout.strip() == ""
    assert tree_bytes(tmp_path / "out") == tree_bytes(src)
