from __future__ import annotations

import io
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyfastcdc import FastCDC

from weightvault.cas.chunker import Chunker, ChunkingParams

SMALL = ChunkingParams(min_size=1024, avg_size=4096, max_size=16384)


@settings(max_examples=40, deadline=None)
@given(st.binary(max_size=200_000), st.integers(0, 2**31))
def test_chunks_rebuild_the_stream_and_match_buffer_chunking(data: bytes, seed: int) -> None:
    rnd = random.Random(seed)
    data = data + rnd.randbytes(rnd.randrange(0, 100_000))
    chunker = Chunker(SMALL)
    streamed = [bytes(c) for c in chunker.chunks(io.BytesIO(data))]
    assert b"".join(streamed) == data
    assert all(len(c) <= SMALL.max_size for c in streamed)
    assert all(len(c) >= SMALL.min_size for c in streamed[:-1])
    assert streamed == [bytes(c) for c in chunker.chunk_bytes(data)]


def test_boundaries_resynchronise_after_an_insertion() -> None:
    data = random.Random(7).randbytes(2_000_000)
    chunker = Chunker(SMALL)
    before = {bytes(c) for c in chunker.chunk_bytes(data)}
    edited = data[:500_000] + b"inserted tensor bytes" * 100 + data[500_000:]
    after = [bytes(c) for c in chunker.chunk_bytes(edited)]
    new_bytes = sum(len(c) for c in after if c not in before)
    # only the chunks around the insertion are new: a few times the max chunk size at most
    assert new_bytes < 4 * SMALL.max_size
    assert new_bytes >= 2100


def test_default_params_average_about_one_mebibyte() -> None:
    data = random.Random(3).randbytes(32 << 20)
    sizes = [len(c) for c in Chunker().chunk_bytes(data)]
    assert 0.7 * (1 << 20) < sum(sizes) / len(sizes) < 2.0 * (1 << 20)


@pytest.mark.parametrize("seed", [0, 12345])
def test_buffers_up_to_the_minimum_size_are_one_chunk_as_fastcdc_cuts_them(seed: int) -> None:
    params = ChunkingParams(min_size=64 * 1024, avg_size=256 * 1024, max_size=1024 * 1024)
    chunker = Chunker(params, seed=seed)
    native = FastCDC(params.avg_size, min_size=params.min_size, max_size=params.max_size, seed=seed)
    rng = random.Random(seed)
    for n in [0, 1, 4096, params.min_size - 1, params.min_size, params.min_size + 1, 3 * params.max_size]:
        data = rng.randbytes(n)
        ours = [bytes(v) for v in chunker.chunk_bytes(data)]
        assert ours == [bytes(c.data) for c in native.cut_buf(data)]
        assert b"".join(ours) == data
    assert [bytes(v) for v in chunker.chunk_bytes(bytearray(b"abc"))] == [b"abc"]
    assert [bytes(v) for v in chunker.chunk_bytes(memoryview(b"abcd")[1:])] == [b"bcd"]
