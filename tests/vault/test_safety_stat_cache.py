"""The format check at push trusts the stat cache: an unchanged file that a push already checked
is not opened again, its finding is kept in the new version, a dangerous one is still refused on
request, and a changed file is checked again."""

from __future__ import annotations

import json
import os
import pickle
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from weightvault.core.errors import MalformedFileError, UnsafeFileError
from weightvault.vault import safety
from weightvault.vault.source import SourceFile, scan_source
from weightvault.vault.statcache import NS, StatCache
from weightvault.vault.vault import Vault

from ..conftest import write_random


class Exec:
    def __reduce__(self) -> tuple[object, ...]:
        return (exec, ("pass",))


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The files the format check opens (safetensors headers and pickle scans)."""
    seen: list[str] = []
    check, scan = safety.check_safetensors, safety.scan_pickle

    def check_spy(src: SourceFile) -> None:
        seen.append(src.path)
        check(src)

    def scan_spy(src: SourceFile) -> object:
        seen.append(src.path)
        return scan(src)

    monkeypatch.setattr(safety, "check_safetensors", check_spy)
    monkeypatch.setattr(safety, "scan_pickle", scan_spy)
    return seen


def _age(root: Path) -> None:
    """mtime 5 s back, then wait until the second of the ctime ``utime`` set is over (the stat
    cache trusts only files last changed in a second before the push looked at them)."""
    past = time.time_ns() - 5 * NS
    for p in root.rglob("*"):
        if p.is_file():
            os.utime(p, ns=(past, past))
    ctime = max(p.stat().st_ctime_ns for p in root.rglob("*") if p.is_file())
    while time.time_ns() // NS <= ctime // NS:
        time.sleep(0.05)


@pytest.fixture
def src(tmp_path: Path) -> Path:
    root = tmp_path / "ckpt"
    write_random(root / "model.safetensors", 50_000, seed=1)
    (root / "args.bin").write_bytes(pickle.dumps(Exec(), protocol=4))
    (root / "state.pkl").write_bytes(pickle.dumps({"step": 1}))
    (root / "config.json").write_text("{}")
    _age(root)
    return root


@pytest.fixture
def vault(tmp_path: Path) -> Iterator[Vault]:
    with Vault.open(tmp_path / "home") as v:
        yield v


def test_an_unchanged_checked_file_is_not_opened_again_and_keeps_its_finding(
    vault: Vault, src: Path, opened: list[str]
) -> None:
    first = vault.push("m", src, version="v1")
    assert sorted(opened) == ["args.bin", "config.json", "model.safetensors", "state.pkl"]
    opened.clear()
    second = vault.push("m", src, version="v2")
    assert opened == []  # every file vouched for by the stat cache
    one, two = vault.show(f"m@{first.version.label}"), vault.show(f"m@{second.version.label}")
    assert two.safety == one.safety
    assert two.safety["args.bin"]["verdict"] == "dangerous"
    assert set(two.safety) == {"args.bin", "state.pkl"}


def test_a_dangerous_pickle_from_the_cache_is_still_refused(
    vault: Vault, src: Path, opened: list[str]
) -> None:
    vault.push("m", src, version="v1")
    opened.clear()
    with pytest.raises(UnsafeFileError, match=r"args\.bin \(builtins\.exec\)"):
        vault.push("m", src, version="v2", refuse_unsafe=True)
    assert opened == []
    assert [v.label for v in vault.list_versions("m")] == ["v1"]


def test_a_changed_file_is_checked_again(vault: Vault, src: Path, opened: list[str]) -> None:
    vault.push("m", src, version="v1")
    opened.clear()
    st = src / "model.safetensors"
    st.write_bytes(b"\xff" * st.stat().st_size)  # same size, broken header
    with pytest.raises(MalformedFileError):
        vault.push("m", src, version="v2")
    assert opened == ["model.safetensors"]


def test_a_cache_from_before_the_column_is_upgraded_and_checks_again(tmp_path: Path, src: Path) -> None:
    db_path = tmp_path / "old.db"
    db = sqlite3.connect(db_path)
    db.execute(
        "CREATE TABLE files (path TEXT NOT NULL, scheme TEXT NOT NULL, dev INTEGER NOT NULL, "
        "ino INTEGER NOT NULL, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, ctime_ns INTEGER NOT NULL, "
        "seen_ns INTEGER NOT NULL, recipe BLOB NOT NULL, PRIMARY KEY (path, scheme))"
    )
    files = scan_source(src)
    for f in files:
        db.execute(
            "INSERT INTO files VALUES (?, 's', ?, ?, ?, ?, ?, ?, x'00')",
            (str(f.abspath), f.dev, f.inode, f.size, f.mtime_ns, f.ctime_ns, time.time_ns()),
        )
    db.commit()
    db.close()
    cache = StatCache(db_path)
    try:
        assert cache.checked(files) == {}  # no recorded check: every file is checked
    finally:
        cache.close()


def test_a_finding_of_another_version_of_the_checks_does_not_count(
    vault: Vault, src: Path, opened: list[str]
) -> None:
    vault.push("m", src, version="v1")
    db = sqlite3.connect(vault.stat_cache.path)
    rows = db.execute("SELECT rowid, safety FROM files").fetchall()
    for rowid, kept in rows:
        db.execute(
            "UPDATE files SET safety = ? WHERE rowid = ?",
            (json.dumps({**json.loads(kept), "by": "0.0.0-older"}), rowid),
        )
    db.commit()
    db.close()
    opened.clear()
    vault.push("m", src, version="v2")
    assert sorted(opened) == ["args.bin", "config.json", "model.safetensors", "state.pkl"]
