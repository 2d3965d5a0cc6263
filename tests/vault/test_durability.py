"""A push killed at any moment leaves nothing visible and resumes; gc never races a push."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from weightvault.core import layout
from weightvault.core.errors import DiskFullError
from weightvault.vault.vault import Vault

from ..conftest import tree_bytes, write_random

# push, pull, cache and durability also run with the Linux-only paths off (as on macOS)
pytestmark = pytest.mark.os_paths


def _big_source(root: Path, files: int = 3, size: int = 160 << 20) -> Path:
    for i in range(files):
        write_random(root / f"shard-{i}.bin", size, seed=100 + i)
    return root


def test_push_killed_with_sigkill_leaves_nothing_visible_and_resumes(tmp_path: Path) -> None:
    home, src = tmp_path / "home", _big_source(tmp_path / "src")
    env = {**os.environ, "WEIGHTVAULT_PACK_SIZE_MB": "8"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "weightvault.cli.app", "--home", str(home), "push", "m", str(src), "-q"],
        env=env,
    )
    packs_dir = home / "store" / "packs"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if packs_dir.is_dir() and sum(len(os.listdir(d)) for d in packs_dir.iterdir()) >= 3:
            break
        time.sleep(0.002)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the push finished before it could be killed"

    total = sum(f.stat().st_size for f in src.iterdir())
    with Vault.open(home, pack_size_mb=8) as v:
        assert v.list_models() == []
        assert not list(v.backend.list(layout.REFS))
        assert not list(v.backend.list(layout.MANIFESTS))
        recorded = v.stats()["chunk_raw_bytes"]
        assert 0 < recorded < total
        result = v.push("m", src)
        # only what the killed push had not made durable is written again
        assert result.bytes_written <= total - recorded
        assert result.chunks_new < result.chunks_total
        v.pull("m", tmp_path / "out")
        assert v.verify(read_data=True).ok
    assert tree_bytes(tmp_path / "out") == tree_bytes(src)


class _Pauser:
    """A progress callback that stops the push half-way until released."""

    def __init__(self, after: int) -> None:
        self.after, self.seen = after, 0
        self.reached, self.release = threading.Event(), threading.Event()
        self._lock = threading.Lock()

    def __call__(self, n: int) -> None:
        with self._lock:
            self.seen += n
            hit = self.seen >= self.after and not self.reached.is_set()
        if hit:
            self.reached.set()
            assert self.release.wait(60)


def _push_in_thread(vault: Vault, src: Path, pauser: _Pauser) -> tuple[threading.Thread, dict[str, object]]:
    out: dict[str, object] = {}

    def run() -> None:
        try:
            out["result"] = vault.push("m", src, progress=pauser)
        except BaseException as exc:
            out["error"] = exc

    t = threading.Thread(target=run)
    t.start()
    return t, out


def _gc_in_thread(vault: Vault, grace: float | None) -> tuple[threading.Thread, dict[str, object]]:
    out: dict[str, object] = {}

    def run() -> None:
        try:
            out["report"] = vault.gc(grace_seconds=grace)
        except BaseException as exc:
            out["error"] = exc

    t = threading.Thread(target=run)
    t.start()
    return t, out


def _wait_for_exclusive_lock(vault: Vault) -> None:
    """Until gc has put its exclusive lock in the store (it then waits for the running push)."""
    from weightvault.vault.locks import EXCLUSIVE, read_locks

    while not any(lock.kind == EXCLUSIVE for lock in read_locks(vault.primary)):
        time.sleep(0.01)


@pytest.mark.parametrize("grace", [None, 0.0])
def test_gc_during_push_waits_for_it_and_keeps_what_it_reused(tmp_path: Path, grace: float | None) -> None:
    home = tmp_path / "home"
    src = tmp_path / "src"
    write_random(src / "a.bin", 60 << 20, seed=1)
    base = tmp_path / "base"
    write_random(base / "a.bin", 60 << 20, seed=1)  # the same bytes, pushed and then deleted
    with Vault.open(home, pack_size_mb=4) as pusher, Vault.open(home, pack_size_mb=4) as collector:
        pusher.push("old", base, version="v1")
        pusher.delete("old@v1")  # its packs are now garbage the new push will want to reuse
        pauser = _Pauser(after=30 << 20)
        thread, out = _push_in_thread(pusher, src, pauser)
        assert pauser.reached.wait(60)
        gc_thread, gc_out = _gc_in_thread(collector, grace)
        _wait_for_exclusive_lock(collector)
        assert gc_thread.is_alive() and "report" not in gc_out  # held off by the push's shared lock
        pauser.release.set()
        thread.join(120)
        gc_thread.join(120)
        assert "error" not in out, out.get("error")
        assert "error" not in gc_out, gc_out.get("error")
        result = out["result"]
        assert result.chunks_new == 0  # type: ignore[attr-defined]  # everything was reused
        assert collector.verify(read_data=True).ok
        assert collector.gc(grace_seconds=0).packs_deleted == 0
        collector.pull("m", tmp_path / "out")
    assert tree_bytes(tmp_path / "out") == tree_bytes(src)


def test_gc_reclaims_deleted_versions_after_grace(vault: Vault, tmp_path: Path) -> None:
    a = write_random(tmp_path / "a" / "w.bin", 8 << 20, seed=1).parent
    b = write_random(tmp_path / "b" / "w.bin", 8 << 20, seed=2).parent
    vault.push("m", a, version="v1")
    vault.push("m", b, version="v2")
    before = vault.stats()["pack_bytes"]
    vault.delete("m@v1")
    first = vault.gc()  # default grace: too young to go
    assert first.packs_deleted == 0
    assert vault.stats()["pack_bytes"] == before
    dry = vault.gc(grace_seconds=0, dry_run=True)  # says what would go, deletes nothing
    assert dry.dry_run and dry.packs_deleted >= 1 and dry.bytes_freed >= 8 << 20
    assert vault.stats()["pack_bytes"] == before
    second = vault.gc(grace_seconds=0)
    assert second.packs_deleted >= 1 and second.manifests_deleted == 1 and second.recipes_deleted == 1
    after = vault.stats()
    assert after["pack_bytes"] <= before - (8 << 20) + (4 << 20)  # v1's unique bytes are gone
    assert sum(i.size for i in vault.backend.list(layout.PACKS)) == after["pack_bytes"]
    vault.pull("m@v2", tmp_path / "out")
    assert (tmp_path / "out" / "w.bin").read_bytes() == (b / "w.bin").read_bytes()
    assert vault.verify(read_data=True).ok


def test_gc_removes_old_orphans_of_killed_pushes(vault: Vault, tmp_path: Path) -> None:
    # a complete pack that no journal entry names: what a push killed after writing it leaves
    with Vault.open(tmp_path / "elsewhere") as other:
        other.push("x", write_random(tmp_path / "x" / "w.bin", 100_000, seed=9).parent)
        (orphan,) = [i.key for i in other.primary.list(layout.PACKS)]
        vault.primary.put(orphan, other.primary.get(orphan))
    vault.backend.put(layout.recipe_key("ee" * 32), b"{}")
    assert vault.gc().packs_deleted == 0  # young orphans may belong to a push in progress
    assert vault.backend.exists(orphan)
    vault.gc(grace_seconds=0)
    assert not vault.backend.exists(orphan)
    assert not vault.backend.exists(layout.recipe_key("ee" * 32))


def test_gc_refuses_while_a_pack_cannot_be_parsed(vault: Vault) -> None:
    from weightvault.vault.gc import UnparseableObjectsError

    vault.backend.put(layout.pack_key("ff" * 32), b"not a pack: no table can be read from this")
    with pytest.raises(UnparseableObjectsError, match="ffff"):
        vault.gc(grace_seconds=0)
    assert vault.backend.exists(layout.pack_key("ff" * 32))
    vault.gc(grace_seconds=0, force=True)
    assert not vault.backend.exists(layout.pack_key("ff" * 32))


def test_disk_full_is_a_clear_error_and_nothing_is_visible(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.fail("this test mounts a small tmpfs and must run as root (CI does)")
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mnt)], check=True)
    try:
        src = write_random(tmp_path / "src" / "w.bin", 40 << 20).parent
        home = mnt / "home"
        with Vault.open(home, pack_size_mb=4, cache_enabled=False) as v:
            with pytest.raises(DiskFullError):
                v.push("m", src)
            assert v.list_models() == []
            assert not list(v.backend.list(layout.REFS))
        proc = subprocess.run(
            [sys.executable, "-m", "weightvault.cli.app", "--home", str(home), "push", "m", str(src), "-q"],
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 8
        assert proc.stderr.strip().startswith("error: disk full")
        assert len(proc.stderr.strip().splitlines()) == 1
    finally:
        subprocess.run(["umount", str(mnt)], check=False)
