"""With ``per_thread``, each thread adding chunks fills a pack of its own (no shared copy lock, one
write in flight per pack): every pack holds one thread's chunks only, every pack still follows the
write order, the partly filled packs of every thread are sealed by ``flush``, and ``abort`` or a
failed seal leaves no pack file behind and no index row of an unsealed pack. Without it, threads
share one pack at a time, and a small push makes one pack."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from weightvault.cas.hashing import chunk_id
from weightvault.cas.pack import decode_table
from weightvault.core import layout
from weightvault.core.errors import StorageError
from weightvault.registry.index import RegistryIndex
from weightvault.storage.local import LocalBackend
from weightvault.vault.packer import PackSink, default_temp_factory

from ..conftest import random_blobs

KiB = 1 << 10
THREADS = 3


class _Local(LocalBackend):
    """A local store recording the order objects land in, optionally failing one index object."""

    def __init__(self, root: Path, fail_index: int | None = None) -> None:
        super().__init__(root)
        self.events: list[str] = []
        self._fail_index = fail_index
        self._indexes = 0
        self._events_lock = threading.Lock()

    def put_file(self, key: str, path: Path, *, consume: bool = False) -> None:
        super().put_file(key, path, consume=consume)
        with self._events_lock:
            self.events.append(key)

    def put(self, key: str, data: bytes | bytearray | memoryview, *, if_absent: bool = False) -> None:
        with self._events_lock:
            if key.startswith(layout.INDEX):
                self._indexes += 1
                if self._indexes == self._fail_index:
                    raise StorageError("index object write failed")
        super().put(key, data, if_absent=if_absent)
        with self._events_lock:
            self.events.append(key)


def _fill(sink: PackSink, per_thread: list[list[tuple[bytes, bytes]]]) -> list[BaseException]:
    """Add each list from its own thread, the threads interleaving chunk by chunk."""
    turn = threading.Barrier(len(per_thread), timeout=30)
    errors: list[BaseException] = []

    def work(blobs: list[tuple[bytes, bytes]]) -> None:
        try:
            for cid, data in blobs:
                turn.wait()
                if sink.claim(cid):
                    sink.add(cid, data, len(data))
        except BaseException as exc:
            errors.append(exc)
            turn.abort()

    threads = [threading.Thread(target=work, args=(b,)) for b in per_thread]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def _pack_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and p.name.endswith(".tmp")]


def test_each_thread_fills_its_own_packs_and_flush_seals_every_partial_one(tmp_path: Path) -> None:
    backend = _Local(tmp_path / "store")
    index = RegistryIndex(f"sqlite:///{tmp_path / 'index.db'}")
    journal: list[str] = []

    def on_sealed(pack_id: str, _size: int) -> None:
        assert layout.pack_key(pack_id) in backend.events and layout.index_key(pack_id) in backend.events
        assert index.pack_ids_for_chunks(
            {e.chunk_id for e in decode_table(backend.get(layout.index_key(pack_id)))}
        ) == {pack_id}  # rows recorded before the journal entry
        journal.append(pack_id)

    sink = PackSink(
        backend, index, default_temp_factory(backend, tmp_path / "st"), 100 * KiB, on_sealed, per_thread=True
    )
    per_thread = [random_blobs(7, 40 * KiB) for _ in range(THREADS)]  # 7 blobs: 2 full packs + 1 partial
    assert _fill(sink, per_thread) == []
    sink.flush()

    owner = {cid: i for i, blobs in enumerate(per_thread) for cid, _ in blobs}
    assert sorted(journal) == sorted(sink.packs_written)
    assert len(sink.packs_written) == 3 * THREADS  # every thread's partial pack is sealed too
    for pack_id in sink.packs_written:
        keys = backend.events
        assert keys.index(layout.pack_key(pack_id)) < keys.index(layout.index_key(pack_id))
        entries = decode_table(backend.get(layout.index_key(pack_id)))
        assert len({owner[e.chunk_id] for e in entries}) == 1  # one thread's chunks per pack
        pack = backend.get(layout.pack_key(pack_id))
        for e in entries:
            assert chunk_id(pack[e.offset : e.offset + e.stored_len]) == e.chunk_id
    assert all(index.has_chunk(cid) for cid in owner)
    assert sink.bytes_written == sum(len(d) for blobs in per_thread for _, d in blobs)
    assert _pack_files(tmp_path / "store") == []
    index.close()


def test_abort_with_several_open_packs_leaves_no_file_and_no_rows_of_them(tmp_path: Path) -> None:
    backend = _Local(tmp_path / "store")
    index = RegistryIndex(f"sqlite:///{tmp_path / 'index.db'}")
    sink = PackSink(
        backend, index, default_temp_factory(backend, tmp_path / "st"), 100 * KiB, per_thread=True
    )
    per_thread = [random_blobs(4, 40 * KiB) for _ in range(THREADS)]  # 1 full pack + 1 open per thread
    assert _fill(sink, per_thread) == []
    assert len(_pack_files(tmp_path / "store")) >= THREADS  # the open packs are on disk
    sink.abort()

    assert _pack_files(tmp_path / "store") == []
    sealed = set(sink.packs_written)
    assert len(sealed) == THREADS
    in_sealed = {e.chunk_id for p in sealed for e in decode_table(backend.get(layout.index_key(p)))}
    for cid, _ in (b for blobs in per_thread for b in blobs):
        assert index.has_chunk(cid) == (cid in in_sealed)
    index.close()


def test_a_failed_seal_fails_every_thread_and_flush_and_leaves_no_pack_file(tmp_path: Path) -> None:
    backend = _Local(tmp_path / "store", fail_index=2)
    index = RegistryIndex(f"sqlite:///{tmp_path / 'index.db'}")
    sink = PackSink(
        backend, index, default_temp_factory(backend, tmp_path / "st"), 100 * KiB, per_thread=True
    )
    per_thread = [random_blobs(12, 40 * KiB) for _ in range(THREADS)]
    errors = _fill(sink, per_thread)
    with pytest.raises(StorageError):
        if errors:
            raise errors[0]
        sink.flush()
    sink.abort()

    assert _pack_files(tmp_path / "store") == []
    sealed = set(sink.packs_written)
    assert len(sealed) >= 1  # the first pack was sealed before the second failed
    in_sealed = {e.chunk_id for p in sealed for e in decode_table(backend.get(layout.index_key(p)))}
    for cid, _ in (b for blobs in per_thread for b in blobs):
        assert index.has_chunk(cid) == (cid in in_sealed)  # no row of a pack that was not sealed
    index.close()


def test_shared_packs_take_every_thread_and_are_never_written_after_they_are_handed_over(
    tmp_path: Path,
) -> None:
    """Without ``per_thread`` the threads take turns on one pack: a pack another thread has just
    filled is not appended to while it is sealed, and the sealed packs hold every chunk once."""
    backend = _Local(tmp_path / "store")
    index = RegistryIndex(f"sqlite:///{tmp_path / 'index.db'}")
    sink = PackSink(backend, index, default_temp_factory(backend, tmp_path / "st"), 100 * KiB)
    per_thread = [random_blobs(20, 30 * KiB) for _ in range(THREADS)]
    assert _fill(sink, per_thread) == []
    sink.flush()

    seen: list[bytes] = []
    owners_per_pack = []
    owner = {cid: i for i, blobs in enumerate(per_thread) for cid, _ in blobs}
    for pack_id in sink.packs_written:
        entries = decode_table(backend.get(layout.index_key(pack_id)))
        pack = backend.get(layout.pack_key(pack_id))
        assert len(pack) == entries[-1].offset + entries[-1].stored_len + len(
            backend.get(layout.index_key(pack_id))
        )  # nothing written after the table
        for e in entries:
            assert chunk_id(pack[e.offset : e.offset + e.stored_len]) == e.chunk_id
        seen.extend(e.chunk_id for e in entries)
        owners_per_pack.append({owner[e.chunk_id] for e in entries})
    assert sorted(seen) == sorted(owner)
    assert any(len(o) > 1 for o in owners_per_pack)  # the threads shared packs
    total = sum(len(d) for blobs in per_thread for _, d in blobs)
    assert len(sink.packs_written) <= total // (100 * KiB) + 1  # no partial pack per thread
    index.close()


def _packs(home: Path) -> list[Path]:
    return [p for p in (home / "store" / layout.PACKS).rglob("*") if p.is_file()]


def test_a_push_takes_a_pack_per_thread_only_when_it_can_fill_one_each(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A small push shares one pack between its threads (one pack, not a partial one per thread);
    a push of at least a pack per thread, not counting files the stat cache vouches for, does not."""
    from weightvault.vault import vault as vault_module

    modes: list[bool] = []

    class _Recording(PackSink):
        def __init__(self, *args: Any, per_thread: bool = False, **kwargs: Any) -> None:
            modes.append(per_thread)
            super().__init__(*args, per_thread=per_thread, **kwargs)

    monkeypatch.setattr(vault_module, "PackSink", _Recording)
    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        (src / f"f{i}.bin").write_bytes(os.urandom(300 * KiB))  # less than a pack
    home = tmp_path / "home"
    with vault_module.Vault.open(home, pack_size_mb=1, workers=2) as v:
        v.push("m", src, version="v1")
        assert modes == [False] and len(_packs(home)) == 1
        for i in range(3):
            (src / f"f{i}.bin").write_bytes(os.urandom(1 << 20))  # 3 MiB new
        time.sleep(1.05 - time.time() % 1)  # the next whole second: not "racily clean" at v2's stat
        v.push("m", src, version="v2")
        assert modes[-1] is True
        report = v.verify("m@v2", read_data=True)
        assert report.ok and report.checked_bytes >= 3 << 20
        (src / "f0.bin").write_bytes(os.urandom(1 << 20))  # 1 MiB to read; the rest is cached
        v.push("m", src, version="v3")
        assert modes[-1] is False
