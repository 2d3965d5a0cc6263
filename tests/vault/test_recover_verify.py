from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from weightvault.core import layout
from weightvault.vault.vault import Vault

from ..conftest import new_postgres_database, tree_bytes


def _snapshot(v: Vault) -> list[tuple[str, str, str, tuple[str, ...], str, dict[str, str]]]:
    return [
        (m.name, x.label, x.commit, x.aliases, x.message, x.metadata)
        for m in v.list_models()
        for x in m.versions
    ]


def test_recover_rebuilds_the_index_from_the_store_alone(tmp_path: Path, model_dir: Path) -> None:
    home = tmp_path / "home"
    with Vault.open(home) as v:
        v.push("org/a", model_dir, version="v1", message="m1", metadata={"k": "v"})
        (model_dir / "config.json").write_text("{}")
        v.push("org/a", model_dir)
        v.push("b", model_dir, version="x")
        v.set_alias("org/a", "production", "v1")
        before = _snapshot(v)
    # a fresh machine: only the store folder survives
    fresh = tmp_path / "fresh"
    shutil.copytree(home / "store", fresh / "store")
    with Vault.open(fresh) as v:
        assert _snapshot(v) == before  # the store is the truth: seen without a recover
        counts = v.recover()
        assert counts["versions"] == 3 and counts["aliases"] == 1 and counts["skipped"] == 0
        assert _snapshot(v) == before
        v.pull("org/a@production", tmp_path / "out")
        assert v.verify(read_data=True).ok
    assert (tmp_path / "out" / "config.json").read_text() == '{"hidden_size": 64}'


def test_recover_uses_pack_tables_when_index_objects_are_lost(
    vault: Vault, model_dir: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    vault.push("m", model_dir)
    for info in list(vault.backend.list(layout.INDEX)):
        vault.backend.delete(info.key)
    vault.close()
    if vault.settings.database_url is None:
        (vault.settings.home / "index.db").unlink()
        url = None
    else:  # the PostgreSQL index is lost: a new, empty database
        url = new_postgres_database(request)
    with Vault.open(vault.settings.home, database_url=url) as v:
        assert v.recover()["packs"] >= 1
        v.pull("m", tmp_path / "o")
    assert tree_bytes(tmp_path / "o") == tree_bytes(model_dir)


def test_verify_reports_missing_and_corrupt_objects(vault: Vault, model_dir: Path, tmp_path: Path) -> None:
    vault.push("m", model_dir, version="v1")
    write_other = tmp_path / "other"
    write_other.mkdir()
    (write_other / "f.bin").write_bytes(b"unrelated" * 1000)
    vault.push("n", write_other, version="v1")
    assert vault.verify().ok and vault.verify(read_data=True).ok
    # flip one byte inside model m's first pack
    pack_ids = sorted(
        vault.index.pack_ids_for_chunks(
            [c for f in vault.show("m@v1").files for c, _ in vault._recipe(f.sha256).chunks]
        )
    )
    path = vault.settings.store_path / layout.pack_key(pack_ids[0])
    data = bytearray(path.read_bytes())
    data[10] ^= 1
    path.write_bytes(bytes(data))
    assert vault.verify().ok  # existence and sizes still fine
    report = vault.verify(read_data=True)
    assert not report.ok
    assert "m@v1" in report.affected_versions and "n@v1" not in report.affected_versions
    assert any("corrupt" in p for p in report.problems)
    path.unlink()
    report = vault.verify()
    assert not report.ok and any("missing" in p for p in report.affected_versions["m@v1"])
