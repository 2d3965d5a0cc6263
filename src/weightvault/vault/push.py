"""The push pipeline: hash, chunk, deduplicate and pack a source tree on every core.

Each large file is read twice, concurrently and without copies (``filescan`` maps it in
windows): one task computes its SHA-256, the other cuts it into chunks, names them with
BLAKE3 and packs the new ones. Both run in native code that releases the GIL, so with two
workers both cores stay busy.
A file whose size, mtime or inode changes while it is read is refused rather than stored
under a hash that does not describe it. A file the stat cache (``statcache``) vouches for is
not read at all: its recipe is reused when every chunk of it is still indexed.
"""

from __future__ import annotations

import hashlib
import os
import queue
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from weightvault.cas.chunker import Chunker
from weightvault.cas.hashing import chunk_id
from weightvault.core.errors import SourceNotFoundError, WeightvaultError
from weightvault.core.manifest import FileRecipe
from weightvault.storage.oserror import os_error
from weightvault.vault import filescan
from weightvault.vault.earlyhash import EarlyHashes
from weightvault.vault.filescan import FileChangedError
from weightvault.vault.packer import PackSink
from weightvault.vault.source import SourceFile

if TYPE_CHECKING:  # the index's module loads SQLAlchemy; a light push passes its own
    from weightvault.registry.index import RegistryIndex

SMALL_FILE = 8 << 20
#: a task of small files holds at most this many files and bytes (``_batches``)
BATCH_FILES = 256
BATCH_BYTES = 4 << 20
_READ_FLAGS = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)

Progress = Callable[[int], None]
#: (raw chunk, its id, its offset in the file, the file) -> (codec, stored bytes, key slot)
ChunkEncoder = Callable[[memoryview, bytes, int, SourceFile], tuple[int, bytes | bytearray | memoryview, int]]


@dataclass(slots=True)
class _FileState:
    source: SourceFile
    sha256: str | None = None
    chunks: list[tuple[bytes, int]] | None = None
    #: a small file's chunks (id, bytes, offset) until its batch stores them
    cut: list[tuple[bytes, memoryview, int]] = field(default_factory=list)


class _EncodeStage:
    """Compression off the chunking threads: each new chunk is copied into one of a few reused
    buffers and encoded and packed by a small pool, so one large file keeps both cores busy. Used
    when a push compresses and one file outweighs the rest (``Vault._encode_threads``): with
    several similar files, per-file threads already use every core and the copy would be waste.
    The buffers bound the memory (and the chunks in flight)."""

    def __init__(self, encode: ChunkEncoder, sink: PackSink, threads: int, max_chunk: int) -> None:
        self._encode = encode
        self._sink = sink
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="wv-encode")
        self._free: queue.SimpleQueue[bytearray] = queue.SimpleQueue()
        for _ in range(threads * 2):
            self._free.put(bytearray(max_chunk))
        self._futures: list[Future[None]] = []
        self._lock = threading.Lock()
        self._failed: BaseException | None = None

    def submit(self, view: memoryview, cid: bytes, offset: int, src: SourceFile) -> None:
        if self._failed is not None:
            raise self._failed
        buf = self._free.get()  # waits while every buffer is in flight: backpressure
        n = len(view)
        if len(buf) < n:
            buf = bytearray(n)
        buf[:n] = view
        fut = self._pool.submit(self._run, buf, n, cid, offset, src)
        with self._lock:
            self._futures = [f for f in self._futures if not f.done()]
            self._futures.append(fut)

    def _run(self, buf: bytearray, n: int, cid: bytes, offset: int, src: SourceFile) -> None:
        try:
            view = memoryview(buf)[:n]
            codec, stored, slot = self._encode(view, cid, offset, src)
            self._sink.add(cid, stored, n, codec, slot)
        except BaseException as exc:
            self._failed = exc
            raise
        finally:
            self._free.put(buf)

    def drain(self) -> None:
        with self._lock:
            pending = list(self._futures)
        for fut in pending:
            fut.result()
        if self._failed is not None:
            raise self._failed

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def _raw_encoder(
    view: memoryview, _cid: bytes, _offset: int, _src: SourceFile
) -> tuple[int, memoryview, int]:
    return 0, view, 0


