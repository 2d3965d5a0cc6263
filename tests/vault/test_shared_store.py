"""Several homes (machines) on one store folder: the store is the truth for every reader and
writer; the key layout is unambiguous; readers refuse store formats they do not know."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from weightvault.core import layout
from weightvault.core.errors import FormatError
from weightvault.storage.backend import Backend, ObjectInfo
from weightvault.storage.local import LocalBackend
from weightvault.vault.config import load_settings
from weightvault.vault.vault import Vault

from ..conftest import tree_bytes, write_random


class Counting:
    """A backend that counts the requests made through it."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.url = inner.url
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if name in ("put", "put_file", "get", "get_range", "stat", "exists", "list", "delete"):

            def counted(*args: Any, **kwargs: Any) -> Any:
                self.calls.append(f"{name} {args[0] if args else ''}")
                return attr(*args, **kwargs)

            return counted
        return attr

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        self.calls.append(f"list {prefix}")
        return self.inner.list(prefix)


def _open(home: Path, store: Path, **kw: Any) -> Vault:
    return Vault.open(home, store_url=store.as_uri(), **kw)


def _small(root: Path, seed: int, size: int = 20_000) -> Path:
    write_random(root / "w.bin", size, seed=seed)
    (root / "config.json").write_text('{"n": 1}')
    return root


# ---- layout and format ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (("x", "version", "versions"), ("x/versions", "version", "v1")),
        (("x", "alias", "versions"), ("x/aliases", "version", "versions")),
        (("x/aliases", "alias", "a"), ("x", "alias", "a")),
        (("a", "version", "b"), ("a/b", "version", "c")),
    ],
)
def test_ref_keys_never_collide_or_nest(a: tuple[str, str, str], b: tuple[str, str, str]) -> None:
    ka, kb = layout.ref_key(*a), layout.ref_key(*b)
    assert ka != kb
    assert not ka.startswith(kb + "/") and not kb.startswith(ka + "/")  # no key is another's folder
    assert layout.parse_ref_key(ka) == a and layout.parse_ref_key(kb) == b
    assert len(ka.split("/")) == len(kb.split("/")) == 5


def test_keyring_keys_never_nest() -> None:
    assert layout.keyring_key("a") == "keys/_/a/keyring"
    assert layout.keyring_key("a/keyring") == "keys/a/keyring/keyring"
    assert layout.parse_keyring_key(layout.keyring_key("a/keyring")) == "a/keyring"
    assert layout.parse_keyring_key(layout.keyring_key("a")) == "a"


def test_models_labels_and_aliases_that_collided_in_format_1_coexist(vault: Vault, tmp_path: Path) -> None:
    src = _small(tmp_path / "s", 1)
    vault.push("x", src, version="versions")
    vault.push("x/versions", src, version="v1")
    vault.push("x/aliases", src, version="versions")
    vault.set_alias("x", "aliases", "versions")
    vault.set_alias("x/versions", "versions-alias", "v1")
    assert {(m.name, v.label) for m in vault.list_models() for v in m.versions} == {
        ("x", "versions"),
        ("x/versions", "v1"),
        ("x/aliases", "versions"),
    }
    fresh = Vault.open(tmp_path / "fresh", store_url=vault.settings.store_path.as_uri())
    with fresh:
        assert fresh.resolve("x@aliases").label == "versions"
        assert fresh.resolve("x/versions@versions-alias").label == "v1"


@pytest.mark.parametrize("fmt", [1, 3, "2"])
def test_a_store_of_another_format_is_refused(tmp_path: Path, fmt: object) -> None:
    store = tmp_path / "store"
    store.mkdir()
    config = {"format": fmt, "id": "ab" * 16, "created": "x", "chunking": {}}
    (store / "config").write_text(json.dumps(config))
    with pytest.raises(FormatError, match="store format"):
        _open(tmp_path / "home", store)


def test_new_stores_are_format_2(vault: Vault) -> None:
    assert json.loads(vault.backend.get(layout.CONFIG_KEY))["format"] == 2


# ---- every machine sees the store ----------------------------------------------------------------


def test_two_homes_on_one_folder_see_each_others_pushes_aliases_and_deletes(tmp_path: Path) -> None:
    store = tmp_path / "store"
    with _open(tmp_path / "a", store) as a, _open(tmp_path / "b", store) as b:
        assert b.list_models() == []
        a.push("m", _small(tmp_path / "s1", 1), version="v1")
        assert [v.label for v in b.list_versions("m")] == ["v1"]  # no recover
        b.pull("m@v1", tmp_path / "out1")
        assert tree_bytes(tmp_path / "out1") == tree_bytes(tmp_path / "s1")
        b.push("m", _small(tmp_path / "s2", 2), version="v2")
        a.set_alias("m", "prod", "v2")
        assert b.resolve("m@prod").label == "v2"
        a.set_alias("m", "prod", "v1")  # an alias move
        assert b.resolve("m@prod").label == "v1"
        b.remove_alias("m", "prod")
        assert "prod" not in a.model("m").aliases
        a.delete("m@v1")
        assert [v.label for v in b.list_versions("m")] == ["v2"]
        assert b.resolve("m").label == "v2"  # latest
        b.pull("m", tmp_path / "out2")
        assert tree_bytes(tmp_path / "out2") == tree_bytes(tmp_path / "s2")


def test_refresh_costs_one_read_when_nothing_changed_and_little_after_one_push(tmp_path: Path) -> None:
    store = tmp_path / "store"
    with _open(tmp_path / "a", store) as a:
        for i in range(30):
            a.push("m", _small(tmp_path / f"s{i}", i, size=2000), version=f"v{i}")
    counting = Counting(LocalBackend(store))
    with Vault(load_settings(tmp_path / "b"), backend=counting) as b:  # type: ignore[arg-type]
        assert len(b.list_versions("m")) == 30  # a fresh index: one full scan
        counting.calls.clear()
        b.refresh()
        assert counting.calls == [f"get {layout.journal_key(int(b.index.get_state('journal_seq') or 0) + 1)}"]
        with _open(tmp_path / "a", store) as a:
            a.push("m", _small(tmp_path / "new", 99, size=2000), version="new")
        counting.calls.clear()
        report = b.refresh()
        assert report.applied >= 2 and not report.full_scan  # the pack and the ref
        # entries + the ref + the manifest + the pack table + the final miss: not one per version
        assert len(counting.calls) <= 2 * report.applied + 4, counting.calls
        assert not any(c.startswith("list") for c in counting.calls)
        assert b.resolve("m@new").label == "new"


def test_a_writer_killed_before_its_journal_entry_is_seen_by_a_full_scan(tmp_path: Path) -> None:
    """The ref is the truth: a fresh index finds a version whose journal entry never got written."""
    store = tmp_path / "store"
    with _open(tmp_path / "a", store) as a:
        a.push("m", _small(tmp_path / "s", 1), version="v1")
        seq = a.journal.head()
        for n in range(1, seq + 1):
            a.primary.delete(layout.journal_key(n))
        a.primary.delete(layout.JOURNAL_HEAD)
    with _open(tmp_path / "b", store) as b:
        assert b.resolve("m@v1").label == "v1"
