"""Online gc with concurrent writers on other machines and in other processes: it marks from
the store's refs, never loses data a push reuses, reclaims space by repacking."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from weightvault.core import layout
from weightvault.storage.backend import ObjectInfo
from weightvault.storage.local import LocalBackend
from weightvault.vault import packer
from weightvault.vault.gc import UnparseableObjectsError
from weightvault.vault.vault import Vault

from ..conftest import tree_bytes, write_random
from .gc_workload import gc_loop, push_loop, version_source

WORKLOAD = Path(__file__).with_name("gc_workload.py")


def _open(home: Path, store: Path, **kw: object) -> Vault:
    return Vault.open(home, store_url=store.as_uri(), **kw)


def test_gc_on_a_fresh_home_keeps_what_other_machines_pushed(tmp_path: Path) -> None:
    store = tmp_path / "store"
    src = write_random(tmp_path / "src" / "model-00001-of-00001.bin", 3 << 20, seed=4).parent
    with _open(tmp_path / "a", store) as a:
        a.push("m", src, version="v1")
        a.set_alias("m", "prod", "v1")
    with _open(tmp_path / "b", store) as b:  # never saw the push
        report = b.gc(grace_seconds=0)
        assert report.packs_deleted == 0
    with _open(tmp_path / "a", store) as a:
        a.pull("m@prod", tmp_path / "out")
        assert a.verify(read_data=True).ok
    assert tree_bytes(tmp_path / "out") == tree_bytes(src)


def test_gc_loops_during_deduplicating_pushes_from_another_process(tmp_path: Path) -> None:
    store = tmp_path / "store"
    url = store.as_uri()
    with _open(tmp_path / "init", store):
        pass  # the store exists before both processes race to create it
    stop = tmp_path / "stop"
    gc_proc = subprocess.Popen(
        [sys.executable, str(WORKLOAD), "gc", str(tmp_path / "gc-home"), url, str(tmp_path), str(stop)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        push = subprocess.run(
            [sys.executable, str(WORKLOAD), "push", str(tmp_path / "push-home"), url, str(tmp_path), "8"],
            capture_output=True,
            text=True,
            timeout=600,
        )
    finally:
        stop.touch()
        gc_out, _ = gc_proc.communicate(timeout=600)
    assert push.returncode == 0, push.stderr[-3000:]
    assert gc_proc.returncode == 0
    done, _refused = eval(gc_out.strip().splitlines()[-1])  # "(done, refused)"
    assert done >= 1
    with _open(tmp_path / "check", store) as v:
        assert [x.label for x in v.list_versions("m-p")] == ["v7"]
        assert v.verify(read_data=True).ok
        v.gc(grace_seconds=0)
        assert v.verify(read_data=True).ok
        v.pull("m-p@v7", tmp_path / "out")
    assert tree_bytes(tmp_path / "out") == tree_bytes(version_source(tmp_path / "expect", 7, "p"))


def test_two_gcs_and_two_pushers_in_threads_lose_nothing(tmp_path: Path) -> None:
    store = tmp_path / "store"
    kw = {"pack_size_mb": 1, "cache_enabled": False}
    vaults = [_open(tmp_path / f"h{i}", store, **kw) for i in range(4)]
    stop = threading.Event()
    results: dict[str, object] = {}

    def run(name: str, fn: object) -> None:
        try:
            results[name] = fn()  # type: ignore[operator]
        except BaseException as exc:
            results[name] = exc

    threads = [
        threading.Thread(target=run, args=("gc1", lambda: gc_loop(vaults[0], stop.is_set))),
        threading.Thread(target=run, args=("gc2", lambda: gc_loop(vaults[1], stop.is_set))),
    ]
    pushers = [
        threading.Thread(target=run, args=("p1", lambda: push_loop(vaults[2], tmp_path, 5, "a"))),
        threading.Thread(target=run, args=("p2", lambda: push_loop(vaults[3], tmp_path, 5, "b"))),
    ]
    for t in threads + pushers:
        t.start()
    for t in pushers:
        t.join(600)
    stop.set()
    for t in threads:
        t.join(600)
    try:
        for name, value in results.items():
            assert not isinstance(value, BaseException), (name, value)
        assert sum(results[g][0] for g in ("gc1", "gc2")) >= 1  # type: ignore[index]
        check = vaults[0]
        assert check.verify(read_data=True).ok
        assert {m.name: [x.label for x in m.versions] for m in check.list_models()} == {
            "m-a": ["v4"],
            "m-b": ["v4"],
        }
    finally:
        for v in vaults:
            v.close()


def test_repack_reclaims_a_deleted_version_that_shared_a_small_file(tmp_path: Path) -> None:
    """push v1, push v2 with other weights and the same config.json, rm v1, gc: v1's weights go."""
    store = tmp_path / "store"
    v1 = write_random(tmp_path / "v1" / "w.bin", 12 << 20, seed=1).parent
    v2 = write_random(tmp_path / "v2" / "w.bin", 12 << 20, seed=2).parent
    for d in (v1, v2):
        (d / "config.json").write_text('{"shared": true}')
    with _open(tmp_path / "a", store, pack_size_mb=64) as a:
        a.push("m", v1, version="v1")
        a.push("m", v2, version="v2")  # config.json deduplicates into v1's pack
        before = sum(i.size for i in a.primary.list(layout.PACKS))
        a.delete("m@v1")
        dry = a.gc(grace_seconds=0, dry_run=True)
        assert sum(i.size for i in a.primary.list(layout.PACKS)) == before  # dry run deleted nothing
        report = a.gc(grace_seconds=0)
        after = sum(i.size for i in a.primary.list(layout.PACKS))
        assert before - after >= 0.9 * (12 << 20), (report, dry)
        assert report.packs_repacked == 1 and report.bytes_freed == before - after
        assert dry.bytes_freed == report.bytes_freed and dry.packs_deleted == report.packs_deleted
        assert a.verify(read_data=True).ok
    with _open(tmp_path / "b", store) as b:
        b.pull("m@v2", tmp_path / "out")
    assert tree_bytes(tmp_path / "out") == tree_bytes(v2)


