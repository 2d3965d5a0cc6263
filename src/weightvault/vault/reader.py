"""Rebuilding files from chunks, verifying every chunk and every file as the bytes stream.

Consecutive chunks stored side by side in one pack are fetched with one ranged read, into a
buffer reused per thread (fresh memory is slow to touch on these machines).
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from weightvault.cas.hashing import chunk_id
from weightvault.cas.pack import Writable
from weightvault.core import layout
from weightvault.core.errors import CorruptObjectError, MissingObjectError, WeightvaultError
from weightvault.core.manifest import FileRecipe
from weightvault.registry.index import ChunkLocation, RegistryIndex
from weightvault.storage.backend import Backend
from weightvault.storage.replica import ReplicaSet

RUN_MAX = 16 << 20

#: (codec, stored bytes, raw length, chunk id, key slot) -> raw bytes
BlobDecoder = Callable[[int, memoryview, int, bytes, int], bytes | memoryview]


def raw_decoder(codec: int, stored: memoryview, raw_len: int, cid: bytes, _slot: int) -> memoryview:
    if codec != 0:
        raise CorruptObjectError(f"chunk {cid.hex()} uses codec {codec}, which this vault cannot decode")
    return stored


@dataclass(frozen=True, slots=True)
class _Run:
    pack_id: str
    offset: int
    length: int
    items: tuple[tuple[bytes, ChunkLocation], ...]


def plan_runs(chunk_ids: list[bytes], where: dict[bytes, ChunkLocation]) -> Iterator[_Run]:
    """Group the file's chunks into ranged reads of adjacent blobs."""
    items: list[tuple[bytes, ChunkLocation]] = []
    for cid in chunk_ids:
        loc = where[cid]
        if items:
            last = items[-1][1]
            start = items[0][1].offset
            if (
                loc.pack_id != last.pack_id
                or loc.offset != last.offset + last.stored_len
                or loc.offset + loc.stored_len - start > RUN_MAX
            ):
                yield _Run(last.pack_id, start, last.offset + last.stored_len - start, tuple(items))
                items = []
        items.append((cid, loc))
    if items:
        last = items[-1][1]
        start = items[0][1].offset
        yield _Run(last.pack_id, start, last.offset + last.stored_len - start, tuple(items))


class ChunkReader:
    def __init__(
        self,
        backend: Backend,
        index: RegistryIndex,
        decoder: BlobDecoder = raw_decoder,
        chunk_id_fn: Callable[[bytes | memoryview], bytes] = chunk_id,
    ) -> None:
        self._backend = backend
        self._index = index
        self.decode = decoder
        self.chunk_id = chunk_id_fn
        self._local = threading.local()
        self._open_fd = getattr(backend, "open_fd", None)
        self._replicas = backend if isinstance(backend, ReplicaSet) else None
        #: replica to try first (``pull --provider``); the primary and the others follow
        self.prefer: str | None = None

    def _buffer(self, size: int) -> memoryview:
        buf: bytearray | None = getattr(self._local, "buf", None)
        if buf is None or len(buf) < size:
            buf = bytearray(max(size, RUN_MAX + (4 << 20)))
            self._local.buf = buf
        return memoryview(buf)[:size]

    def _run_ok(self, run: _Run, data: memoryview) -> bool:
        for cid, loc in run.items:
            rel = loc.offset - run.offset
            try:
                raw = self.decode(loc.codec, data[rel : rel + loc.stored_len], loc.raw_len, cid, loc.key_slot)
            except WeightvaultError:
                return False
            if len(raw) != loc.raw_len or self.chunk_id(raw) != cid:
                return False
        return True

    def _fetch(self, run: _Run, what: str) -> memoryview:
        key = layout.pack_key(run.pack_id)
        if self._replicas is not None:  # verified per replica: a bad copy falls through to the next
            try:
                result = self._replicas.read(
                    key,
                    offset=run.offset,
                    length=run.length,
                    prefer=self.prefer,
                    verify=lambda data: len(data) == run.length and self._run_ok(run, memoryview(data)),
                )
            except (MissingObjectError, CorruptObjectError) as exc:
                raise type(exc)(
                    f"pack {run.pack_id} needed by {what}: no good copy on any replica ({exc})"
                ) from None
            return memoryview(result.data)
        try:
            if self._open_fd is not None:
                view = self._buffer(run.length)
                fd = self._open_fd(key)
                try:
                    n = os.preadv(fd, [view], run.offset)
                finally:
                    os.close(fd)
                if n != run.length:
                    raise CorruptObjectError(f"pack {run.pack_id} is truncated (needed by {what})")
                return view
            data = self._backend.get_range(key, run.offset, run.length)
            if len(data) != run.length:
                raise CorruptObjectError(f"pack {run.pack_id} is truncated (needed by {what})")
            return memoryview(data)
        except MissingObjectError:
            raise MissingObjectError(f"pack {run.pack_id} needed by {what} is missing") from None

    def chunks(self, chunk_ids: list[bytes], what: str) -> Iterator[bytes | memoryview]:
        """Yield verified raw chunks in order; views are valid until the next one."""
        where = self._index.locate_chunks(chunk_ids)
        missing = [c for c in chunk_ids if c not in where]
        if missing:
            raise MissingObjectError(f"chunk {missing[0].hex()} of {what} is not in the index")
        for run in plan_runs(chunk_ids, where):
            data = self._fetch(run, what)
            for cid, loc in run.items:
                rel = loc.offset - run.offset
                stored = data[rel : rel + loc.stored_len]
                try:
                    raw = self.decode(loc.codec, stored, loc.raw_len, cid, loc.key_slot)
                except WeightvaultError as exc:
                    raise CorruptObjectError(
                        f"chunk {cid.hex()} of {what} in pack {loc.pack_id} cannot be decoded: {exc}"
                    ) from exc
                if len(raw) != loc.raw_len or self.chunk_id(raw) != cid:
                    raise CorruptObjectError(
                        f"chunk {cid.hex()} of {what} in pack {loc.pack_id} is corrupt (hash mismatch)"
                    )
                yield raw

    def write_file(
        self, recipe: FileRecipe, out: Writable, what: str, progress: Callable[[int], None]
    ) -> None:
        """Write the file to ``out``; raises if any chunk or the whole-file SHA-256 does not match."""
        h = hashlib.sha256()
        for raw in self.chunks([c for c, _ in recipe.chunks], what):
            out.write(raw)
            h.update(raw)
            progress(len(raw))
        if h.hexdigest() != recipe.sha256:
            raise CorruptObjectError(f"{what}: SHA-256 mismatch after rebuilding from chunks")
