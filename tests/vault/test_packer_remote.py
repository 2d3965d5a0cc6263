"""Packs for a store that copies the pack file (a cloud store): several are uploaded at once, each
still follows the write order (pack object, index object, index rows, journal), and a failure
leaves no staging file and no index row of the failed pack."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from weightvault.cas.hashing import chunk_id
from weightvault.cas.pack import decode_table
from weightvault.core import layout
from weightvault.core.errors import StorageError
from weightvault.registry.index import RegistryIndex
from weightvault.storage.memory import MemoryBackend
from weightvault.vault.packer import PackSink, default_temp_factory

from ..conftest import random_blobs

KiB = 1 << 10


class _Recording(MemoryBackend):
    """A store without ``temp_path`` (so packs are staged), recording when objects land."""

    pack_uploads = 3  # like S3: several packs in flight

    def __init__(self, barrier: threading.Barrier | None = None, fail_on: int | None = None) -> None:
        super().__init__("packer-remote")
        self.events: list[tuple[str, str]] = []
        self._barrier = barrier
        self._fail_on = fail_on
        self._uploads = 0
        self._count_lock = threading.Lock()

    def put_file(self, key: str, path: Path, *, consume: bool = False) -> None:
        with self._count_lock:
            self._uploads += 1
            n = self._uploads
        if self._barrier is not None and n <= self._barrier.parties:
            self._barrier.wait()  # the first uploads pass only when this many are in flight together
        if n == self._fail_on:
            raise StorageError(f"upload {n} failed")
        super().put_file(key, path, consume=consume)
        self.events.append(("object", key))

    def put(self, key: str, data: bytes | bytearray | memoryview, *, if_absent: bool = False) -> None:
        super().put(key, data, if_absent=if_absent)
        self.events.append(("object", key))


def _index(tmp_path: Path) -> RegistryIndex:
    return RegistryIndex(f"sqlite:///{tmp_path / 'index.db'}")


def test_remote_packs_upload_concurrently_and_each_keeps_the_write_order(tmp_path: Path) -> None:
    sealers = _Recording.pack_uploads
    backend = _Recording(barrier=threading.Barrier(sealers, timeout=30))
    index = _index(tmp_path)
    journal: list[str] = []

    def on_sealed(pack_id: str, _size: int) -> None:
        # by now the pack, its index object and its rows are all there
        assert ("object", layout.pack_key(pack_id)) in backend.events
        assert ("object", layout.index_key(pack_id)) in backend.events
        journal.append(pack_id)

    staging = tmp_path / "staging"
    sink = PackSink(backend, index, default_temp_factory(backend, staging), 64 * KiB, on_sealed=on_sealed)
    blobs = random_blobs(3 * sealers, 40 * KiB)  # two blobs fill a pack
    for cid, data in blobs:
        assert sink.claim(cid)
        sink.add(cid, data, len(data))
    sink.flush()  # the barrier broke (BrokenBarrierError) unless `sealers` uploads ran together

    assert sorted(journal) == sorted(sink.packs_written)
    assert len(sink.packs_written) >= sealers
    for pack_id in sink.packs_written:
        keys = [k for _, k in backend.events]
        assert keys.index(layout.pack_key(pack_id)) < keys.index(layout.index_key(pack_id))
        entries = decode_table(backend.get(layout.index_key(pack_id)))
        pack = backend.get(layout.pack_key(pack_id))
        for e in entries:
            stored = pack[e.offset : e.offset + e.stored_len]
            assert chunk_id(stored) == e.chunk_id  # raw blobs: the bytes are the chunk
    assert all(index.has_chunk(cid) for cid, _ in blobs)
    assert list(staging.iterdir()) == []  # staged pack files are gone once uploaded


def test_a_failed_upload_leaves_no_staging_file_and_no_rows_for_its_pack(tmp_path: Path) -> None:
    backend = _Recording(fail_on=2)
    index = _index(tmp_path)
    staging = tmp_path / "staging"
    sink = PackSink(backend, index, default_temp_factory(backend, staging), 64 * KiB)
    blobs = random_blobs(12, 40 * KiB)
    with pytest.raises(StorageError):
        for cid, data in blobs:
            if sink.claim(cid):
                sink.add(cid, data, len(data))
        sink.flush()
    sink.abort()
    sealed = set(sink.packs_written)
    indexed = {cid for cid, _ in blobs if index.has_chunk(cid)}
    stored_packs = {k for _, k in backend.events if k.startswith(layout.PACKS)}
    assert stored_packs == {layout.pack_key(p) for p in sealed}
    # every indexed chunk is in a pack that is stored; the failed pack's chunks are not indexed
    for pack_id in sealed:
        for e in decode_table(backend.get(layout.index_key(pack_id))):
            assert e.chunk_id in indexed
    assert len(indexed) < len(blobs)
    assert list(staging.iterdir()) == []


def test_a_store_that_does_not_ask_for_more_uploads_gets_one_pack_at_a_time(tmp_path: Path) -> None:
    """Azure and GCS hold an upload's blocks in memory: several packs at once would multiply that."""

    class _OneAtATime(MemoryBackend):
        def __init__(self) -> None:
            super().__init__("packer-one")
            self.active = 0
            self.most = 0
            self._gate = threading.Lock()

        def put_file(self, key: str, path: Path, *, consume: bool = False) -> None:
            with self._gate:
                self.active += 1
                self.most = max(self.most, self.active)
            try:
                super().put_file(key, path, consume=consume)
            finally:
                with self._gate:
                    self.active -= 1

    backend = _OneAtATime()
    sink = PackSink(backend, _index(tmp_path), default_temp_factory(backend, tmp_path / "st"), 64 * KiB)
    for cid, data in random_blobs(12, 40 * KiB):
        sink.claim(cid)
        sink.add(cid, data, len(data))
    sink.flush()
    assert len(sink.packs_written) >= 5
    assert backend.most == 1
