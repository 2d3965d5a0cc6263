"""gc and inline recipes on a store several machines share (docs/format.md, "Recipes", "Locks and
online gc"): every recipe a reader may take for a live file keeps its chunks (the inline one, this
index's row, the store's object), index rows no live version needs go, and a machine whose stat
cache and index still know a collected file pushes it again whole."""

from __future__ import annotations

import hashlib
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from weightvault.cas.hashing import chunk_id
from weightvault.core import layout
from weightvault.core.manifest import INLINE_MAX_SIZE, FileRecipe
from weightvault.vault import gc as gc_module
from weightvault.vault import statcache
from weightvault.vault.ingest import UploadedFile
from weightvault.vault.locks import EXCLUSIVE
from weightvault.vault.vault import Vault

from ..conftest import tree_bytes, write_random


def _open(home: Path, store: Path, **kw: Any) -> Vault:
    return Vault.open(home, store_url=store.as_uri(), cache_enabled=False, **kw)


def _objects(v: Vault) -> set[str]:
    return {layout.name_from_key(i.key) for i in v.backend.list(layout.RECIPES)}


def _cut_otherwise(v: Vault, data: bytes) -> FileRecipe:
    """Send ``data`` as a client whose cut points differ from the vault's chunker (two pieces,
    where the vault's chunker makes one of a small file) and return that recipe."""
    pieces = [data[: len(data) // 3], data[len(data) // 3 :]]
    v.put_chunks("m", [(chunk_id(p), p) for p in pieces])
    chunks = tuple((chunk_id(p), len(p)) for p in pieces)
    return FileRecipe(hashlib.sha256(data).hexdigest(), len(data), chunks)


@pytest.fixture
def old_writer(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """Pushes as before inline recipes: a recipe object for every file."""
    monkeypatch.setattr("weightvault.core.manifest.INLINE_MAX_SIZE", -1)
    return monkeypatch


def _tree(root: Path, seed: int) -> Path:
    write_random(root / "x.bin", 3000, seed=seed)
    write_random(root / "sub" / "y.bin", 5000, seed=seed + 1)
    return root


# ---- every recipe a reader may take keeps its chunks ------------------------------------------


def test_an_index_row_other_than_the_live_inline_recipe_keeps_its_chunks(
    tmp_path: Path, old_writer: pytest.MonkeyPatch
) -> None:
    """An old writer's version reads x.bin through the index row (its recipe object's chunks); a
    client's upload of the same bytes, cut otherwise, is live inline beside it."""
    src = _tree(tmp_path / "src", 1)
    data = (src / "x.bin").read_bytes()
    with Vault.open(tmp_path / "home", cache_enabled=False) as v:
        v.push("m", src, version="v0")  # format 1: recipe objects, rows equal to them
        old_writer.undo()
        pushed = FileRecipe.from_bytes(v.index.get_recipe(hashlib.sha256(data).hexdigest()) or b"")
        uploaded = _cut_otherwise(v, data)
        assert {c for c, _ in uploaded.chunks}.isdisjoint(c for c, _ in pushed.chunks)
        v.commit_upload("m", [UploadedFile("x.bin", uploaded)], version="v2")
        assert {f.path: f.chunks for f in v.show("m@v2").files}["x.bin"] == uploaded.chunks
        v.gc(grace_seconds=0)
        assert set(v.index.locate_chunks([c for c, _ in pushed.chunks])) == {c for c, _ in pushed.chunks}
        v.pull("m@v0", tmp_path / "out")
        assert v.verify(read_data=True).ok
    assert tree_bytes(tmp_path / "out") == tree_bytes(src)


def test_a_recipe_object_other_than_this_index_row_keeps_its_chunks(
    tmp_path: Path, old_writer: pytest.MonkeyPatch
) -> None:
    """Machine B (an old writer) stored x.bin as a recipe object; machine A, whose index never had
    a row for it, took a client's upload of the same bytes cut otherwise (A's row and the live
    inline recipe are the client's). A's gc must keep the object's chunks: B, and any machine
    that recovers from the store, reads B's version through the object."""
    store = tmp_path / "store"
    src = _tree(tmp_path / "src", 2)
    data = (src / "x.bin").read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    with _open(tmp_path / "b", store) as b:
        b.push("m", src, version="v0")
    old_writer.undo()
    with _open(tmp_path / "a", store) as a:
        assert sha in _objects(a) and a.index.get_recipe(sha) is None
        uploaded = _cut_otherwise(a, data)
        a.commit_upload("m", [UploadedFile("x.bin", uploaded)], version="v2")
        assert a.index.get_recipe(sha) == uploaded.to_bytes()
        a.gc(grace_seconds=0)
    with _open(tmp_path / "b", store) as b:
        b.pull("m@v0", tmp_path / "out")
        assert b.verify(read_data=True).ok
    with _open(tmp_path / "c", store) as c:
        assert c.recover().ok  # rows from the objects, as a machine that lost its index has them
        assert c.verify(read_data=True).ok
    assert tree_bytes(tmp_path / "out") == tree_bytes(src)


# ---- index rows no live version needs ---------------------------------------------------------


def test_gc_drops_the_rows_of_inline_recipes_no_live_version_has(vault: Vault, tmp_path: Path) -> None:
    gone_src = _tree(tmp_path / "s1", 3)
    write_random(gone_src / "big.bin", INLINE_MAX_SIZE + 1, seed=9)  # a recipe object, not inline
    kept_src = _tree(tmp_path / "s2", 5)
    vault.push("m", gone_src, version="v1")
    vault.push("m", kept_src, version="v2")
    gone = {f.sha256 for f in vault.show("m@v1").files}
    kept = {f.sha256 for f in vault.show("m@v2").files}
    assert all(vault.index.get_recipe(s) is not None for s in gone | kept)
    vault.delete("m@v1")
    vault.gc(grace_seconds=3600)  # rows inside the grace period stay, as objects do
    assert all(vault.index.get_recipe(s) is not None for s in gone)
    vault.gc(grace_seconds=0)
    assert vault.index.get_recipes(sorted(gone)) == {}
    assert set(vault.index.get_recipes(sorted(kept))) == kept
    vault.pull("m@v2", tmp_path / "out")
    assert vault.verify(read_data=True).ok
    assert tree_bytes(tmp_path / "out") == tree_bytes(kept_src)


def test_gc_keeps_a_row_whose_recipe_object_stays(
    tmp_path: Path, index_url: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Machine A's row of a file it pushed inline long ago, whose version is gone; machine B's Hub
    upload has just stored the same file whole (a recipe object, young, not committed yet). A's
    row goes with that object, never before it."""
    store = tmp_path / "store"
    src = _tree(tmp_path / "src", 4)
    data = (src / "x.bin").read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    with _open(tmp_path / "a", store, database_url=index_url) as a:
        a.push("m", src, version="v1")
        a.delete("m@v1")
        row = a.index.get_recipe(sha)
        assert row is not None and sha not in _objects(a)
        a.index.put_recipes([(sha, len(data), row)], created=datetime.now(UTC) - timedelta(hours=2))
        monkeypatch.delenv("WEIGHTVAULT_DATABASE_URL", raising=False)
        with _open(tmp_path / "b", store) as b:  # another machine, with its own index
            b.put_file("m", [data], sha, len(data))
        a.gc(grace_seconds=3600)
        assert sha in _objects(a) and a.index.get_recipe(sha) == row
        a.gc(grace_seconds=0)
        assert sha not in _objects(a) and a.index.get_recipe(sha) is None


# ---- a second machine's stat cache and index after another machine's gc ------------------------


@pytest.fixture
def stat_cache_trusts(monkeypatch: pytest.MonkeyPatch) -> None:
    """The stat cache vouches for files written in the second of the push too (its "racily
    clean" rule would otherwise have these fresh test files read again)."""
    monkeypatch.setattr(statcache, "trusted", lambda _src, _seen: True)


def _check_from_fresh_home(store: Path, home: Path, out: Path, src: Path) -> None:
    with _open(home, store) as c:
        assert c.verify(read_data=True).ok
        c.pull("m@v2", out)
    assert tree_bytes(out) == tree_bytes(src)


def _chunks_exist(v: Vault, label: str) -> None:
    """Every chunk the version names is in a pack the store holds."""
    ids = {c for f in v.show(f"m@{label}").files for c, _ in v._entry_recipe(f, "m").chunks}
    where = v.index.locate_chunks(sorted(ids))
    assert set(where) == ids
    assert all(v.primary.exists(layout.pack_key(loc.pack_id)) for loc in where.values())


def _v2_kept(*vaults: Vault) -> None:
    """On each machine every chunk of v2 is in a pack the store holds, and verify reads it all."""
    for v in vaults:
        _chunks_exist(v, "v2")
        assert v.verify(read_data=True).ok


@pytest.mark.usefixtures("stat_cache_trusts")
def test_a_stat_cache_hit_after_another_machines_gc_pushes_the_file_again(tmp_path: Path) -> None:
    store = tmp_path / "store"
    src = _tree(tmp_path / "src", 6)
    with _open(tmp_path / "b", store) as b:
        b.push("m", src, version="v1")
        with _open(tmp_path / "a", store) as a:
            a.delete("m@v1")
            assert a.gc(grace_seconds=0).packs_deleted >= 1
        result = b.push("m", src, version="v2")  # the same unchanged tree: the stat cache knows it
        assert result.chunks_new >= 1
        _v2_kept(b)
    _check_from_fresh_home(store, tmp_path / "c", tmp_path / "out", src)


@pytest.mark.usefixtures("stat_cache_trusts")
def test_a_push_between_gcs_mark_and_its_deletes_keeps_its_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """B pushes the unchanged tree again while A's gc runs: after A's first mark and plan (which
    found v1's chunks dead), before A's exclusive phase. B's stat cache and index still vouch for
    the chunks, so B writes nothing; A's second mark must see B's version."""
    store = tmp_path / "store"
    src = _tree(tmp_path / "src", 7)
    with _open(tmp_path / "b", store) as b, _open(tmp_path / "a", store) as a:
        b.push("m", src, version="v1")
        a.delete("m@v1")
        real_plan = gc_module.plan
        pushed: list[int] = []

        def plan_then_push(*args: Any, **kwargs: Any) -> gc_module.Plan:
            p = real_plan(*args, **kwargs)
            if kwargs.get("copy", True) and not pushed:
                assert p.dead  # v1's pack dies in the first plan
                pushed.append(b.push("m", src, version="v2").chunks_new)
            return p

        monkeypatch.setattr(gc_module, "plan", plan_then_push)
        a.gc(grace_seconds=0)
        monkeypatch.undo()
        assert pushed == [0]  # every chunk taken from the store as it was
        _v2_kept(a, b)
    _check_from_fresh_home(store, tmp_path / "c", tmp_path / "out", src)


@pytest.mark.usefixtures("stat_cache_trusts")
def test_a_push_holding_its_lock_while_gc_waits_keeps_its_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """B's push has taken its shared lock and found every chunk in its stat cache and index; A's
    gc marks and plans meanwhile and then waits for the exclusive lock until B commits."""
    store = tmp_path / "store"
    src = _tree(tmp_path / "src", 8)
    with _open(tmp_path / "b", store) as b, _open(tmp_path / "a", store) as a:
        b.push("m", src, version="v1")
        a.delete("m@v1")
        waiting = threading.Event()
        real_holding = gc_module.holding

        def holding(backend: Any, kind: str, **kw: Any) -> Any:
            if kind == EXCLUSIVE:
                waiting.set()  # gc has marked and planned: it now waits for B's shared lock
            return real_holding(backend, kind, **kw)

        monkeypatch.setattr(gc_module, "holding", holding)
        errors: list[BaseException] = []

        def run_gc() -> None:
            try:
                a.gc(grace_seconds=0)
            except BaseException as exc:
                errors.append(exc)

        gc_thread = threading.Thread(target=run_gc)
        real_put = Vault._put_recipes

        def put_recipes_while_gc_plans(self: Vault, *args: Any) -> list[str]:
            if not gc_thread.is_alive() and not waiting.is_set():
                gc_thread.start()
                assert waiting.wait(300)
            return real_put(self, *args)

        monkeypatch.setattr(Vault, "_put_recipes", put_recipes_while_gc_plans)
        result = b.push("m", src, version="v2")
        gc_thread.join(300)
        monkeypatch.undo()
        assert not gc_thread.is_alive() and not errors, errors
        assert result.chunks_new == 0
        _v2_kept(a, b)
    _check_from_fresh_home(store, tmp_path / "c", tmp_path / "out", src)


def test_a_fresh_home_that_recovers_keeps_chunks_only_an_inline_recipe_names(tmp_path: Path) -> None:
    store = tmp_path / "store"
    src = _tree(tmp_path / "src", 10)
    with _open(tmp_path / "a", store) as a:
        a.push("m", src, version="v2")
        assert _objects(a) == set()  # inline recipes are the only references to the chunks
    with _open(tmp_path / "c", store) as c:
        assert c.recover().ok
        report = c.gc(grace_seconds=0)
        assert report.packs_deleted == 0 and not report.problems
        assert c.verify(read_data=True).ok
        _chunks_exist(c, "v2")
    _check_from_fresh_home(store, tmp_path / "d", tmp_path / "out", src)
