"""Content-defined chunking of byte streams (FastCDC 2020, native via pyfastcdc).

Boundaries depend only on content, so an edit or an insertion moves only the chunks around
it, and everything after re-synchronises: that is what makes re-pushing a changed shard cheap.

An encrypted model chunks with a secret ``seed`` (derived from its id key): pyfastcdc XORs it into
every entry of the gear table, so boundaries, and the chunk lengths a bucket shows, cannot be
computed for a known file without the key. pyfastcdc takes a seed below 2**63, not a whole table; see
docs/security.md for what that does and does not hide.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from pyfastcdc import FastCDC

DEFAULT_MIN_SIZE = 256 * 1024
DEFAULT_AVG_SIZE = 1024 * 1024
DEFAULT_MAX_SIZE = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ChunkingParams:
    """Stored in the store's config: changing them would break deduplication, so they are fixed at init."""

    min_size: int = DEFAULT_MIN_SIZE
    avg_size: int = DEFAULT_AVG_SIZE
    max_size: int = DEFAULT_MAX_SIZE
    algorithm: str = "fastcdc2020"


class Chunker:
    def __init__(self, params: ChunkingParams = ChunkingParams(), seed: int = 0) -> None:
        if not 0 <= seed < 1 << 63:  # pyfastcdc shifts it left by one in a C uint64
            raise ValueError("a chunker seed is an integer in [0, 2**63)")
        self.params = params
        self.keyed = seed != 0
        self._cdc = FastCDC(params.avg_size, min_size=params.min_size, max_size=params.max_size, seed=seed)

    def chunks(self, stream: BinaryIO | io.RawIOBase) -> Iterator[memoryview]:
        """Yield chunk views of ``stream``; each view is valid only until the next one is requested."""
        for chunk in self._cdc.cut_stream(stream):
            yield chunk.data

    def chunk_bytes(self, data: bytes | bytearray | memoryview) -> Iterator[memoryview]:
        view = memoryview(data)
        if len(view) <= self.params.min_size:
            # FastCDC never cuts before ``min_size``: the whole buffer is one chunk (none when
            # empty). Said here, a small file of a push skips the native call and its set-up.
            if len(view):
                yield view.cast("B")
            return
        for chunk in self._cdc.cut_buf(data):
            yield chunk.data
