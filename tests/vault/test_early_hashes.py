"""Hashes computed while the command line starts (``vault.earlyhash``): the push takes a digest only
for a file whose bytes it still describes, hashes no file twice, and fails as it always did."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from weightvault.core.errors import SourceNotFoundError
from weightvault.vault import earlyhash, filescan, push
from weightvault.vault.earlyhash import EarlyHashes
from weightvault.vault.source import SourceFile, scan_source
from weightvault.vault.statcache import NS
from weightvault.vault.vault import Vault

from ..conftest import write_random

BIG = earlyhash.LARGE + 4096  # hashed as a task of its own, so hashed early


def _age(root: Path) -> None:
    """Files last changed in an earlier second than now (ctime cannot be set: wait it out)."""
    past = time.time_ns() - 5 * NS
    for p in root.rglob("*"):
        if p.is_file():
            os.utime(p, ns=(past, past))
    ctime = max(p.stat().st_ctime_ns for p in root.rglob("*") if p.is_file())
    while time.time_ns() // NS <= ctime // NS:
        time.sleep(0.05)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def src(tmp_path: Path) -> Path:
    root = tmp_path / "src"
    write_random(root / "a.bin", BIG, seed=1)
    write_random(root / "sub" / "b.bin", BIG + 1, seed=2)
    (root / "small.txt").write_text("small")
    write_random(root / ".git" / "pack.bin", BIG, seed=3)  # ignored by default: never read
    _age(root)
    return root


@pytest.fixture
def vault(tmp_path: Path) -> Iterator[Vault]:
    v = Vault.open(tmp_path / "home")
    yield v
    v.close()


@pytest.fixture
def pipeline_hashes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The files the push pipeline hashed itself (by name)."""
    seen: list[str] = []
    real = filescan.sha256_file

    def spy(path: Path, size: int, stop: Any = lambda: False) -> str:
        seen.append(path.name)
        return real(path, size, stop)

    monkeypatch.setattr(filescan, "sha256_file", spy)
    return seen


def _digests(vault: Vault) -> dict[str, str]:
    """The SHA-256s the latest version of ``m`` names, by path."""
    return {f.path: f.sha256 for f in vault.show("m").files}


def _files(root: Path) -> dict[str, SourceFile]:
    return {f.path: f for f in scan_source(root)}


def _early_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "wv-early-hash"]


def test_the_threshold_is_the_pipelines() -> None:
    assert earlyhash.LARGE == push.SMALL_FILE


def test_the_digests_handed_over_are_those_of_the_files(src: Path) -> None:
    with EarlyHashes(src) as early:
        early.wait()
        files = _files(src)
        assert sorted(p.name for p in early.hashed) == ["a.bin", "b.bin"]  # large, not ignored
        for rel in ("a.bin", "sub/b.bin"):
            assert early.take(files[rel]) == _sha(src / rel)
        assert early.take(files["small.txt"]) is None
    assert _early_threads() == []


def test_a_push_takes_them_and_hashes_none_again(vault: Vault, src: Path, pipeline_hashes: list[str]) -> None:
    with EarlyHashes(src) as early:
        early.wait()
        vault.push("m", src, early_hashes=early)
    assert pipeline_hashes == []
    got = _digests(vault)
    assert got == {
        "a.bin": _sha(src / "a.bin"),
        "sub/b.bin": _sha(src / "sub/b.bin"),
        "small.txt": _sha(src / "small.txt"),
    }


def test_a_file_claimed_by_the_pipeline_first_is_not_hashed_early(src: Path) -> None:
    files = _files(src)
    early = EarlyHashes(src)
    assert early.take(files["a.bin"]) is None  # the caller hashes it
    with early:
        early.wait()
    assert [p.name for p in early.hashed] == ["b.bin"]


def test_the_workers_hash_what_was_not_started_and_await_what_was(
    monkeypatch: pytest.MonkeyPatch, vault: Vault, src: Path
) -> None:
    """The early thread is held in the middle of b.bin (the largest, its first file): the push
    hashes a.bin itself (not started: claimed, never waited for), waits for b.bin's early digest,
    and hashes no file twice."""
    started, go = threading.Event(), threading.Event()
    real_sha = hashlib.sha256
    real_file = filescan.sha256_file
    by_pipeline: list[str] = []

    class Held:
        """SHA-256 whose first update waits for the test: the early thread is mid-file."""

        def __init__(self) -> None:
            self.h = real_sha()

        def update(self, data: Any) -> None:
            if not started.is_set():
                started.set()
                assert go.wait(60)
            self.h.update(data)

        def hexdigest(self) -> str:
            return self.h.hexdigest()

    def pipeline_sha(path: Path, size: int, stop: Any = lambda: False) -> str:
        by_pipeline.append(path.name)
        digest = real_file(path, size, stop)
        go.set()  # the push hashed a file the early thread had not started; now let it finish
        return digest

    monkeypatch.setattr(earlyhash, "hashlib", SimpleNamespace(sha256=Held))  # this module's only
    monkeypatch.setattr(filescan, "sha256_file", pipeline_sha)
    with EarlyHashes(src) as early:
        assert started.wait(60)
        vault.push("m", src, early_hashes=early)
    assert by_pipeline == ["a.bin"]
    assert [p.name for p in early.hashed] == ["b.bin"]
    assert _digests(vault) == {
        "a.bin": _sha(src / "a.bin"),
        "sub/b.bin": _sha(src / "sub/b.bin"),
        "small.txt": _sha(src / "small.txt"),
    }


