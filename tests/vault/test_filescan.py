from __future__ import annotations

import hashlib
import io
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from weightvault.cas.chunker import Chunker, ChunkingParams
from weightvault.vault import filescan

SMALL = ChunkingParams(min_size=1024, avg_size=4096, max_size=16384)


@settings(max_examples=25, deadline=None)
@given(size=st.integers(0, 300_000), seed=st.integers(0, 1000), window_pages=st.integers(16, 40))
def test_windowed_chunks_equal_a_streaming_cut(
    tmp_path_factory: pytest.TempPathFactory, size: int, seed: int, window_pages: int
) -> None:
    path = tmp_path_factory.mktemp("scan") / "f.bin"
    data = random.Random(seed).randbytes(size)
    path.write_bytes(data)
    chunker = Chunker(SMALL)
    old = filescan.WINDOW
    filescan.WINDOW = window_pages * 4096  # many windows, each far larger than the max chunk
    try:
        windowed = [bytes(c) for c in filescan.chunk_file(path, size, chunker)]
    finally:
        filescan.WINDOW = old
    assert windowed == [bytes(c) for c in chunker.chunks(io.BytesIO(data))]
    assert filescan.sha256_file(path, size) == hashlib.sha256(data).hexdigest()


def test_a_file_that_shrinks_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(random.Random(1).randbytes(3 << 20))
    with pytest.raises(filescan.FileChangedError):
        filescan.sha256_file(path, 4 << 20)
    monkeypatch.setattr(filescan, "WINDOW", 1 << 20)
    gen = filescan.chunk_file(path, 3 << 20, Chunker(SMALL))
    next(gen)
    with open(path, "r+b") as f:  # shrink past the window being read, not into it
        f.truncate(2 << 20)
    with pytest.raises(filescan.FileChangedError):
        for _ in gen:
            pass