class PushPipeline:
    def __init__(
        self,
        index: RegistryIndex,
        sink: PackSink,
        chunker: Chunker,
        workers: int = 2,
        progress: Progress | None = None,
        encoder: ChunkEncoder | None = None,
        chunk_id_fn: Callable[[memoryview | bytes], bytes] = chunk_id,
        usable_slots: frozenset[int] | None = None,
        encode_threads: int = 0,
    ) -> None:
        self._index = index
        self._sink = sink
        self._chunker = chunker
        self._workers = workers
        self._progress = progress or (lambda n: None)
        self._encode = encoder or _raw_encoder
        self._chunk_id = chunk_id_fn
        #: in an encrypted model: the key slots its keyring holds. An indexed chunk sealed under
        #: any other slot (a dead chunk left behind when ``keys rotate --reencrypt`` dropped its
        #: data key) cannot be reused and is written again.
        self._slots = usable_slots
        #: with ``encode_threads`` (a compressing push), chunks are encoded by their own pool
        self._stage = (
            _EncodeStage(self._encode, sink, encode_threads, chunker.params.max_size)
            if encoder is not None and encode_threads > 0
            else None
        )
        self._known: set[bytes] = set()
        self._known_lock = threading.Lock()
        self._stop = threading.Event()
        self._early: EarlyHashes | None = None  # ``run``'s
        self.chunks_total = 0
        self.chunks_new = 0
        self.bytes_read = 0
        self.files_reused = 0  # files taken from the stat cache, not read

    # ---- per-chunk work ----------------------------------------------------------------------

    def _store_chunk(self, view: memoryview, offset: int, src: SourceFile) -> bytes:
        cid = self._chunk_id(view)
        if cid in self._known:
            return cid
        if self._slots is None:
            indexed = self._index.has_chunk(cid)
        else:
            slot = self._index.chunk_slot(cid)
            indexed = slot is not None and slot in self._slots
        if indexed:
            with self._known_lock:
                self._known.add(cid)
            return cid
        self._store_new(view, cid, offset, src)
        return cid

    def _store_new(self, view: memoryview, cid: bytes, offset: int, src: SourceFile) -> None:
        """Pack a chunk the index lacks, unless another file of this push already does."""
        if self._sink.claim(cid):
            if self._stage is not None:
                self._stage.submit(view, cid, offset, src)
            else:
                codec, stored, slot = self._encode(view, cid, offset, src)
                self._sink.add(cid, stored, len(view), codec, slot)
            with self._known_lock:
                self.chunks_new += 1

    def _indexed(self, ids: list[bytes]) -> set[bytes]:
        """Which of ``ids`` the index holds in a usable form (``_store_chunk``'s probe, for many)."""
        if self._slots is None:
            return self._index.has_chunks(ids)
        found = set()
        for cid in ids:
            slot = self._index.chunk_slot(cid)
            if slot is not None and slot in self._slots:
                found.add(cid)
        return found

    # ---- per-file tasks ----------------------------------------------------------------------

    def _hash_file(self, st: _FileState) -> None:
        digest = self._early.take(st.source) if self._early is not None else None
        if digest is None:
            digest = filescan.sha256_file(st.source.abspath, st.source.size, self._stop.is_set)
        st.sha256 = digest

    def _chunk_file(self, st: _FileState) -> None:
        chunks: list[tuple[bytes, int]] = []
        offset = 0
        for view in filescan.chunk_file(st.source.abspath, st.source.size, self._chunker):
            if self._stop.is_set():
                return
            n = len(view)
            chunks.append((self._store_chunk(view, offset, st.source), n))
            offset += n
            self._progress(n)
        st.chunks = chunks

    def _small_files(self, batch: list[_FileState]) -> None:
        """Read, hash and chunk a batch of small files: one task per batch, not per file, so the
        workers hand the GIL and the pool's locks over once per batch (per file, a 10,000-file
        push spent more time in those hand-offs than in hashing), and one index probe for all
        the batch's chunks. Each file is opened once, read with one call into one buffer, and
        must hold exactly the size it was scanned with."""
        read = 0
        for st in batch:
            if self._stop.is_set():
                return
            self._small_file(st)
            read += st.source.size
        pending = [(st, cid, view, offset) for st in batch for cid, view, offset in st.cut]
        indexed = self._indexed(list({cid for _st, cid, _v, _o in pending if cid not in self._known}))
        if indexed:
            with self._known_lock:
                self._known.update(indexed)
        for st, cid, view, offset in pending:
            if cid not in self._known:
                self._store_new(view, cid, offset, st.source)
        for st in batch:
            st.cut = []  # the file's bytes can go
        self._progress(read)

    def _small_file(self, st: _FileState) -> None:
        """Read, hash and cut one small file; its chunks wait in ``st.cut`` for the batch's probe."""
        data = _read_small(st.source)
        st.sha256 = hashlib.sha256(data).hexdigest()
        chunks: list[tuple[bytes, int]] = []
        offset = 0
        for view in self._chunker.chunk_bytes(data):
            n = len(view)
            cid = self._chunk_id(view)
            st.cut.append((cid, view, offset))
            chunks.append((cid, n))
            offset += n
        st.chunks = chunks

    # ---- the whole tree ----------------------------------------------------------------------

    def _reuse(self, st: _FileState, recipe: FileRecipe) -> bool:
        """Take a stat-cache recipe for ``st`` when every chunk of it is still indexed."""
        for cid, _n in recipe.chunks:
            if cid not in self._known and not self._index.has_chunk(cid):
                return False
        with self._known_lock:
            self._known.update(cid for cid, _n in recipe.chunks)
        st.sha256, st.chunks = recipe.sha256, list(recipe.chunks)
        self.files_reused += 1
        self._progress(st.source.size)
        return True

    def run(
        self,
        files: list[SourceFile],
        cached: Mapping[Path, FileRecipe] | None = None,
        verified: Mapping[Path, str] | None = None,
        early: EarlyHashes | None = None,
    ) -> list[FileRecipe]:
        """The recipes of ``files``, in order. ``cached``: recipes from the stat cache (by
        abspath), used instead of reading a file when all their chunks are indexed. ``verified``:
        SHA-256s (by abspath) already computed over exactly the bytes the file holds (an upload
        checked as it arrived, unchanged since), so the file is not read a second time to hash it.
        ``early``: SHA-256s of large files computed while the command line started
        (``earlyhash``), each taken only under that module's rules, else computed here."""
        states = [_FileState(f) for f in files]
        verified = verified or {}
        order = sorted(states, key=lambda s: -s.source.size)  # big files first balances the workers
        cached = cached or {}
        self._early = early
        #: with early hashes, the hash tasks go last, smallest file first: the early thread works
        #: from the largest file down, the workers from the smallest up once they have chunked
        #: every file, so they meet at most at the one file the early thread has in hand
        later: list[_FileState] = []
        try:
            with ThreadPoolExecutor(self._workers, thread_name_prefix="wv-push") as pool:
                futures: list[Future[None]] = []
                small: list[_FileState] = []
                for st in order:
                    hit = cached.get(st.source.abspath)
                    if hit is not None and self._reuse(st, hit):
                        continue
                    if st.source.size <= SMALL_FILE:
                        small.append(st)
                    else:
                        futures.append(pool.submit(self._chunk_file, st))
                        known = verified.get(st.source.abspath)
                        if known is not None:
                            st.sha256 = known
                        elif early is not None:
                            later.append(st)
                        else:
                            futures.append(pool.submit(self._hash_file, st))
                # small files in scan (path) order, a folder's files together, after the large
                # ones (which start first and balance the workers)
                small.sort(key=lambda st: st.source.path)
                futures.extend(pool.submit(self._small_files, b) for b in _batches(small, self._workers))
                futures.extend(pool.submit(self._hash_file, st) for st in reversed(later))
                done, _ = wait(futures, return_when=FIRST_EXCEPTION)
                for fut in done:
                    if fut.exception() is not None:
                        self._stop.set()
                        for other in futures:
                            other.cancel()
                        raise _translate(fut.exception())  # type: ignore[arg-type]
            if self._stage is not None:
                self._stage.drain()
            self._sink.flush()
        except BaseException:
            self._stop.set()
            if self._stage is not None:
                self._stage.close()
            self._sink.abort()
            raise
        finally:
            if self._stage is not None:
                self._stage.close()
        recipes = []
        for st in states:
            _check_unchanged(st.source)
            assert st.sha256 is not None and st.chunks is not None
            recipes.append(FileRecipe(st.sha256, st.source.size, tuple(st.chunks)))
            self.chunks_total += len(st.chunks)
            self.bytes_read += st.source.size
        return recipes