def test_a_file_rewritten_after_its_early_hash_is_hashed_again(
    vault: Vault, src: Path, pipeline_hashes: list[str]
) -> None:
    with EarlyHashes(src) as early:
        early.wait()
        before = os.stat(src / "a.bin")
        write_random(src / "a.bin", BIG, seed=9)  # same size, other bytes, mtime put back
        os.utime(src / "a.bin", ns=(before.st_atime_ns, before.st_mtime_ns))
        vault.push("m", src, early_hashes=early)
    assert pipeline_hashes == ["a.bin"]  # its ctime moved: the early digest no longer counts
    assert _digests(vault)["a.bin"] == _sha(src / "a.bin")


def test_a_file_changed_within_the_second_of_its_early_stat_is_hashed_again(
    vault: Vault, src: Path, pipeline_hashes: list[str]
) -> None:
    """A file whose last change is not in an earlier second than the early stat (here: an mtime
    ahead of the clock) could be rewritten without its stat changing (the stat cache's "racily
    clean" rule): its early digest is not taken, the push reads it again."""
    ahead = time.time_ns() + 30 * NS
    os.utime(src / "a.bin", ns=(ahead, ahead))
    with EarlyHashes(src) as early:
        early.wait()
        assert sorted(p.name for p in early.hashed) == ["a.bin", "b.bin"]
        assert early.take(_files(src)["a.bin"]) is None
        vault.push("m", src, early_hashes=early)
    assert pipeline_hashes == ["a.bin"]
    assert _digests(vault)["a.bin"] == _sha(src / "a.bin")


def test_a_file_changed_while_hashed_early_is_hashed_again(
    monkeypatch: pytest.MonkeyPatch, vault: Vault, src: Path, pipeline_hashes: list[str]
) -> None:
    target = src / "a.bin"
    real = hashlib.sha256

    class Rewriting:
        """SHA-256 that rewrites a.bin (same size) during its first update."""

        done = False

        def __init__(self) -> None:
            self.h = real()

        def update(self, data: Any) -> None:
            if not Rewriting.done:
                Rewriting.done = True
                with open(target, "r+b") as f:
                    f.write(b"changed")
                past = time.time_ns() - 3 * NS
                os.utime(target, ns=(past, past))
            self.h.update(data)

        def hexdigest(self) -> str:
            return self.h.hexdigest()

    monkeypatch.setattr(earlyhash, "hashlib", SimpleNamespace(sha256=Rewriting))  # this module's only
    (src / "sub" / "b.bin").unlink()
    with EarlyHashes(src) as early:
        early.wait()
        assert Rewriting.done and early.hashed == []  # the stat after the read differed
        _age(src)
        vault.push("m", src, early_hashes=early)
    assert pipeline_hashes == ["a.bin"]
    assert _digests(vault)["a.bin"] == _sha(target)


def test_files_the_stat_cache_vouches_for_are_not_read(vault: Vault, src: Path, tmp_path: Path) -> None:
    vault.push("m", src)
    write_random(src / "new" / "c.bin", BIG, seed=4)
    _age(src / "new")
    with EarlyHashes(src, stat_cache=tmp_path / "home" / "statcache.db") as early:
        early.wait()
    assert [p.name for p in early.hashed] == ["c.bin"]


def _push_error(vault: Vault, src: Path, early: EarlyHashes | None, **kw: Any) -> tuple[type, str]:
    with pytest.raises(Exception) as caught:
        vault.push("m", src, early_hashes=early, **kw)
    return type(caught.value), str(caught.value)


def test_an_unreadable_file_fails_as_without_early_hashes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, src: Path
) -> None:
    real = os.open

    def refuse(path: Any, flags: int, *a: Any, **k: Any) -> int:
        if os.fspath(path).endswith("a.bin"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real(path, flags, *a, **k)

    monkeypatch.setattr(os, "open", refuse)
    with Vault.open(tmp_path / "h1") as v:
        plain = _push_error(v, src, None)
    with Vault.open(tmp_path / "h2") as v, EarlyHashes(src) as early:
        early.wait()
        assert [p.name for p in early.hashed] == ["b.bin"]
        assert _push_error(v, src, early) == plain
    assert "a.bin" in plain[1]


def test_a_file_removed_after_its_early_hash_fails_as_without(tmp_path: Path, src: Path) -> None:
    def remove(_total: int) -> None:  # after the scan, before the pipeline
        (src / "a.bin").unlink(missing_ok=True)

    got = []
    for name in ("h1", "h2"):
        write_random(src / "a.bin", BIG, seed=1)
        _age(src)
        with Vault.open(tmp_path / name) as v:
            if name == "h1":
                got.append(_push_error(v, src, None, on_start=remove))
                continue
            with EarlyHashes(src) as early:
                early.wait()
                assert "a.bin" in [p.name for p in early.hashed]
                got.append(_push_error(v, src, early, on_start=remove))
    assert got[0] == got[1]
    assert got[0][0] is SourceNotFoundError


def test_close_leaves_no_thread_from_the_middle_of_a_file(monkeypatch: pytest.MonkeyPatch, src: Path) -> None:
    started = threading.Event()
    real = hashlib.sha256

    class Watched:
        def __init__(self) -> None:
            self.h = real()

        def update(self, data: Any) -> None:
            started.set()
            self.h.update(data)

        def hexdigest(self) -> str:
            return self.h.hexdigest()

    monkeypatch.setattr(earlyhash, "hashlib", SimpleNamespace(sha256=Watched))  # this module's only
    early = EarlyHashes(src).start()
    assert started.wait(60)
    early.close()
    assert _early_threads() == []
    assert early.take(_files(src)["a.bin"]) in (None, _sha(src / "a.bin"))
