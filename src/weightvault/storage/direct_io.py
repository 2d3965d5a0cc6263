"""Append-only file writing that bypasses the page cache.

Writing fresh pages into the page cache costs more CPU than hashing them on these machines
(first touch of new memory), and a push must be durable anyway. ``DirectWriter`` copies into
two reused, page-aligned 8 MiB buffers and hands each full buffer to an I/O thread that writes
it with ``O_DIRECT``; the CPU goes on chunking while the disk writes. Where ``O_DIRECT`` is not
supported (tmpfs, some network file systems) it falls back to ordinary buffered writes; where
the OS has no ``O_DIRECT`` at all (macOS) it asks for ``F_NOCACHE`` instead, else writes buffered.
Both are looked up in :mod:`weightvault.storage.oscaps`, so nothing here is Linux-only.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from weightvault.storage import oscaps

BLOCK = 8 << 20
#: writes in flight at once: a push has one per open pack (one per chunking thread) and one per
#: pack being closed by a sealing thread
_IO = ThreadPoolExecutor(max_workers=4, thread_name_prefix="wv-io")
#: buffers kept for the next writers (2 each): a push's open and sealing packs reuse them
#: instead of touching fresh memory; 12 x 8 MiB at most stay mapped
_KEEP = 12
_pool: list[mmap.mmap] = []
_pool_lock = threading.Lock()


def _take() -> mmap.mmap:
    with _pool_lock:
        if _pool:
            return _pool.pop()
    return mmap.mmap(-1, BLOCK)


def _give(buf: mmap.mmap) -> None:
    with _pool_lock:
        if len(_pool) < _KEEP:
            _pool.append(buf)
            return
    buf.close()


def _write_all(fd: int, view: memoryview) -> None:
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _no_cache(fd: int) -> None:
    """macOS: keep written pages out of the cache (best effort; buffered writes otherwise)."""
    if oscaps.F_NOCACHE is not None and oscaps.fcntl is not None:  # pragma: no cover - macOS only
        with contextlib.suppress(OSError):
            oscaps.fcntl.fcntl(fd, oscaps.F_NOCACHE, 1)


class DirectWriter:
    """A binary, write-only file object: ``write``, ``tell``, ``flush``, ``close``.

    ``mode`` is the new file's permission bits (less the umask): 0o600 for plaintext that other
    users must not read, from its first byte. ``cached=True`` writes through the page cache: for
    a staging file that is read back at once and then deleted (a pack on its way to a cloud
    store), where bypassing the cache would only add a disk write and a disk read.
    """

    def __init__(self, path: Path | str, mode: int = 0o644, *, cached: bool = False) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
        # O_DIRECT only where fcntl can take it off again for the unaligned tail
        self.direct = not cached and bool(oscaps.O_DIRECT) and oscaps.fcntl is not None
        self._fd = -1
        if self.direct:
            try:
                self._fd = os.open(path, flags | oscaps.O_DIRECT, mode)
            except OSError:
                self.direct = False
        if self._fd < 0:
            self._fd = os.open(path, flags, mode)
            if not cached:
                _no_cache(self._fd)
        self._bufs = [_take(), _take()]
        self._views = [memoryview(b) for b in self._bufs]
        self._cur = 0
        self._fill = 0
        self._size = 0
        self._pending: Future[None] | None = None
        self._closed = False

    def _wait(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()

    def _submit_full(self) -> None:
        self._wait()
        view = self._views[self._cur]
        self._pending = _IO.submit(_write_all, self._fd, view)
        self._cur ^= 1
        self._fill = 0

    def write(self, data: bytes | bytearray | memoryview) -> int:
        src = memoryview(data).cast("B")
        total = len(src)
        while src:
            room = BLOCK - self._fill
            n = min(room, len(src))
            self._views[self._cur][self._fill : self._fill + n] = src[:n]
            self._fill += n
            src = src[n:]
            if self._fill == BLOCK:
                self._submit_full()
        self._size += total
        return total

    def tell(self) -> int:
        return self._size

    def flush(self) -> None:
        """Nothing to flush early: O_DIRECT needs whole blocks; ``close`` writes the tail."""

    def close(self, sync: bool = True) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._wait()
            if self._fill:
                if self.direct and oscaps.fcntl is not None:
                    # the tail is not block-sized: finish it through the page cache
                    fl = oscaps.fcntl
                    fl.fcntl(self._fd, fl.F_SETFL, fl.fcntl(self._fd, fl.F_GETFL) & ~oscaps.O_DIRECT)
                _write_all(self._fd, self._views[self._cur][: self._fill])
            if sync:
                os.fsync(self._fd)
        finally:
            self._release()

    def abort(self) -> None:
        """Close without writing the tail or syncing (the caller deletes the file)."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._pending is not None:
                self._pending.exception()
        finally:
            self._release()

    def _release(self) -> None:
        """Close the descriptor and hand the aligned buffers back for the next writer."""
        os.close(self._fd)
        for v in self._views:
            v.release()
        for b in self._bufs:
            _give(b)

    def __enter__(self) -> DirectWriter:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
