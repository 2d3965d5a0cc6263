"""Collects new chunks of a push into pack objects and makes each one durable and indexed.

Order per pack (docs/format.md, "write order"): pack object durable -> index object -> index
rows -> journal entry. Only then may a later push deduplicate against its chunks, so a push killed at any
moment never leaves the index pointing at data that is not on disk.

With ``per_thread`` (a push large enough to fill a pack per chunking thread), each thread that
adds chunks fills a pack of its own: the copy into a pack's write buffer happens outside any lock
shared with the other threads, and each open pack keeps its own write in flight, so with two
chunking threads two writes keep the disk busy (one shared pack had one write in flight and made
the second thread wait on its copy). A file's chunks also land together, in fewer packs. A small
push keeps one shared pack, so it still makes one pack, not one per thread.

A full pack is sealed (those steps) by sealing threads while the chunking threads fill the next
ones: its fsyncs and index writes no longer stall chunking; on a local store two packs are sealed
at once (``LOCAL_SEALERS``), their index rows and journal entries one pack at a time. At most
``MAX_SEALING`` packs wait to be sealed (each holds its writer's buffers), and ``flush`` returns
only when every pack, the partly filled ones of every thread included, is sealed. The pack file
is fsynced once, by the backend that adopts it (``put_file``).

For a store that cannot adopt a local file (a cloud store), the pack is staged through the page
cache (it is read back at once for the upload, then deleted). A store whose ``put_file`` sends a
pack as one streamed request (S3) says how many packs a push may upload at once
(``pack_uploads``): then the packs in flight are what keeps the link busy, and chunking goes on
meanwhile. Stores that split an upload into parts held in memory keep one pack at a time. Each
pack still follows the order above on its own, and ``flush`` still waits for all of them.
"""

from __future__ import annotations

import threading
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from weightvault.cas.pack import PackWriter
from weightvault.core import layout
from weightvault.core.errors import StorageError
from weightvault.storage.backend import Backend
from weightvault.storage.direct_io import DirectWriter

if TYPE_CHECKING:  # the index's module loads SQLAlchemy; a light push passes its own
    from weightvault.registry.index import RegistryIndex

#: full packs waiting for (or in) the sealing thread before a chunking thread waits for one
MAX_SEALING = 2
#: packs of a local store sealed at once: a seal is a chain of fsyncs (pack, index object, index
#: rows, journal entry), each waiting on a journal commit behind the pack writes in the disk's
#: queue; two chains share those commits instead of queueing one after the other
LOCAL_SEALERS = 2


class _OpenPack:
    def __init__(self, path: Path, staged: bool) -> None:
        self.id = uuid.uuid4().hex + uuid.uuid4().hex  # 64 hex, random: a pack is named, not hashed
        self.path = path
        # adopted in place: durable without filling the page cache; staged: read back at once
        self.file = DirectWriter(path, cached=staged)
        self.writer = PackWriter(self.file)
        #: held by the one thread appending to it, and by ``flush``/``abort`` taking it over
        self.lock = threading.Lock()
        self.taken = False  # by ``flush``/``abort``: no more appends
        self.full = False  # reached the target size: no more appends, it is being sealed


