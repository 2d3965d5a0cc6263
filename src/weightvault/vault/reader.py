"""Rebuilding files from chunks, verifying every chunk and every file as the bytes stream.

Consecutive chunks stored side by side in one pack are fetched with one ranged read, into a
buffer reused per thread (fresh memory is slow to touch on these machines). A reader belongs to
one encryption domain (``BlobCodec``): a pull reads one model, so it knows whose keys to use.
Decoded chunks (decrypted, decompressed) go to a second per-thread buffer; a plain raw chunk is
handed out as a view of the fetched bytes, without a copy.

A server sends with ``blocks``: each run read into memory of its own (reused only once no view of
it is left, ``recycled``: the socket may send it later) and handed out whole once every chunk in
it is checked: no copy per chunk and one event-loop hand-off per block instead of one per chunk.
"""

from __future__ import annotations

import copy
import hashlib
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from weightvault.cas.hashing import chunk_id
from weightvault.cas.pack import Writable
from weightvault.core import layout
from weightvault.core.errors import CorruptObjectError, MissingObjectError
from weightvault.core.manifest import FileRecipe
from weightvault.registry.index import ChunkLocation, RegistryIndex
from weightvault.storage.backend import Backend
from weightvault.storage.replica import ReplicaSet
from weightvault.vault.codecs import ENCRYPTED, BlobCodec
from weightvault.vault.recycled import Recycler

RUN_MAX = 16 << 20
#: buffers a download keeps for its blocks (``Recycler``): the queue to the event loop, the one
#: being sent and the one being read
LENT_BLOCKS = 8
#: the most bytes of adjacent chunks ``blocks`` reads and hands out at once (a single larger
#: chunk is one block): bounds a download's memory to a few blocks in flight
BLOCK_MAX = 4 << 20

#: (codec, stored bytes, raw length, chunk id, key slot) -> raw bytes
BlobDecoder = Callable[[int, memoryview, int, bytes, int], bytes | memoryview]


@dataclass(frozen=True, slots=True)
class _Run:
    pack_id: str
    offset: int
    length: int
    items: tuple[tuple[bytes, ChunkLocation], ...]


def plan_runs(
    chunk_ids: list[bytes], where: dict[bytes, ChunkLocation], run_max: int = RUN_MAX
) -> Iterator[_Run]:
    """Group the file's chunks into ranged reads of adjacent blobs of at most ``run_max`` bytes."""
    items: list[tuple[bytes, ChunkLocation]] = []
    for cid in chunk_ids:
        loc = where[cid]
        if items:
            last = items[-1][1]
            start = items[0][1].offset
            if (
                loc.pack_id != last.pack_id
                or loc.offset != last.offset + last.stored_len
                or loc.offset + loc.stored_len - start > run_max
            ):
                yield _Run(last.pack_id, start, last.offset + last.stored_len - start, tuple(items))
                items = []
        items.append((cid, loc))
    if items:
        last = items[-1][1]
        start = items[0][1].offset
        yield _Run(last.pack_id, start, last.offset + last.stored_len - start, tuple(items))


def _grown(old: bytearray | None, size: int, full: int) -> int:
    """The size of a thread's reused buffer that must hold ``size`` bytes: doubling from 256 KiB
    up to ``full`` (a new bytearray is zeroed, so every byte counts in RSS: the threads that
    pull small files must not each hold the full run buffer a large file needs)."""
    grown = max(2 * len(old), 256 << 10) if old is not None else 256 << 10
    return max(size, min(grown, full))


