"""Replication across stores, with local folders as replicas (the cloud runs are in tests/storage)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from weightvault.core import layout
from weightvault.core.errors import ConfigError
from weightvault.vault.vault import Vault

from ..conftest import tree_bytes, write_random


def _open(tmp_path: Path, sync_enabled: bool = True, **kw: object) -> Vault:
    replicas = {"gcp": (tmp_path / "gcp").as_uri(), "azure": (tmp_path / "azure").as_uri()}
    return Vault.open(tmp_path / "home", replicas=replicas, sync_enabled=sync_enabled, **kw)


def _pack_files(root: Path) -> list[Path]:
    return sorted(p for p in (root / "packs").rglob("*") if p.is_file())


def test_push_replicates_inline_and_show_reports_completeness(tmp_path: Path, model_dir: Path) -> None:
    with _open(tmp_path) as v:
        result = v.push("m", model_dir, version="v1")
        assert result.replication == {"gcp": "ok", "azure": "ok"}
        assert v.replica_status("m@v1") == {"local": True, "gcp": True, "azure": True}
        for name in ("gcp", "azure"):
            keys = {
                p.relative_to(tmp_path / name).as_posix() for p in (tmp_path / name).rglob("*") if p.is_file()
            }
            assert layout.version_ref_key("m", "v1") in keys
            assert len(_pack_files(tmp_path / name)) == len(_pack_files(tmp_path / "home" / "store"))


def test_pull_falls_back_and_repair_fixes(tmp_path: Path, model_dir: Path) -> None:
    with _open(tmp_path) as v:
        v.push("m", model_dir, version="v1")
        gcp_pack = _pack_files(tmp_path / "gcp")[0]
        data = bytearray(gcp_pack.read_bytes())
        data[7] ^= 0x10
        gcp_pack.write_bytes(bytes(data))
        azure_pack = _pack_files(tmp_path / "azure")[0]
        azure_pack.unlink()
        result = v.pull("m@v1", tmp_path / "out", provider="gcp")
        assert tree_bytes(tmp_path / "out") == tree_bytes(model_dir)
        assert any(f.startswith("gcp:") and "corrupt" in f for f in result.fallbacks)
        assert v.verify(read_data=False).ok  # the primary is intact
        v.reader.prefer = "gcp"  # verify reads like the pull did: the bad gcp copy is reported
        report = v.verify(read_data=True)
        v.reader.prefer = None
        assert not report.ok and any("replica gcp has a corrupt copy" in p for p in report.problems)
        status = v.replica_status("m@v1")
        assert status["azure"] is False and status["gcp"] is True  # present but corrupt: repair finds it
        report = v.repair()
        assert report.ok
        repaired = set(report.repaired)
        assert any(r.startswith("gcp:packs/") for r in repaired) and any(
            r.startswith("azure:packs/") for r in repaired
        )
        assert v.replica_status("m@v1") == {"local": True, "gcp": True, "azure": True}
        assert v.repair().repaired == []  # idempotent
        shutil.rmtree(tmp_path / "out")
        assert not v.pull("m@v1", tmp_path / "out", provider="gcp").fallbacks


def test_primary_loss_reads_from_secondaries(tmp_path: Path, model_dir: Path) -> None:
    with _open(tmp_path, cache_enabled=False) as v:
        v.push("m", model_dir)
        for p in _pack_files(tmp_path / "home" / "store"):
            p.unlink()
        result = v.pull("m", tmp_path / "out")
        assert result.fallbacks and tree_bytes(tmp_path / "out") == tree_bytes(model_dir)


def test_sync_is_idempotent_and_copies_only_what_is_missing(tmp_path: Path, model_dir: Path) -> None:
    home = tmp_path / "home"
    with Vault.open(home) as v:  # replication not configured yet: two versions on the primary only
        v.push("m", model_dir, version="v1")
        (model_dir / "config.json").write_text("{}")
        v.push("m", model_dir, version="v2")
        v.set_alias("m", "prod", "v1")
    with _open(tmp_path) as v:
        assert v.replica_status("m@v1")["gcp"] is False
        first = v.sync()
        assert first.ok and first.copied["gcp"] > 0 and first.copied["gcp"] == first.copied["azure"]
        assert v.sync().copied == {"gcp": 0, "azure": 0}
    with _open(tmp_path, sync_enabled=False) as v:  # replicas known, but nothing pushed to them
        v.set_alias("m", "prod", "v2")
        assert v.sync().copied["gcp"] == 1  # the moved alias is refreshed
        assert all(
            v.replica_status(f"m@{x}") == {"local": True, "gcp": True, "azure": True} for x in ("v1", "v2")
        )


def test_recover_from_any_single_replica(tmp_path: Path, model_dir: Path) -> None:
    with _open(tmp_path) as v:
        v.push("m", model_dir, version="v1", metadata={"k": "v"})
        v.set_alias("m", "prod", "v1")
        commit = v.resolve("m@v1").commit
    with Vault.open(tmp_path / "fresh", store_url=(tmp_path / "azure").as_uri()) as v:
        assert [m.name for m in v.list_models()] == ["m"]  # seen from the replica's refs alone
        assert v.recover()["versions"] == 1
        info = v.show("m@prod")
        assert info.commit == commit and info.metadata == {"k": "v"}
        v.pull("m@v1", tmp_path / "out")
    assert tree_bytes(tmp_path / "out") == tree_bytes(model_dir)


def test_delete_everywhere_or_primary_only(tmp_path: Path, model_dir: Path) -> None:
    with _open(tmp_path) as v:
        v.push("m", model_dir, version="v1")
        v.push("m", model_dir, version="v2")
        v.delete("m@v1")
        v.delete("m@v2", primary_only=True)
        for name in ("gcp", "azure"):
            assert not (tmp_path / name / layout.version_ref_key("m", "v1")).exists()
            assert (tmp_path / name / layout.version_ref_key("m", "v2")).exists()
        assert not (tmp_path / "home" / "store" / layout.version_ref_key("m", "v2")).exists()


def test_unknown_provider_is_a_clear_error(tmp_path: Path, model_dir: Path) -> None:
    with _open(tmp_path) as v:
        v.push("m", model_dir)
        with pytest.raises(ConfigError, match="no replica named 'aws'"):
            v.pull("m", tmp_path / "out", provider="aws")
        assert not (tmp_path / "out").exists()


def test_configured_replicas_are_replicated_unless_turned_off(tmp_path: Path, model_dir: Path) -> None:
    """``replicas:`` alone (no ``sync_enabled``) replicates every push, as the README promises."""
    home, archive = tmp_path / "home", tmp_path / "archive"
    home.mkdir()
    (home / "config.yaml").write_text(f"replicas:\n  archive: {archive.as_uri()}\n")
    with Vault.open(home) as v:
        assert v.push("m", model_dir, version="v1").replication == {"archive": "ok"}
        assert v.replica_status("m@v1") == {"local": True, "archive": True}
    (home / "config.yaml").write_text(f"sync_enabled: false\nreplicas:\n  archive: {archive.as_uri()}\n")
    with Vault.open(home) as v:
        write_random(model_dir / "new.bin", 1000, seed=5)
        assert v.push("m", model_dir, version="v2").replication == {}
        assert v.replica_status("m@v2")["archive"] is False
