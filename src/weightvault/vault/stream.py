"""One file of a version as a stream of verified bytes, from any offset (HTTP Range, resumes).

Only the chunks that overlap the requested range are read; each is checked against its hash
by the chunk reader as it streams. The whole-file SHA-256 is checked when the whole file is
read; a partial read leaves that check to the client, which holds the rest of the file.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from weightvault.core.errors import CorruptObjectError, RangeNotSatisfiableError
from weightvault.core.manifest import FileEntry, FileRecipe
from weightvault.vault.reader import ChunkReader


@dataclass(frozen=True, slots=True)
class FileStream:
    entry: FileEntry
    recipe: FileRecipe
    reader: ChunkReader
    what: str

    def check_range(self, start: int, end: int | None) -> tuple[int, int]:
        """(start, end exclusive) within the file, or RangeNotSatisfiableError."""
        size = self.entry.size
        stop = size if end is None else min(end, size)
        if start < 0 or (start >= size and size > 0) or stop < start:
            raise RangeNotSatisfiableError(f"range {start}-{end} is outside {self.what} ({size} bytes)")
        return start, stop

    def iter_bytes(
        self, start: int = 0, end: int | None = None, *, check_sha256: bool = True
    ) -> Iterator[bytes]:
        """Bytes ``start`` to ``end`` (exclusive). Every chunk is checked against its id; a whole
        file also against its SHA-256 unless ``check_sha256`` is off (a server leaves that to the
        client, which checks it anyway: hashing twice would halve a single download's speed)."""
        start, stop = self.check_range(start, end)
        whole = check_sha256 and start == 0 and stop == self.entry.size
        ids, first_offset = self._overlapping(start, stop)
        h = hashlib.sha256() if whole else None
        pos = first_offset
        for raw in self.reader.chunks(ids, self.what):
            n = len(raw)
            lo, hi = max(start - pos, 0), min(stop - pos, n)
            if h is not None:
                h.update(raw)
            if hi > lo:
                yield bytes(raw[lo:hi])
            pos += n
        if h is not None and h.hexdigest() != self.entry.sha256:
            raise CorruptObjectError(f"{self.what}: SHA-256 mismatch after rebuilding from chunks")

    def _overlapping(self, start: int, stop: int) -> tuple[list[bytes], int]:
        """The ids of the chunks that overlap ``start:stop``, and the file offset of the first."""
        ids: list[bytes] = []
        first_offset = 0
        offset = 0
        for cid, n in self.recipe.chunks:
            if offset + n > start and offset < stop:
                if not ids:
                    first_offset = offset
                ids.append(cid)
            offset += n
        return ids, first_offset

    def iter_blocks(
        self, start: int = 0, end: int | None = None, *, check_chunks: bool = True
    ) -> Iterator[memoryview]:
        """Bytes ``start`` to ``end`` (exclusive) for a socket: blocks of several chunks, each
        checked against its ids before it is yielded (unless ``check_chunks`` is off: a client
        that checks the SHA-256 asked for that) and owning its memory (a send may finish after
        the next block is read). No whole-file SHA-256: the receiving client checks it."""
        start, stop = self.check_range(start, end)
        ids, pos = self._overlapping(start, stop)
        for block in self.reader.blocks(ids, self.what, check=check_chunks):
            n = len(block)
            lo, hi = max(start - pos, 0), min(stop - pos, n)
            if hi > lo:
                yield block[lo:hi]
            pos += n

    def open(self) -> io.BufferedReader:
        """A seekable, read-only file object over the file (chunks checked as they are read)."""
        return io.BufferedReader(_RawStream(self), buffer_size=1 << 20)


class _RawStream(io.RawIOBase):
    def __init__(self, stream: FileStream) -> None:
        self._stream = stream
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._stream.entry.size}[whence]
        self._pos = max(base + offset, 0)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        end = min(self._pos + len(view), self._stream.entry.size)
        if end <= self._pos:
            return 0
        n = 0
        for piece in self._stream.iter_bytes(self._pos, end, check_sha256=False):
            view[n : n + len(piece)] = piece
            n += len(piece)
        self._pos += n
        return n