class ChunkReader:
    def __init__(self, backend: Backend, index: RegistryIndex, codec: BlobCodec | None = None) -> None:
        self._backend = backend
        self._index = index
        self.codec = codec or BlobCodec()
        #: ``decode(codec, stored, raw_len, chunk id, key slot)`` and ``chunk_id(raw)`` for callers
        #: that check single blobs (replica repair); plain chunks only on the store-wide reader
        self.decode: BlobDecoder = self.codec.decode
        self.chunk_id: Callable[[bytes | bytearray | memoryview], bytes] = chunk_id
        self._local = threading.local()
        self._open_fd = getattr(backend, "open_fd", None)
        self._replicas = backend if isinstance(backend, ReplicaSet) else None
        #: replica to try first (``pull --provider``); the primary and the others follow
        self.prefer: str | None = None
        #: chunk locations found ahead (``with_locations``); anything else is asked of the index
        self._located: dict[bytes, ChunkLocation] = {}
        #: packs kept open by a ``with_locations`` view until ``close``: a pull of 10,000 small
        #: files otherwise opens and closes a pack 10,000 times (a path walk each)
        self._kept: dict[str, int] | None = None
        self._kept_lock = threading.Lock()
        #: also hash sealed chunks against their ids (``rehashing``); see ``_decode_one``
        self.rehash_sealed = False

    def with_locations(self, ids: Sequence[bytes]) -> ChunkReader:
        """This reader (same buffers), knowing where ``ids`` are from one pass over the index: a
        pull of 10,000 small files otherwise asks the index 10,000 times. For one pull only: a
        later gc may move chunks, and a retry after a refresh takes a fresh view."""
        view = copy.copy(self)
        view._located = self._index.locate_chunks(ids)
        if self._open_fd is not None:
            view._kept = {}
            view._kept_lock = threading.Lock()
        return view

    def rehashing(self) -> ChunkReader:
        """This reader (same buffers), hashing sealed chunks against their ids as well: for ``verify
        --read-data`` and re-encryption, which exist to prove every stored id against its content
        (a key holder's mistake included), not only that the bucket did not alter it."""
        view = copy.copy(self)
        view.rehash_sealed = True
        return view

    def close(self) -> None:
        """Close the packs a ``with_locations`` view kept open (a no-op for other readers)."""
        if self._kept is None:
            return
        with self._kept_lock:
            fds, self._kept = list(self._kept.values()), {}
        for fd in fds:
            os.close(fd)

    def _pack_fd(self, key: str) -> tuple[int, bool]:
        """A read descriptor of the pack and whether the caller closes it (not a kept one).
        A pack removed by a gc while kept open still reads its old bytes, which are verified
        like any others."""
        assert self._open_fd is not None
        kept = self._kept
        if kept is None:
            return self._open_fd(key), True
        fd = kept.get(key)
        if fd is None:
            with self._kept_lock:
                fd = kept.get(key)
                if fd is None:
                    fd = kept[key] = self._open_fd(key)
        return fd, False

    def for_codec(self, codec: BlobCodec) -> ChunkReader:
        """A reader of the same store for another domain."""
        reader = ChunkReader(self._backend, self._index, codec)
        reader.prefer = self.prefer
        return reader

    def _buffer(self, size: int) -> memoryview:
        buf: bytearray | None = getattr(self._local, "buf", None)
        if buf is None or len(buf) < size:
            buf = bytearray(_grown(buf, size, RUN_MAX + (4 << 20)))
            self._local.buf = buf
        return memoryview(buf)[:size]

    def _out(self, size: int) -> memoryview:
        buf: bytearray | None = getattr(self._local, "out", None)
        if buf is None or len(buf) < size:
            buf = bytearray(_grown(buf, size, RUN_MAX + (4 << 20)))
            self._local.out = buf
        return memoryview(buf)[:size]

    def _chunk_out(self, size: int) -> memoryview:
        buf: bytearray | None = getattr(self._local, "chunk", None)
        if buf is None or len(buf) < size:
            buf = bytearray(_grown(buf, size, 4 << 20))
            self._local.chunk = buf
        return memoryview(buf)[:size]

    def _decode_one(
        self,
        cid: bytes,
        loc: ChunkLocation,
        stored: memoryview,
        out: memoryview,
        what: str,
        check: bool = True,
    ) -> memoryview:
        """One chunk decoded (into ``out`` unless it is a plain raw blob) and checked against its id.

        A plain chunk is checked by hashing it (unless ``check`` is off: its length only then). A
        sealed chunk is checked by its AES-GCM tag, always: the associated data binds this chunk id,
        codec and raw length, so only a holder of the domain's key (a trusted writer) can have
        sealed these bytes for this id; the bucket cannot. Hashing it again adds nothing against
        the bucket and costs a BLAKE3 pass per byte, so only ``rehash_sealed`` does it
        (docs/security.md, "What a read checks")."""
        codec = self.codec
        if loc.codec == 0:
            raw = stored
        else:
            try:
                raw = codec.decode_into(loc.codec, stored, out, cid, loc.key_slot)
            except CorruptObjectError as exc:
                raise CorruptObjectError(
                    f"chunk {cid.hex()} of {what} in pack {loc.pack_id} cannot be decoded: {exc}"
                ) from exc
        hashed = check and (self.rehash_sealed or not loc.codec & ENCRYPTED)
        if len(raw) != loc.raw_len or (hashed and codec.chunk_id_for(loc.codec)(raw) != cid):
            raise CorruptObjectError(
                f"chunk {cid.hex()} of {what} in pack {loc.pack_id} is corrupt (hash mismatch)"
            )
        return raw

    def _iter_run(self, run: _Run, data: memoryview, what: str) -> Iterator[memoryview]:
        """The run's chunks decoded one by one into a chunk-sized buffer (stays in the CPU cache
        for the hashing and writing that follow)."""
        for cid, loc in run.items:
            rel = loc.offset - run.offset
            stored = data[rel : rel + loc.stored_len]
            yield self._decode_one(
                cid, loc, stored, self._chunk_out(loc.raw_len) if loc.codec else stored, what
            )

    def _decode_run(
        self, run: _Run, data: memoryview, what: str, check: bool = True, out: memoryview | None = None
    ) -> list[memoryview]:
        """Every chunk of the run decoded and checked (a replica's copy is judged whole); the
        decoded ones side by side in ``out`` (this thread's buffer unless given)."""
        if out is None:
            total = sum(loc.raw_len for _, loc in run.items if loc.codec)
            out = self._out(total) if total else memoryview(b"")
        pos = 0
        views: list[memoryview] = []
        for cid, loc in run.items:
            rel = loc.offset - run.offset
            stored = data[rel : rel + loc.stored_len]
            if loc.codec:
                views.append(self._decode_one(cid, loc, stored, out[pos : pos + loc.raw_len], what, check))
                pos += loc.raw_len
            else:
                views.append(self._decode_one(cid, loc, stored, stored, what, check))
        return views

    def _fetch(self, run: _Run, what: str, check: bool = True) -> Iterator[memoryview]:
        key = layout.pack_key(run.pack_id)
        if self._replicas is not None:  # verified per replica: a bad copy falls through to the next
            decoded: list[list[memoryview]] = []

            def verify(data: bytes) -> bool:
                if len(data) != run.length:
                    return False
                try:  # a failed decryption counts as a bad copy like a hash mismatch
                    decoded.append(self._decode_run(run, memoryview(data), what, check))
                except CorruptObjectError:
                    return False
                return True

            try:
                self._replicas.read(
                    key, offset=run.offset, length=run.length, prefer=self.prefer, verify=verify
                )
            except (MissingObjectError, CorruptObjectError) as exc:
                raise type(exc)(
                    f"pack {run.pack_id} needed by {what}: no good copy on any replica ({exc})"
                ) from None
            return iter(decoded[-1])
        try:
            if self._open_fd is not None:
                view = self._buffer(run.length)
                fd, own = self._pack_fd(key)
                try:
                    n = os.preadv(fd, [view], run.offset)
                finally:
                    if own:
                        os.close(fd)
                if n != run.length:
                    raise CorruptObjectError(f"pack {run.pack_id} is truncated (needed by {what})")
            else:
                view = memoryview(self._backend.get_range(key, run.offset, run.length))
                if len(view) != run.length:
                    raise CorruptObjectError(f"pack {run.pack_id} is truncated (needed by {what})")
        except MissingObjectError:
            raise MissingObjectError(f"pack {run.pack_id} needed by {what} is missing") from None
        return self._iter_run(run, view, what)

    def _where(self, chunk_ids: list[bytes], what: str) -> dict[bytes, ChunkLocation]:
        known = self._located
        where = (
            known if known and all(c in known for c in chunk_ids) else self._index.locate_chunks(chunk_ids)
        )
        missing = [c for c in chunk_ids if c not in where]
        if missing:
            raise MissingObjectError(f"chunk {missing[0].hex()} of {what} is not in the index")
        return where

    def chunks(self, chunk_ids: list[bytes], what: str) -> Iterator[bytes | memoryview]:
        """Yield verified raw chunks in order; views are valid until the next one."""
        for run in plan_runs(chunk_ids, self._where(chunk_ids, what)):
            yield from self._fetch(run, what)

    def blocks(
        self, chunk_ids: list[bytes], what: str, block_max: int = BLOCK_MAX, *, check: bool = True
    ) -> Iterator[memoryview]:
        """The raw bytes of the chunks in order, in blocks of adjacent chunks (at most ``block_max``
        bytes unless one chunk is larger), each yielded only once all its chunks are checked. Each
        block owns its memory: it stays valid and unchanged while any view of it is held.

        ``check=False`` skips the BLAKE3 of every plain chunk (sealed ones are checked by their
        tag either way, ``_decode_one``; lengths are still checked, and a replica copy that cannot
        be read or decoded still falls through): only for a reader that checks the file's SHA-256
        against a trusted manifest."""
        lent = Recycler(LENT_BLOCKS, block_max)  # this download's blocks, reused once sent
        for run in plan_runs(chunk_ids, self._where(chunk_ids, what), block_max):
            yield self._block(run, what, check, lent)

    def _block(self, run: _Run, what: str, check: bool, lent: Recycler) -> memoryview:
        if self._replicas is not None:  # checked per replica copy, views of distinct memory: one copy
            return memoryview(b"".join(self._fetch(run, what, check)))
        key = layout.pack_key(run.pack_id)
        data: bytes | memoryview
        try:
            if self._open_fd is not None:
                data = lent.take(run.length)  # no view of it is left: the socket sent it
                fd = self._open_fd(key)
                try:
                    n = os.preadv(fd, [data], run.offset)
                finally:
                    os.close(fd)
                data = data[:n]
            else:
                data = self._backend.get_range(key, run.offset, run.length)
        except MissingObjectError:
            raise MissingObjectError(f"pack {run.pack_id} needed by {what} is missing") from None
        if len(data) != run.length:
            raise CorruptObjectError(f"pack {run.pack_id} is truncated (needed by {what})")
        view = memoryview(data)
        plain = not any(loc.codec for _, loc in run.items)
        if plain and not check and all(loc.stored_len == loc.raw_len for _, loc in run.items):
            return view  # nothing to decode, and the lengths add up
        if all(loc.codec for _, loc in run.items):  # decoded straight into memory of its own
            out = lent.take(sum(loc.raw_len for _, loc in run.items))
            self._decode_run(run, view, what, check, out)
            return out
        views = self._decode_run(run, view, what, check)
        if plain:
            return view  # plain blobs side by side: the stored bytes are the raw bytes
        return memoryview(b"".join(views))  # plain and decoded blobs mixed (a repacked pack)

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
