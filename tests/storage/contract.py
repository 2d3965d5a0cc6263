"""The behaviour every ``Backend`` must have, run unchanged against each implementation.

A subclass in ``test_contract.py`` supplies ``factory``: a callable that opens a fresh, empty
store (a new prefix in a real bucket for the clouds). Nothing here knows which backend it runs.
"""

from __future__ import annotations

import os
import threading
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from weightvault.core.errors import InvalidInputError, MissingObjectError, ObjectExistsError
from weightvault.storage.backend import Backend

MiB = 1 << 20
Factory = Callable[..., Backend]

ODD_NAMES = [
    "with space/and more spaces.bin",
    "plus+sign=equals&amp;",
    "ünïcödé/日本語/モデル.safetensors",
    "emoji-🙂.bin",
    "percent%20encoded%2Fnot-a-slash",
    "question?mark#hash",
    "tilde~!$'()*,;@",
    "org/model-name/v1.0.0/model-00001-of-00002.safetensors",
]

INVALID_KEYS = [
    "",
    "/abs",
    "trailing/",
    "a//b",
    "../up",
    "a/../b",
    "./a",
    "a/.",
    "back\\slash",
    "nul\x00byte",
]


def run_threads(count: int, target: Callable[[int], Any]) -> list[Any]:
    """Start ``count`` threads at the same instant; each result or exception, in order."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def body(index: int) -> None:
        barrier.wait()
        try:
            results[index] = target(index)
        except BaseException as exc:
            results[index] = exc

    threads = [threading.Thread(target=body, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results


def write_random(path: Path, size: int) -> bytes:
    data = os.urandom(size)
    path.write_bytes(data)
    return data


class BackendContract:
    #: Whether put_file must stay well below the file's size in Python memory (not for memory://).
    streams_put_file = True
    large_size = 40 * MiB

    @pytest.fixture
    def factory(self) -> Factory:
        raise NotImplementedError

    @pytest.fixture
    def backend(self, factory: Factory) -> Backend:
        return factory()

    # -- put / get --------------------------------------------------------------------------

    def test_is_a_backend(self, backend: Backend) -> None:
        assert isinstance(backend, Backend)
        assert backend.url

    def test_put_get_round_trip_of_every_buffer_type(self, backend: Backend) -> None:
        backend.put("a/bytes", b"hello")
        backend.put("a/bytearray", bytearray(b"bytearray"))
        backend.put("a/memoryview", memoryview(b"xxmemoryviewxx")[2:-2])
        backend.put("a/empty", b"")
        assert backend.get("a/bytes") == b"hello"
        assert backend.get("a/bytearray") == b"bytearray"
        assert backend.get("a/memoryview") == b"memoryview"
        assert backend.get("a/empty") == b""
        assert isinstance(backend.get("a/bytes"), bytes)

    def test_put_replaces_existing_object(self, backend: Backend) -> None:
        backend.put("k", b"first version")
        backend.put("k", b"second")
        assert backend.get("k") == b"second"
        assert backend.stat("k").size == 6

    def test_get_range_is_short_only_at_the_end(self, backend: Backend) -> None:
        data = bytes(range(256)) * 4
        backend.put("r", data)
        assert backend.get_range("r", 0, 10) == data[:10]
        assert backend.get_range("r", 100, 50) == data[100:150]
        assert backend.get_range("r", 1000, 100) == data[1000:]  # crosses the end: short
        assert backend.get_range("r", 1024, 10) == b""  # starts at the end
        assert backend.get_range("r", 5000, 10) == b""  # starts past the end
        assert backend.get_range("r", 7, 0) == b""
        backend.put("empty", b"")
        assert backend.get_range("empty", 0, 10) == b""

    def test_stat_reports_size_and_a_current_mtime(self, backend: Backend) -> None:
        before = time.time()
        backend.put("s/obj", b"x" * 1234)
        info = backend.stat("s/obj")
        assert (info.key, info.size) == ("s/obj", 1234)
        # Server clocks and second-granularity timestamps: allow slack, but it must be "now".
        assert before - 5 <= info.mtime <= time.time() + 5

    def test_exists(self, backend: Backend) -> None:
        assert not backend.exists("e/x")
        backend.put("e/x", b"1")
        assert backend.exists("e/x")
        assert not backend.exists("e")  # a "directory" is not an object

    def test_missing_objects_raise_missing_object_error(self, backend: Backend) -> None:
        with pytest.raises(MissingObjectError):
            backend.get("no/such")
        with pytest.raises(MissingObjectError):
            backend.get_range("no/such", 0, 10)
        with pytest.raises(MissingObjectError):
            backend.get_range("no/such", 0, 0)
        with pytest.raises(MissingObjectError):
            backend.stat("no/such")

    def test_delete_is_idempotent(self, backend: Backend) -> None:
        backend.put("d/x", b"1")
        backend.delete("d/x")
        assert not backend.exists("d/x")
        backend.delete("d/x")
        backend.delete("never/existed")
        with pytest.raises(MissingObjectError):
            backend.get("d/x")

    # -- list -------------------------------------------------------------------------------

    def test_list_by_prefix_gives_relative_keys_and_sizes(self, backend: Backend) -> None:
        objects = {"a/1": b"1", "a/2": b"22", "a/sub/3": b"333", "ab/4": b"4444", "b/5": b"55555"}
        for key, data in objects.items():
            backend.put(key, data)
        everything = {i.key: i.size for i in backend.list()}
        assert everything == {k: len(v) for k, v in objects.items()}
        assert {i.key for i in backend.list("a/")} == {"a/1", "a/2", "a/sub/3"}
        assert {i.key for i in backend.list("a")} == {"a/1", "a/2", "a/sub/3", "ab/4"}
        assert {i.key for i in backend.list("a/sub/")} == {"a/sub/3"}
        assert list(backend.list("zzz")) == []
        assert list(backend.list("nope/deeper/")) == []
        now = time.time()
        assert all(now - 300 < i.mtime < now + 300 for i in backend.list())

    def test_stores_with_different_prefixes_do_not_see_each_other(self, factory: Factory) -> None:
        first, second = factory(), factory()
        first.put("same/key", b"first")
        assert not second.exists("same/key")
        assert list(second.list()) == []
        second.put("same/key", b"second")
        assert first.get("same/key") == b"first"

    # -- names ------------------------------------------------------------------------------

    def test_unicode_and_odd_but_valid_names(self, backend: Backend) -> None:
        for name in ODD_NAMES:
            backend.put(name, name.encode())
        for name in ODD_NAMES:
            assert backend.get(name) == name.encode(), name
            assert backend.stat(name).size == len(name.encode())
            assert backend.get_range(name, 1, 3) == name.encode()[1:4]
        assert {i.key for i in backend.list()} == set(ODD_NAMES)
        assert {i.key for i in backend.list("ünïcödé/")} == {"ünïcödé/日本語/モデル.safetensors"}
        for name in ODD_NAMES:
            backend.delete(name)
        assert list(backend.list()) == []

    @pytest.mark.parametrize("key", INVALID_KEYS)
    def test_invalid_keys_are_refused(self, backend: Backend, key: str, tmp_path: Path) -> None:
        src = tmp_path / "src"
        src.write_bytes(b"x")
        calls: list[Callable[[], object]] = [
            lambda: backend.put(key, b"x"),
            lambda: backend.put(key, b"x", if_absent=True),
            lambda: backend.put_file(key, src),
            lambda: backend.get(key),
            lambda: backend.get_range(key, 0, 1),
            lambda: backend.stat(key),
            lambda: backend.exists(key),
            lambda: backend.delete(key),
        ]
        for call in calls:
            with pytest.raises(InvalidInputError):
                call()
        assert list(backend.list()) == []
        assert src.exists()

    # -- large objects and files ------------------------------------------------------------

    def test_large_object_via_put_file(self, backend: Backend, tmp_path: Path) -> None:
        src = tmp_path / "big.bin"
        data = write_random(src, self.large_size)
        tracemalloc.start()
        try:
            backend.put_file("big/weights.bin", src)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        if self.streams_put_file:
            # Bounded memory: parts are read as they are sent, never the whole file at once.
            assert peak < self.large_size / 2, f"put_file held {peak / MiB:.1f} MiB in Python memory"
        assert src.read_bytes() == data  # not consumed
        assert backend.stat("big/weights.bin").size == len(data)
        middle = len(data) // 2 - 1000
        assert backend.get_range("big/weights.bin", middle, 7 * MiB) == data[middle : middle + 7 * MiB]
        assert backend.get_range("big/weights.bin", len(data) - 10, 100) == data[-10:]
        assert backend.get("big/weights.bin") == data

    def test_put_file_small_and_consume(self, backend: Backend, tmp_path: Path) -> None:
        kept = tmp_path / "kept"
        kept.write_bytes(b"keep me")
        backend.put_file("f/kept", kept)
        assert kept.read_bytes() == b"keep me"
        consumed = tmp_path / "consumed"
        consumed.write_bytes(b"take me")
        backend.put_file("f/consumed", consumed, consume=True)
        assert not consumed.exists()
        assert backend.get("f/kept") == b"keep me"
        assert backend.get("f/consumed") == b"take me"
        empty = tmp_path / "empty"
        empty.write_bytes(b"")
        backend.put_file("f/empty", empty)
        assert backend.get("f/empty") == b""

    def test_readers_never_see_a_partial_object(self, backend: Backend, tmp_path: Path) -> None:
        src = tmp_path / "atomic.bin"
        data = write_random(src, 12 * MiB)
        seen: list[int] = []
        done = threading.Event()

        def reader() -> None:
            while not done.is_set():
                try:
                    seen.append(len(backend.get("atomic/obj")))
                except MissingObjectError:
                    seen.append(-1)
                time.sleep(0.005)

        thread = threading.Thread(target=reader)
        thread.start()
        try:
            backend.put_file("atomic/obj", src)
            time.sleep(0.05)
        finally:
            done.set()
            thread.join()
        assert set(seen) <= {-1, len(data)}, "a reader saw a partial object"
        assert backend.get("atomic/obj") == data

    # -- concurrency ------------------------------------------------------------------------

    def test_if_absent_refuses_an_existing_key(self, backend: Backend) -> None:
        backend.put("label/v1", b"original", if_absent=True)
        with pytest.raises(ObjectExistsError):
            backend.put("label/v1", b"impostor", if_absent=True)
        assert backend.get("label/v1") == b"original"

    def test_if_absent_under_concurrent_writers_exactly_one_wins(self, backend: Backend) -> None:
        writers = 8
        results = run_threads(
            writers, lambda i: backend.put("label/race", f"writer {i}".encode(), if_absent=True)
        )
        winners = [i for i, r in enumerate(results) if r is None]
        losers = [r for r in results if r is not None]
        assert len(winners) == 1, results
        assert all(isinstance(r, ObjectExistsError) for r in losers), losers
        assert backend.get("label/race") == f"writer {winners[0]}".encode()

    def test_concurrent_overwrites_leave_one_whole_write(self, backend: Backend) -> None:
        payloads = [bytes([i]) * (256 * 1024 + i) for i in range(6)]
        results = run_threads(len(payloads), lambda i: backend.put("race/small", payloads[i]))
        assert all(r is None for r in results), results
        assert backend.get("race/small") in payloads

    def test_concurrent_multipart_writers_never_mix(self, backend: Backend, tmp_path: Path) -> None:
        size = 13 * MiB  # several parts on every cloud backend under test
        sources = [tmp_path / f"w{i}" for i in range(3)]
        payloads = [write_random(src, size) for src in sources]
        results = run_threads(len(sources), lambda i: backend.put_file("race/large", sources[i]))
        assert all(r is None for r in results), results
        final = backend.get("race/large")
        assert any(final == p for p in payloads), "the object mixes parts of different writes"

    def test_many_threads_on_distinct_keys(self, backend: Backend) -> None:
        def work(i: int) -> None:
            for j in range(5):
                key = f"t/{i}/{j}"
                backend.put(key, f"{i}-{j}".encode())
                assert backend.get(key) == f"{i}-{j}".encode()

        results = run_threads(8, work)
        assert all(r is None for r in results), results
        assert len(list(backend.list("t/"))) == 40