def test_repack_keeps_its_own_packs_when_the_store_clock_dates_them_before_the_cutoff(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store's modification times may lag our clock (coarse file times, another server's
    clock): gc's own repacked pack then looks older than its grace cutoff. It must still stay,
    and the sparse pack it replaces must go, whatever order their random ids sort in."""
    store = tmp_path / "store"
    v1 = write_random(tmp_path / "v1" / "w.bin", 12 << 20, seed=1).parent
    v2 = write_random(tmp_path / "v2" / "w.bin", 12 << 20, seed=2).parent
    for d in (v1, v2):
        (d / "config.json").write_text('{"shared": true}')
    with _open(tmp_path / "a", store, pack_size_mb=64) as a:
        a.push("m", v1, version="v1")
        a.push("m", v2, version="v2")
        old = {i.key for i in a.primary.list(layout.PACKS)}
        before = sum(i.size for i in a.primary.list(layout.PACKS))
        a.delete("m@v1")
        real_list = a.primary.list

        def lagging(prefix: str = "") -> Iterator[ObjectInfo]:  # the store's clock runs 1 s behind
            return (ObjectInfo(i.key, i.size, i.mtime - 1.0) for i in real_list(prefix))

        monkeypatch.setattr(a.primary, "list", lagging)
        # the repacked pack's id sorts after every other pack's (the order in which the old
        # planner let the first of two packs holding a chunk claim it)
        monkeypatch.setattr(packer, "uuid", SimpleNamespace(uuid4=lambda: SimpleNamespace(hex="f" * 32)))
        report = a.gc(grace_seconds=0)
        monkeypatch.undo()
        after = {i.key: i.size for i in a.primary.list(layout.PACKS)}
        assert layout.pack_key("f" * 64) in after  # the repack's output stayed
        assert len(old - set(after)) == 1  # and v1's pack went
        assert before - sum(after.values()) >= 0.9 * (12 << 20), report
        assert report.packs_repacked == 1 and report.new_packs == 1
        assert a.verify(read_data=True).ok
        again = a.gc(grace_seconds=0)  # the repacked pack is all live: nothing more to do
        assert (again.packs_repacked, again.packs_deleted, again.bytes_rewritten) == (0, 0, 0)
        assert {i.key: i.size for i in a.primary.list(layout.PACKS)} == after
        a.pull("m@v2", tmp_path / "out")
    assert tree_bytes(tmp_path / "out") == tree_bytes(v2)


def test_gc_with_no_grace_leaves_a_writers_temp_file_in_flight(tmp_path: Path) -> None:
    """A temp file in the store may be a lock or a pack another process is writing right now:
    gc --grace 0 deleted it under the writer ("writing locks/…: No such file or directory").
    Only temp files as old as a stale lock are removed."""
    store = tmp_path / "store"
    with _open(tmp_path / "a", store, lock_stale_seconds=600) as a:
        backend = a.primary
        assert isinstance(backend, LocalBackend)
        writing = backend.temp_path()
        writing.write_bytes(b"half of a pack another process is writing")
        abandoned = backend.temp_path()
        abandoned.write_bytes(b"left by a writer killed long ago")
        old = time.time() - 601
        os.utime(abandoned, (old, old))
        report = a.gc(grace_seconds=0)
        assert writing.exists() and not abandoned.exists()
        assert report.temp_files_deleted == 1


def test_gc_refuses_while_a_ref_cannot_be_parsed_unless_forced(tmp_path: Path) -> None:
    store = tmp_path / "store"
    with _open(tmp_path / "a", store) as a:
        a.push("m", write_random(tmp_path / "s" / "w.bin", 1 << 20, seed=3).parent, version="v1")
        a.delete("m@v1")
        bad = layout.version_ref_key("m", "v2")
        a.primary.put(bad, b"{not json")
        with pytest.raises(UnparseableObjectsError, match="cannot be read"):
            a.gc(grace_seconds=0)
        assert any(True for _ in a.primary.list(layout.PACKS))
        assert a.gc(grace_seconds=0, force=True).packs_deleted >= 1
        assert a.primary.exists(bad)  # gc never deletes refs


def test_gc_cleans_what_only_a_secondary_holds(tmp_path: Path) -> None:
    from weightvault.storage.local import LocalBackend

    store, second = tmp_path / "store", tmp_path / "second"
    with _open(tmp_path / "a", store, replicas={"second": second.as_uri()}, sync_enabled=True) as a:
        a.push("m", write_random(tmp_path / "s" / "w.bin", 1 << 20, seed=3).parent, version="v1")
        stray = layout.pack_key("ab" * 32)
        LocalBackend(second).put(stray, b"left on the secondary by a gc that could not reach it")
        a.delete("m@v1")
        report = a.gc(grace_seconds=0)
        assert report.secondary_objects_deleted >= 1
        assert not LocalBackend(second).exists(stray)
        assert not list(LocalBackend(second).list(layout.PACKS))