def _batches(small: list[_FileState], workers: int) -> list[list[_FileState]]:
    """Small files cut into tasks of at most ``BATCH_FILES`` files and ``BATCH_BYTES`` bytes, and
    at least ``workers * 4`` tasks when there are that many files, so the workers finish together."""
    total = sum(st.source.size for st in small)
    limit_bytes = max(1, min(BATCH_BYTES, total // (workers * 4) + 1))
    limit_files = max(1, min(BATCH_FILES, len(small) // (workers * 4) + 1))
    batches: list[list[_FileState]] = []
    batch: list[_FileState] = []
    size = 0
    for st in small:
        if batch and (len(batch) >= limit_files or size + st.source.size > limit_bytes):
            batches.append(batch)
            batch, size = [], 0
        batch.append(st)
        size += st.source.size
    if batch:
        batches.append(batch)
    return batches


def _read_small(src: SourceFile) -> bytes:
    """The whole of a small file with one open and (usually) one read: asking for one byte more
    than the scanned size tells a grown file from a complete one without another call."""
    fd = os.open(src.abspath, _READ_FLAGS)
    try:
        data = os.read(fd, src.size + 1)
        if len(data) < src.size:  # a short read (rare on a local file): read on to the end
            buf = bytearray(data)
            while len(buf) <= src.size and (part := os.read(fd, src.size + 1 - len(buf))):
                buf += part
            data = bytes(buf)
    finally:
        os.close(fd)
    if len(data) != src.size:
        raise FileChangedError(f"{src.path} changed size while being pushed")
    return data


def _check_unchanged(src: SourceFile) -> None:
    try:
        st = os.stat(src.abspath)
    except FileNotFoundError:
        raise SourceNotFoundError(f"{src.path} was removed while being pushed") from None
    if (st.st_size, st.st_mtime_ns, st.st_ino) != (src.size, src.mtime_ns, src.inode):
        raise FileChangedError(f"{src.path} changed while being pushed; push again once it is stable")


def _translate(exc: BaseException) -> BaseException:
    if isinstance(exc, WeightvaultError) or not isinstance(exc, OSError):
        return exc
    if isinstance(exc, FileNotFoundError):
        return SourceNotFoundError(f"source file disappeared: {exc.filename}")
    return os_error(exc, f"reading {exc.filename}" if exc.filename else "pushing")
