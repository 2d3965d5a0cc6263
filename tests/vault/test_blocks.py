"""The server's download path: verified blocks of adjacent chunks, each in memory of its own."""

from __future__ import annotations

from pathlib import Path

import pytest

from weightvault.core import layout
from weightvault.core.errors import CorruptObjectError
from weightvault.vault.reader import LENT_BLOCKS
from weightvault.vault.recycled import Recycler, released
from weightvault.vault.stream import FileStream
from weightvault.vault.vault import Vault

from ..conftest import write_random

SIZE = 9_000_000


def _stream(v: Vault, tmp_path: Path) -> tuple[FileStream, bytes]:
    data = write_random(tmp_path / "src" / "w.bin", SIZE, seed=7).read_bytes()
    v.push("m", tmp_path / "src", version="v1")
    return v.open_file("m@v1", "w.bin"), data


def _chunk_starts(fs: FileStream) -> list[int]:
    starts, pos = [], 0
    for _, n in fs.recipe.chunks:
        starts.append(pos)
        pos += n
    return starts


def _flip(home: Path, v: Vault, fs: FileStream, chunk: int) -> None:
    """Flip one byte in the middle of the stored bytes of the file's ``chunk``-th chunk."""
    cid = fs.recipe.chunks[chunk][0]
    loc = v.index.locate_chunks([cid])[cid]
    pack = home / "store" / layout.pack_key(loc.pack_id)
    raw = bytearray(pack.read_bytes())
    raw[loc.offset + loc.stored_len // 2] ^= 0x01
    pack.write_bytes(bytes(raw))


def test_blocks_coalesce_chunks_and_stay_valid_after_later_reads(vault: Vault, tmp_path: Path) -> None:
    fs, data = _stream(vault, tmp_path)
    ids = [c for c, _ in fs.recipe.chunks]
    assert len(ids) >= 6
    limit = 3 << 20
    blocks = list(fs.reader.blocks(ids, fs.what, block_max=limit))  # all held until the end
    assert len(blocks) < len(ids)  # several chunks per read
    biggest_chunk = max(n for _, n in fs.recipe.chunks)
    assert all(len(b) <= max(limit, biggest_chunk) for b in blocks)
    assert b"".join(blocks) == data  # no block was overwritten by the reads after it


def test_ranges_across_chunk_and_block_boundaries(vault: Vault, tmp_path: Path) -> None:
    fs, data = _stream(vault, tmp_path)
    edges = [0, 1, SIZE - 1, SIZE]
    for s in _chunk_starts(fs)[1:]:
        edges += [s - 1, s, s + 1]
    for s in sorted(set(edges))[:-1]:
        for e in (s + 1, s + 5_000_000, None):
            assert b"".join(fs.iter_blocks(s, e)) == data[s:e], (s, e)


def test_a_corrupt_chunk_inside_a_block_is_never_sent(vault: Vault, home: Path, tmp_path: Path) -> None:
    fs, data = _stream(vault, tmp_path)
    starts = _chunk_starts(fs)
    limit = 4 << 20
    # the blocks as planned, then a chunk in the middle of the second block (not its first)
    clean = [len(b) for b in fs.reader.blocks([c for c, _ in fs.recipe.chunks], fs.what, limit)]
    assert len(clean) >= 2
    second = [i for i, s in enumerate(starts) if clean[0] <= s < clean[0] + clean[1]]
    assert len(second) >= 2
    _flip(home, vault, fs, second[len(second) // 2])  # index >= 1: not the block's first chunk
    sent = bytearray()
    with pytest.raises(CorruptObjectError, match=r"hash mismatch|cannot be decoded"):
        for block in fs.iter_blocks():
            sent += block
    assert bytes(sent) == data[: clean[0]]  # the first block only: nothing of the bad one


def test_a_bad_primary_copy_falls_through_to_a_replica(tmp_path: Path) -> None:
    replicas = {"gcp": (tmp_path / "gcp").as_uri()}
    with Vault.open(tmp_path / "home", replicas=replicas) as v:
        fs, data = _stream(v, tmp_path)
        _flip(tmp_path / "home", v, fs, len(fs.recipe.chunks) // 2)
        assert b"".join(fs.iter_blocks()) == data
        assert b"".join(fs.iter_blocks(SIZE // 2 - 3, SIZE // 2 + 3)) == data[SIZE // 2 - 3 : SIZE // 2 + 3]


def test_unchecked_blocks_skip_the_chunk_hash_for_that_read_only(
    vault: Vault, home: Path, tmp_path: Path
) -> None:
    """``check_chunks=False`` (a client that checks the SHA-256 asked for it) hands out the stored
    bytes as they are; the default read of the same file still refuses the bad chunk."""
    fs, data = _stream(vault, tmp_path)
    bad = len(fs.recipe.chunks) // 2
    _flip(home, vault, fs, bad)
    sent = b"".join(fs.iter_blocks(check_chunks=False))
    diff = [i for i in range(SIZE) if sent[i] != data[i]]
    assert len(sent) == SIZE and len(diff) == 1 and _chunk_starts(fs)[bad] <= diff[0]
    with pytest.raises(CorruptObjectError, match="hash mismatch"):
        b"".join(fs.iter_blocks())


@pytest.mark.parametrize("check", [True, False])
def test_a_block_s_memory_is_read_into_again_only_once_no_view_of_it_is_left(
    vault: Vault, tmp_path: Path, check: bool
) -> None:
    data = write_random(tmp_path / "src" / "big.bin", 40_000_000, seed=8).read_bytes()
    vault.push("m", tmp_path / "src", version="v1")
    fs = vault.open_file("m@v1", "big.bin")
    ids = [c for c, _ in fs.recipe.chunks]
    owners: list[object] = []  # the buffers themselves (no view of them): they may be reused
    got = bytearray()
    for block in fs.reader.blocks(ids, fs.what, block_max=1 << 20, check=check):
        got += block
        owners.append(block.obj)
        del block  # what a sent block is: nobody holds it
    assert bytes(got) == data
    distinct = {id(o) for o in owners}
    assert len(owners) > LENT_BLOCKS and len(distinct) <= LENT_BLOCKS  # bounded, reused


def test_a_buffer_still_viewed_is_never_lent_again() -> None:
    lender = Recycler(2, 1000)
    held = lender.take(10)
    other = lender.take(10)
    assert held.obj is not other.obj and not released(held.obj)  # type: ignore[arg-type]
    third = lender.take(10)  # both lent and viewed: a new buffer, not kept
    assert third.obj is not held.obj and third.obj is not other.obj
    owner = other.obj
    del other
    assert lender.take(1000).obj is owner  # released: lent again


def test_unchecked_blocks_of_an_encrypted_model_are_still_authenticated(home: Path, tmp_path: Path) -> None:
    """Skipping the chunk hash does not skip AES-GCM: a flipped byte of a sealed chunk is refused."""
    with Vault.open(home, encryption={"enabled": True}) as v:
        fs, data = _stream(v, tmp_path)
        assert b"".join(fs.iter_blocks(check_chunks=False)) == data
        _flip(home, v, fs, len(fs.recipe.chunks) // 2)
        with pytest.raises(CorruptObjectError, match="cannot be decoded"):
            b"".join(fs.iter_blocks(check_chunks=False))
