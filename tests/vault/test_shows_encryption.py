"""What a push of a model without a keyring reads to tell whether the model is encrypted
(``Store.shows_encryption``, docs/security.md point 4): a fixed number of objects, not one per
version, and still every sign of a deleted keyring it is meant to see."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from weightvault.core import layout
from weightvault.core.manifest import canonical_json
from weightvault.storage.memory import MemoryBackend
from weightvault.vault.keyring import claim_key
from weightvault.vault.store import Store
from weightvault.vault.vault import Vault

NOW = datetime(2026, 11, 30, tzinfo=UTC)


def spy_ref_gets(monkeypatch: pytest.MonkeyPatch, store: Store) -> list[str]:
    """The ref keys ``store`` reads from its backend from now on, in order."""
    read: list[str] = []
    real: Callable[[str], bytes] = store.backend.get

    def get(key: str) -> bytes:
        if key.startswith(layout.REFS):
            read.append(key)
        return real(key)

    monkeypatch.setattr(store.backend, "get", get)
    return read


def ref_gets_of_a_push(home: Path, src: Path, versions: int, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Ref reads of a push of a plain model that has ``versions`` version refs: two pushed, the
    others more refs to the second version's commit (what pushes of an unchanged tree under new
    labels leave), written through the store as a push writes them."""
    src.mkdir()
    (src / "config.json").write_text('{"arch": "tiny"}')
    with Vault.open(home) as v:
        for i in (0, 1):
            (src / "weights.bin").write_bytes(i.to_bytes(8, "little") * 64)
            info = v.push("m", src, version=f"v{i:05d}")
        for i in range(2, versions):
            v.store.create_version_ref("m", f"v{i:05d}", info.version.commit, NOW)
        assert sum(1 for _ in v.backend.list(layout.model_refs_prefix("m"))) == versions
        (src / "weights.bin").write_bytes(versions.to_bytes(8, "little") * 64)
        with monkeypatch.context() as mp:
            read = spy_ref_gets(mp, v.store)
            v.push("m", src, version="next")
        return read


def test_a_plain_push_reads_as_many_refs_with_200_versions_as_with_20(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    few = ref_gets_of_a_push(tmp_path / "few", tmp_path / "src-few", 20, monkeypatch)
    many = ref_gets_of_a_push(tmp_path / "many", tmp_path / "src-many", 200, monkeypatch)
    assert len(many) == len(few)
    # the first listed ref and the newest known version's ref; the push also reads back its own
    assert len([k for k in many if k != layout.version_ref_key("m", "next")]) <= 2


def memory_store() -> Store:
    return Store(MemoryBackend())


def put_ref(store: Store, label: str, *, mac: bool) -> None:
    body = {"model": "m", "label": label, "commit": "c" * 64, "created": NOW.isoformat()}
    if mac:
        body["mac"] = "0" * 64
    store.backend.put(layout.version_ref_key("m", label), canonical_json(body))


def test_the_rule_samples_the_first_listed_ref_the_newest_known_one_and_the_keys_folder(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = memory_store()  # lists in the order keys were written
    for label in ("v1", "v2", "v3"):
        put_ref(store, label, mac=label == "v3")
    read = spy_ref_gets(monkeypatch, store)
    assert not store.shows_encryption("m")
    assert read == [layout.version_ref_key("m", "v1")]  # one ref read, not three
    assert store.shows_encryption("m", newest="v3")
    assert not store.shows_encryption("m", newest="v2")
    assert not store.shows_encryption("other", newest="v3")  # another model's refs say nothing
    store.backend.put(claim_key("m", 2), b'{"generation": 2, "keyring_blake3": "00"}')
    assert store.shows_encryption("m")
    assert not store.shows_encryption("m2")  # a keys folder is one model's, not a prefix's


def test_an_authenticated_first_listed_ref_is_enough(monkeypatch: pytest.MonkeyPatch) -> None:
    store = memory_store()
    put_ref(store, "v1", mac=True)
    put_ref(store, "v2", mac=False)
    read = spy_ref_gets(monkeypatch, store)
    assert store.shows_encryption("m")
    assert read == [layout.version_ref_key("m", "v1")]
