"""Alias rollback: an alias ref of an encrypted model carries a sequence number inside its MAC,
and a home refuses an authentic alias ref older than one it has seen (docs/security.md).

The attacker can write the bucket (a local folder store) and saved an old, validly
authenticated alias ref; the victim is a home that has seen the newer one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from weightvault.core import layout
from weightvault.core.errors import IntegrityError, RevisionNotFoundError
from weightvault.vault.refauth import AliasRollbackError
from weightvault.vault.vault import Vault

from ..conftest import run_cli

ENC: dict[str, Any] = {"encryption": {"enabled": True}, "cache_enabled": False}


def staged(home: Path, model_dir: Path) -> bytes:
    """m@v1, m@v2 with production moved v1 -> v2; returns production's old (v1) ref as stored."""
    with Vault.open(home, **ENC) as v:
        v.push("m", model_dir, version="v1")
        (model_dir / "config.json").write_text('{"hidden_size": 128}')
        v.push("m", model_dir, version="v2")
        v.set_alias("m", "production", "v1")
        old = v.primary.get(layout.alias_ref_key("m", "production"))
        v.set_alias("m", "production", "v2")
        new = json.loads(v.primary.get(layout.alias_ref_key("m", "production")))
        assert new["seq"] > json.loads(old)["seq"]
    return old


def test_replayed_alias_ref_is_refused_by_a_home_that_saw_a_newer_one(home: Path, model_dir: Path) -> None:
    old = staged(home, model_dir)
    with Vault.open(home, **ENC) as v:
        v.primary.put(layout.alias_ref_key("m", "production"), old)  # the attacker
        v.journal_ref("m", "alias", "production")  # and tells every reader to look at it
        with pytest.raises(AliasRollbackError, match="rolled back") as info:
            v.resolve("m@production")
        assert isinstance(info.value, IntegrityError) and "alias accept m production" in str(info.value)
        # a rebuilt index refuses it too, and never points production at v1
        assert v.recover()["refused_refs"] == 1
        with pytest.raises(AliasRollbackError):
            v.resolve("m@production")
        assert any("production" in p and "rolled back" in p for p in v.verify().problems)
        # moving the alias on purpose needs no special step: it gets a newer number
        assert v.set_alias("m", "production", "v1").label == "v1"
        assert v.resolve("m@production").label == "v1"


def test_a_deliberate_rollback_is_accepted_with_alias_accept(home: Path, model_dir: Path) -> None:
    old = staged(home, model_dir)
    with Vault.open(home, **ENC) as v:
        v.primary.put(layout.alias_ref_key("m", "production"), old)  # a store restored from a backup
        v.journal_ref("m", "alias", "production")
        with pytest.raises(AliasRollbackError):
            v.resolve("m@production")
    r = run_cli(home, "--config", str(_config(home)), "pull", "m@production", str(home.parent / "out"))
    assert r.returncode == 6 and len(r.stderr.strip().splitlines()) == 1 and "rolled back" in r.stderr
    r = run_cli(home, "--config", str(_config(home)), "alias", "accept", "m", "production")
    assert r.returncode == 0, r.stderr
    assert "m@production -> v1" in r.stdout + r.stderr
    with Vault.open(home, **ENC) as v:
        assert v.resolve("m@production").label == "v1"


def _config(home: Path) -> Path:
    path = home.parent / "cfg.yaml"
    path.write_text("encryption:\n  enabled: true\ncache_enabled: false\n")
    return path


def test_the_sequence_number_is_authenticated(home: Path, model_dir: Path) -> None:
    old = staged(home, model_dir)
    body = json.loads(old)
    body["seq"] += 10**12  # the attacker makes the old ref look newest
    with Vault.open(home, **ENC) as v:
        v.primary.put(layout.alias_ref_key("m", "production"), json.dumps(body).encode())
        v.journal_ref("m", "alias", "production")
        v.refresh()
        assert v.recover()["refused_refs"] == 1
        with pytest.raises((RevisionNotFoundError, IntegrityError), match=r"MAC|not found"):
            v.resolve("m@production")


def test_a_home_that_never_saw_the_alias_accepts_the_replay(
    home: Path, model_dir: Path, tmp_path: Path
) -> None:
    """The stated limit: pins live in a home; a fresh reader trusts what the store says."""
    old = staged(home, model_dir)
    enc = {"enabled": True, "provider": {"type": "local_file", "path": str(home / "keys" / "kek.key")}}
    with Vault.open(home, **ENC) as v:
        v.primary.put(layout.alias_ref_key("m", "production"), old)
    with Vault.open(tmp_path / "fresh", store_url=f"file://{home / 'store'}", encryption=enc) as w:
        assert w.resolve("m@production").label == "v1"


def test_sequence_numbers_survive_a_new_domain(home: Path, model_dir: Path) -> None:
    old = staged(home, model_dir)
    with Vault.open(home, **ENC) as v:
        before = json.loads(v.primary.get(layout.alias_ref_key("m", "production")))["seq"]
        v.rotate_domain("m")
        after = json.loads(v.primary.get(layout.alias_ref_key("m", "production")))
        assert after["seq"] == before and v.resolve("m@production").label == "v2"
        v.primary.put(layout.alias_ref_key("m", "production"), old)  # an old-domain ref: refused anyway
        v.journal_ref("m", "alias", "production")
        assert "m" in v.refresh().refused
        assert v.resolve("m@production").label == "v2"  # what this home verified, never the replay
