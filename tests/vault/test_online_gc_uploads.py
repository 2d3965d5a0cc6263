"""gc with no grace period against the server's upload protocol, where asking for missing chunks,
sending them and committing the version are separate requests, possibly to two server processes
(one shared index on PostgreSQL) or two machines (one index each on SQLite) on one store.

Data sent but not committed yet is unreferenced: a gc may delete it. The commit must then refuse
(nothing visible, nothing half-made), asking again must name what is gone, and a commit that
lands while gc marks must keep its data. After each step the store verifies with its data.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from weightvault.cas.hashing import chunk_id
from weightvault.core import layout
from weightvault.core.errors import ConcurrentModificationError, MissingObjectError, NotFoundError
from weightvault.core.manifest import FileRecipe
from weightvault.vault import gc as gc_module
from weightvault.vault.ingest import UploadedFile
from weightvault.vault.vault import Vault


def _file(vault: Vault, data: bytes) -> tuple[FileRecipe, list[tuple[bytes, bytes]]]:
    pieces = [bytes(v) for v in vault.chunker.chunk_bytes(data)]
    blobs = [(chunk_id(p), p) for p in pieces]
    recipe = FileRecipe(hashlib.sha256(data).hexdigest(), len(data), tuple((c, len(p)) for c, p in blobs))
    return recipe, blobs


def _send_missing(vault: Vault, blobs: list[tuple[bytes, bytes]]) -> int:
    """What a client does before committing: ask, then send only what the vault lacks."""
    missing = set(vault.missing_chunks("m", [c for c, _ in blobs]))
    if missing:
        vault.put_chunks("m", [(c, d) for c, d in blobs if c in missing])
    return len(missing)


@pytest.fixture
def two(tmp_path: Path, index_url: str | None) -> Iterator[tuple[Vault, Vault]]:
    """Two vaults on one store: on PostgreSQL they share one index (two server processes), on
    SQLite each has its own (two machines)."""
    store = (tmp_path / "store").as_uri()
    a = Vault.open(tmp_path / "a", store_url=store, database_url=index_url, cache_enabled=False)
    b = Vault.open(tmp_path / "b", store_url=store, database_url=index_url, cache_enabled=False)
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def test_gc_deletes_data_sent_but_not_committed_and_the_commit_refuses_then_resends(
    two: tuple[Vault, Vault],
) -> None:
    a, b = two
    old = random.Random(1).randbytes(3_000_000)
    recipe1, blobs1 = _file(a, old)
    assert _send_missing(a, blobs1) == len({c for c, _ in blobs1})
    a.commit_upload("m", [UploadedFile("w.bin", recipe1)], version="v1")
    a.delete("m@v1")
    new = old[:2_000_000] + b"changed" + old[2_000_000:]
    recipe2, blobs2 = _file(a, new)
    sent = _send_missing(a, blobs2)  # most of v2 deduplicates against v1's condemned data
    assert 0 < sent < len(blobs2)
    packs = {i.key for i in a.primary.list(layout.PACKS)}

    report = b.gc(grace_seconds=0)  # the other process: v1 is gone and v2 is not committed yet
    assert report.packs_deleted == len(packs) and not list(a.primary.list(layout.PACKS))
    with pytest.raises((MissingObjectError, ConcurrentModificationError)):
        a.commit_upload("m", [UploadedFile("w.bin", recipe2)], version="v2")
    for v in (a, b):
        with pytest.raises(NotFoundError):
            v.show("m@v2")
    assert not list(a.primary.list(layout.REFS))
    assert b.verify(read_data=True).ok

    assert _send_missing(a, blobs2) == len({c for c, _ in blobs2})  # asking again names it all
    a.commit_upload("m", [UploadedFile("w.bin", recipe2)], version="v2")
    b.gc(grace_seconds=0)
    for v in (a, b):
        assert [x.label for x in v.list_versions("m")] == ["v2"]
        assert v.verify(read_data=True).ok
        assert b"".join(v.open_file("m@v2", "w.bin").iter_bytes()) == new


def test_a_commit_of_known_files_whose_data_gc_deleted_refuses(two: tuple[Vault, Vault]) -> None:
    """The same file as a deleted version: nothing is sent (all of it is still there when asked),
    then gc deletes it all before the commit, which must refuse rather than make a version
    without data; asking again names every chunk."""
    a, b = two
    data = random.Random(3).randbytes(2_000_000)
    recipe, blobs = _file(a, data)
    _send_missing(a, blobs)
    a.commit_upload("m", [UploadedFile("w.bin", recipe)], version="v1")
    a.delete("m@v1")
    assert _send_missing(a, blobs) == 0  # the same file again: everything is still there
    assert b.gc(grace_seconds=0).packs_deleted >= 1
    with pytest.raises((MissingObjectError, ConcurrentModificationError)):
        a.commit_upload("m", [UploadedFile("w.bin", recipe)], version="v2")
    assert not list(a.primary.list(layout.REFS))
    assert _send_missing(a, blobs) == len({c for c, _ in blobs})
    a.commit_upload("m", [UploadedFile("w.bin", recipe)], version="v2")
    for v in (a, b):
        assert v.verify(read_data=True).ok
        assert b"".join(v.open_file("m@v2", "w.bin").iter_bytes()) == data


def test_a_commit_landing_while_gc_marks_keeps_its_data(
    two: tuple[Vault, Vault], monkeypatch: pytest.MonkeyPatch
) -> None:
    """gc (grace 0) marks and plans without the commit, which lands before its exclusive phase
    and reuses a pack the first plan condemned: the second mark must see it."""
    a, b = two
    old = random.Random(2).randbytes(3_000_000)
    recipe1, blobs1 = _file(a, old)
    _send_missing(a, blobs1)
    a.commit_upload("m", [UploadedFile("w.bin", recipe1)], version="v1")
    a.delete("m@v1")
    new = old[:2_000_000] + b"changed" + old[2_000_000:]
    recipe2, blobs2 = _file(a, new)
    _send_missing(a, blobs2)

    real_plan = gc_module.plan
    landed: list[str] = []

    def plan_then_commit(*args: Any, **kwargs: Any) -> gc_module.Plan:
        p = real_plan(*args, **kwargs)
        if kwargs.get("copy", True) and not landed:  # the first plan: v1's and v2's packs all die
            assert p.dead
            landed.append(a.commit_upload("m", [UploadedFile("w.bin", recipe2)], version="v2").version.label)
        return p

    monkeypatch.setattr(gc_module, "plan", plan_then_commit)
    b.gc(grace_seconds=0)
    monkeypatch.undo()
    assert landed == ["v2"]
    for v in (a, b):
        assert [x.label for x in v.list_versions("m")] == ["v2"]
        assert v.verify(read_data=True).ok
        assert b"".join(v.open_file("m@v2", "w.bin").iter_bytes()) == new
    b.gc(grace_seconds=0)  # and a later gc, with v1's dead data, still keeps v2 whole
    assert a.verify(read_data=True).ok
    assert b"".join(a.open_file("m@v2", "w.bin").iter_bytes()) == new