class PackSink:
    """Thread-safe: several threads add blobs (each to its own open pack with ``per_thread``);
    a full pack is sealed."""

    def __init__(
        self,
        backend: Backend,
        index: RegistryIndex,
        temp_path: Callable[[], Path],
        target_size: int,
        on_sealed: Callable[[str, int], None] | None = None,
        *,
        per_thread: bool = False,
    ) -> None:
        self._backend = backend
        self._per_thread = per_thread
        self._on_sealed = on_sealed
        self._index = index
        self._temp_path = temp_path
        self._target = target_size
        #: the backend copies the pack file elsewhere (a cloud store) rather than adopting it
        self._staged = not callable(getattr(backend, "temp_path", None))
        self._sealers = max(1, int(getattr(backend, "pack_uploads", 1))) if self._staged else LOCAL_SEALERS
        self._lock = threading.Lock()
        self._record_lock = threading.Lock()  # index rows and journal: one pack at a time
        self._open: dict[int, _OpenPack] = {}  # by the thread appending to it (or 0: shared)
        self._pending: set[bytes] = set()  # chunk ids written to a pack not sealed yet
        self.packs_written: list[str] = []
        self.bytes_written = 0
        self._closed = False
        self._sealer: ThreadPoolExecutor | None = None
        self._sealing: deque[Future[None]] = deque()
        self._failure: BaseException | None = None

    def claim(self, chunk_id: bytes) -> bool:
        """True if the caller should write this chunk (nobody in this push has yet)."""
        with self._lock:
            if chunk_id in self._pending:
                return False
            self._pending.add(chunk_id)
            return True

    def add(
        self,
        chunk_id: bytes,
        stored: bytes | bytearray | memoryview,
        raw_len: int,
        codec: int = 0,
        key_slot: int = 0,
    ) -> None:
        me = threading.get_ident() if self._per_thread else 0
        while True:
            with self._lock:
                if self._failure is not None:
                    raise self._failure
                pack = self._open.get(me)
                if pack is None:
                    pack = self._open[me] = _OpenPack(self._temp_path(), self._staged)
            # per thread: uncontended unless flush/abort take the pack over meanwhile; shared: the
            # copy of one thread at a time
            with pack.lock:
                if pack.taken:
                    raise StorageError("the packs were flushed or aborted while a chunk was being added")
                if pack.full:
                    continue  # another thread filled this shared pack meanwhile: the next one
                pack.writer.add(chunk_id, stored, raw_len, codec, key_slot)
                handed = False
                if pack.writer.size >= self._target:
                    pack.full = True
                    with self._lock:
                        handed = self._open.get(me) is pack  # else flush/abort took it over meanwhile
                        if handed:
                            del self._open[me]
            with self._lock:
                self.bytes_written += len(stored)
            if handed:
                self._hand_over(pack)
            return

    def _hand_over(self, pack: _OpenPack) -> None:
        """Queue a full pack for the sealing thread; wait while too many are queued."""
        oldest: Future[None] | None = None
        with self._lock:
            if self._sealer is None:
                self._sealer = ThreadPoolExecutor(self._sealers, thread_name_prefix="wv-seal")
            self._sealing.append(self._sealer.submit(self._seal_recorded, pack))
            if len(self._sealing) > MAX_SEALING + self._sealers - 1:
                oldest = self._sealing.popleft()
        if oldest is not None:
            oldest.result()  # backpressure; its failure is also kept for the next add/flush

    def _seal_recorded(self, pack: _OpenPack) -> None:
        try:
            self._seal(pack)
        except BaseException as exc:
            with self._lock:
                if self._failure is None:
                    self._failure = exc
            raise

    def _seal(self, pack: _OpenPack) -> None:
        try:
            table = pack.writer.finish()
            pack.file.close(sync=False)  # put_file makes it durable before it gets its name
            self._backend.put_file(layout.pack_key(pack.id), pack.path, consume=True)
            self._backend.put(layout.index_key(pack.id), table)
            with self._record_lock:
                self._index.add_pack(pack.id, pack.writer.size, pack.writer.entries)
                if self._on_sealed is not None:  # other machines learn of the pack (the journal)
                    self._on_sealed(pack.id, pack.writer.size)
        except BaseException:
            pack.file.abort()
            pack.path.unlink(missing_ok=True)
            raise
        with self._lock:
            self.packs_written.append(pack.id)

    def _wait_sealed(self) -> BaseException | None:
        """Wait for every queued seal; the first failure, if any."""
        with self._lock:
            pending = list(self._sealing)
            self._sealing.clear()
        for fut in pending:
            fut.exception()
        sealer, self._sealer = self._sealer, None
        if sealer is not None:
            sealer.shutdown(wait=True)
        return self._failure

    def _take_open(self) -> list[_OpenPack]:
        """Every open pack, taken from the threads filling them (each waits out a running add)."""
        with self._lock:
            packs = list(self._open.values())
            self._open.clear()
        for pack in packs:
            with pack.lock:
                pack.taken = True
        return packs

    def flush(self) -> None:
        """Seal the partly filled packs; return once every pack of the sink is sealed."""
        packs = self._take_open()
        failure = self._wait_sealed()
        if failure is not None:
            _discard(packs)
            raise failure
        if len(packs) <= 1 or self._sealers == 1:
            for i, pack in enumerate(packs):
                try:
                    self._seal(pack)
                except BaseException:
                    _discard(packs[i + 1 :])
                    raise
            return
        # several threads' partial packs: sealed side by side, as the sealing thread would
        with ThreadPoolExecutor(min(len(packs), self._sealers), thread_name_prefix="wv-seal") as pool:
            futures = [pool.submit(self._seal, pack) for pack in packs]
        for fut in futures:
            exc = fut.exception()
            if exc is not None:
                raise exc

    def abort(self) -> None:
        packs = self._take_open()
        self._wait_sealed()  # a pack being sealed completes: durable and unreferenced, like any other
        _discard(packs)


def _discard(packs: list[_OpenPack]) -> None:
    """Close and delete packs that will never be sealed."""
    for pack in packs:
        pack.file.abort()
        pack.path.unlink(missing_ok=True)


def default_temp_factory(backend: Backend, fallback_dir: Path) -> Callable[[], Path]:
    """Write packs where the backend can adopt them by rename when it is local."""
    temp_path = getattr(backend, "temp_path", None)
    if callable(temp_path):
        return temp_path  # type: ignore[no-any-return]
    fallback_dir.mkdir(parents=True, exist_ok=True)
    return lambda: fallback_dir / f"{uuid.uuid4().hex}.pack.tmp"
