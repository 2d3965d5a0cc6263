"""Collects new chunks of a push into pack objects and makes each one durable and indexed.

Order per pack (docs/format.md, "write order"): pack object durable -> index object -> index
rows -> journal entry. Only then may a later push deduplicate against its chunks, so a push killed at any
moment never leaves the index pointing at data that is not on disk.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from pathlib import Path

from weightvault.cas.pack import PackWriter
from weightvault.core import layout
from weightvault.registry.index import RegistryIndex
from weightvault.storage.backend import Backend
from weightvault.storage.direct_io import DirectWriter


class _OpenPack:
    def __init__(self, path: Path) -> None:
        self.id = uuid.uuid4().hex + uuid.uuid4().hex  # 64 hex, random: a pack is named, not hashed
        self.path = path
        self.file = DirectWriter(path)  # durable without filling the page cache
        self.writer = PackWriter(self.file)


class PackSink:
    """Thread-safe: several chunking threads add blobs; whoever fills a pack seals it."""

    def __init__(
        self,
        backend: Backend,
        index: RegistryIndex,
        temp_path: Callable[[], Path],
        target_size: int,
        on_sealed: Callable[[str, int], None] | None = None,
    ) -> None:
        self._backend = backend
        self._on_sealed = on_sealed
        self._index = index
        self._temp_path = temp_path
        self._target = target_size
        self._lock = threading.Lock()
        self._current: _OpenPack | None = None
        self._pending: set[bytes] = set()  # chunk ids written to a pack not sealed yet
        self.packs_written: list[str] = []
        self.bytes_written = 0
        self._closed = False

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
        full: _OpenPack | None = None
        with self._lock:
            if self._current is None:
                self._current = _OpenPack(self._temp_path())
            pack = self._current
            pack.writer.add(chunk_id, stored, raw_len, codec, key_slot)
            self.bytes_written += len(stored)
            if pack.writer.size >= self._target:
                full, self._current = pack, None
        if full is not None:
            self._seal(full)

    def _seal(self, pack: _OpenPack) -> None:
        try:
            table = pack.writer.finish()
            pack.file.close(sync=True)
            self._backend.put_file(layout.pack_key(pack.id), pack.path, consume=True)
            self._backend.put(layout.index_key(pack.id), table)
            self._index.add_pack(pack.id, pack.writer.size, pack.writer.entries)
            if self._on_sealed is not None:  # other machines learn of the pack (the journal)
                self._on_sealed(pack.id, pack.writer.size)
        except BaseException:
            pack.file.abort()
            pack.path.unlink(missing_ok=True)
            raise
        with self._lock:
            self.packs_written.append(pack.id)

    def flush(self) -> None:
        """Seal the last, partly filled pack."""
        with self._lock:
            pack, self._current = self._current, None
        if pack is not None:
            self._seal(pack)

    def abort(self) -> None:
        with self._lock:
            pack, self._current = self._current, None
        if pack is not None:
            pack.file.abort()
            pack.path.unlink(missing_ok=True)


def default_temp_factory(backend: Backend, fallback_dir: Path) -> Callable[[], Path]:
    """Write packs where the backend can adopt them by rename when it is local."""
    temp_path = getattr(backend, "temp_path", None)
    if callable(temp_path):
        return temp_path  # type: ignore[no-any-return]
    fallback_dir.mkdir(parents=True, exist_ok=True)
    return lambda: fallback_dir / f"{uuid.uuid4().hex}.pack.tmp"
