"""The smaller races and holes: ambiguous revisions, ``latest``, the seed's flags, SQLite write
transactions, replica ``exists``, fsync of new fan-out folders."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from sqlalchemy import event

from weightvault.core import layout
from weightvault.core.errors import AmbiguousRevisionError, ConfigError, InvalidNameError
from weightvault.core.manifest import INLINE_MAX_SIZE
from weightvault.storage import local as local_module
from weightvault.storage.local import LocalBackend
from weightvault.vault.vault import Vault

from ..conftest import write_random


def _src(tmp_path: Path, seed: int) -> Path:
    return write_random(tmp_path / f"s{seed}" / "w.bin", 30_000, seed=seed).parent


def test_a_label_that_is_also_another_versions_commit_prefix_is_ambiguous(
    vault: Vault, tmp_path: Path
) -> None:
    first = vault.push("m", _src(tmp_path, 1), version="v1")
    prefix = first.version.commit[:6]
    vault.push("m", _src(tmp_path, 2), version=prefix)  # a label that looks like v1's commit
    with pytest.raises(AmbiguousRevisionError) as exc:
        vault.resolve(f"m@{prefix}")
    assert f"m@{prefix}" in str(exc.value) and first.version.commit in str(exc.value)
    assert vault.resolve(f"m@{first.version.commit}").label == "v1"  # the full id is never ambiguous
    vault.set_alias("m", "abcd", "v1")  # an alias that matches no commit resolves as before
    assert vault.resolve("m@abcd").label == "v1"


def test_a_label_matching_its_own_commit_is_not_ambiguous(vault: Vault, tmp_path: Path) -> None:
    first = vault.push("m", _src(tmp_path, 1), version="v1")
    vault.set_alias("m", first.version.commit[:8], "v1")
    assert vault.resolve(f"m@{first.version.commit[:8]}").label == "v1"


def test_latest_is_the_newest_version_and_cannot_be_a_name(vault: Vault, tmp_path: Path) -> None:
    vault.push("m", _src(tmp_path, 1), version="v1")
    vault.push("m", _src(tmp_path, 2), version="v2")
    assert vault.resolve("m@latest").label == "v2"
    with pytest.raises(InvalidNameError, match="reserved"):
        vault.push("m", _src(tmp_path, 3), version="latest")
    with pytest.raises(InvalidNameError, match="reserved"):
        vault.set_alias("m", "latest", "v1")
    assert vault.resolve("m@latest").label == "v2"


def _seed(tmp_path: Path, **model_weights: object) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"model_weights": {"storage_type": "local", **model_weights}}))
    return path


def test_seed_encryption_enabled_encrypts_with_a_key_file_in_the_home(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    home = tmp_path / "home"
    with Vault.open(home, config=_seed(tmp_path, encryption_enabled=True)) as v:
        v.push("m", _src(tmp_path, 1), version="v1")
        assert v.key_status("m")["models"][0]["encrypted"] is True
        key_file = home / "keys" / "kek.key"
        assert key_file.stat().st_mode & 0o777 == 0o600
        assert any("back it up" in r.getMessage() for r in caplog.records)
        stored = b"".join((v.settings.store_path / i.key).read_bytes() for i in v.primary.list(layout.PACKS))
        assert (tmp_path / "s1" / "w.bin").read_bytes()[:4096] not in stored  # no plaintext


def test_seed_flags_that_cannot_be_honoured_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="versioning_enabled"):
        Vault.open(tmp_path / "h1", config=_seed(tmp_path, versioning_enabled=False))
    with pytest.raises(ConfigError, match="access_control_enabled"):
        Vault.open(tmp_path / "h2", config=_seed(tmp_path, access_control_enabled=True))
    cfg = tmp_path / "both.yaml"
    cfg.write_text(
        yaml.safe_dump({"model_weights": {"encryption_enabled": True}, "encryption": {"enabled": False}})
    )
    with pytest.raises(ConfigError, match="contradicts"):
        Vault.open(tmp_path / "h3", config=cfg)
    with Vault.open(tmp_path / "h4", config=_seed(tmp_path, versioning_enabled=True)) as v:
        assert v.settings.versioning_enabled


# a statement of SQLite's: PostgreSQL has no BEGIN IMMEDIATE (its writers queue on an advisory lock)
@pytest.mark.parametrize("index_url", ["sqlite"], indirect=True)
def test_sqlite_write_transactions_begin_immediate(vault: Vault, tmp_path: Path) -> None:
    seen: list[str] = []

    def record(conn: object, cursor: object, statement: str, *args: object) -> None:
        seen.append(statement)

    event.listen(vault.index.engine, "before_cursor_execute", record)
    vault.push("m", _src(tmp_path, 1), version="v1")
    event.remove(vault.index.engine, "before_cursor_execute", record)
    begins = [s for s in seen if s.startswith("BEGIN")]
    assert "BEGIN IMMEDIATE" in begins
    inserts = [i for i, s in enumerate(seen) if re.match(r"INSERT INTO versions", s)]
    assert (
        inserts
        and seen[max(i for i in range(inserts[0]) if seen[i].startswith("BEGIN"))] == "BEGIN IMMEDIATE"
    )


def test_a_copy_only_on_a_secondary_does_not_stop_the_primary_getting_it(tmp_path: Path) -> None:
    second = tmp_path / "second"
    # a file above the inline limit: its recipe is an object (small files' recipes travel inline)
    src = write_random(tmp_path / "big" / "w.bin", INLINE_MAX_SIZE + 1, seed=1).parent
    with Vault.open(tmp_path / "other", store_url=second.as_uri()) as other:
        other.push("m", src, version="v1")  # recipes and manifest are now on the secondary only
    with Vault.open(tmp_path / "home", replicas={"second": second.as_uri()}) as v:
        v.push("m2", src, version="v1")
        sha = v.show("m2@v1").files[0].sha256
        assert v.primary.exists(layout.recipe_key(sha))
        assert v.verify(read_data=True).ok


def test_new_fan_out_folders_are_fsynced_in_their_parents(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[Path] = []
    real = local_module.fsync_dir
    monkeypatch.setattr(local_module, "fsync_dir", lambda p: (synced.append(Path(p)), real(p))[1])
    backend = LocalBackend(tmp_path / "store")
    backend.put("packs/ab/" + "ab" * 32, b"x")
    assert tmp_path / "store" in synced  # packs/ is new: its parent (the store root) synced
    assert tmp_path / "store" / "packs" in synced  # packs/ab/ is new: packs/ synced
    assert tmp_path / "store" / "packs" / "ab" in synced  # the object's own folder
