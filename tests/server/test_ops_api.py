"""Operations over the API: replication status and sync, repair, recover, key status, gc runs.

A real server on a vault with a secondary replica (a folder) and encryption on (a key file):
what an embedded operator does next to the store, an admin does through the server, through
the SDK and ``weightvault --server``; everyone else is refused, and every call is audited.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from weightvault import Vault
from weightvault.client import RemoteVault
from weightvault.core.errors import AccessDeniedError, ConfigError, exit_code_for
from weightvault.server.api_ops import _public
from weightvault.testing.server import ServerProcess

from ..cli.inproc import wv_in
from ..conftest import write_random


@dataclass
class Ops:
    url: str
    home: Path
    archive: Path
    admin: str
    writer: str


@pytest.fixture(scope="module")
def ops(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ops]:
    root = tmp_path_factory.mktemp("ops")
    home, archive = root / "home", root / "archive"
    home.mkdir()
    # replication off at push time: the archive lags until a sync, as after an outage
    (home / "config.yaml").write_text(
        f"sync_enabled: false\nreplicas:\n  archive: {archive.as_uri()}\nencryption: {{enabled: true}}\n"
    )
    src = root / "src"
    write_random(src / "w.bin", 3_000_000, seed=3)
    with Vault.open(home) as v:
        v.push("team/model", src, version="v1")
        admin = v.access.create_token("root", "admin", admin=True).token
        writer = v.access.create_token("dev", "write").token
        v.access.add_grant("dev", "team/*", "writer")
    with ServerProcess(home) as proc:
        yield Ops(proc.url, home, archive, admin, writer)


def test_replication_status_sync_and_repair_through_the_server(ops: Ops) -> None:
    with Vault.open(ops.url, token=ops.admin) as remote:
        assert isinstance(remote, RemoteVault)
        assert remote.replicas()[-1] == "archive"
        assert remote.replica_status("team/model@v1")["archive"] is False  # not synced yet
        synced = remote.sync()
        assert synced.ok and synced.copied["archive"] > 0 and synced.bytes_copied["archive"] > 0
        assert remote.replica_status("team/model@v1") == {name: True for name in remote.replicas()}
        victim = max((p for p in ops.archive.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
        good = victim.read_bytes()
        victim.write_bytes(good[:100] + bytes(len(good) - 100))  # a bad copy on the secondary
        repaired = remote.repair()
        assert repaired.ok and repaired.checked > 0
        assert any(item.startswith("archive:") for item in repaired.repaired), repaired
        assert victim.read_bytes() == good
        assert remote.sync().copied.get("archive", 0) == 0  # idempotent


def test_recover_and_key_status_through_the_server(ops: Ops) -> None:
    kek = (ops.home / "keys" / "kek.key").read_bytes()
    with Vault.open(ops.url, token=ops.admin) as remote:
        report = remote.recover()
        assert report.ok and report.counts["versions"] >= 1
        assert [v.label for v in remote.list_versions("team/model")] == ["v1"]  # the index was rebuilt
        status = remote.key_status()
        (entry,) = [m for m in status["models"] if m["model"] == "team/model"]
        assert entry["encrypted"] and entry["data_keys"] and status["encryption_enabled"]
        raw = httpx.get(f"{ops.url}/api/v1/ops/keys", headers={"Authorization": f"Bearer {ops.admin}"}).text
        assert kek.hex() not in raw and kek.decode("latin-1") not in raw


def test_only_global_admins_may_run_operations_and_every_call_is_audited(ops: Ops) -> None:
    auth = {"Authorization": f"Bearer {ops.writer}"}
    for method, path in [
        ("GET", "/ops/replicas"),
        ("POST", "/ops/sync"),
        ("POST", "/ops/repair"),
        ("POST", "/ops/recover"),
        ("GET", "/ops/keys"),
        ("POST", "/gc"),
    ]:
        r = httpx.request(method, f"{ops.url}/api/v1{path}", headers=auth)
        assert r.status_code == 403 and set(r.json()) == {"code", "message"}, (path, r.text)
    with Vault.open(ops.url, token=ops.writer) as remote, pytest.raises(AccessDeniedError):
        remote.sync()
    bad = httpx.get(
        f"{ops.url}/api/v1/ops/replicas",
        params={"model": "../etc", "rev": "v1"},
        headers={"Authorization": f"Bearer {ops.admin}"},
    )
    assert bad.status_code in (400, 422) and set(bad.json()) == {"code", "message"}
    with Vault.open(ops.home) as local:
        log = local.access.audit_log(limit=500)
    actions = {(e.action, e.outcome) for e in log}
    assert {("sync", "denied"), ("recover", "denied"), ("keys.status", "denied")} <= actions
    seen = {e.action for e in log if e.outcome == "ok"}
    assert {"sync", "repair", "recover", "keys.status", "replicas.status"} <= seen


def test_the_cli_runs_the_operations_through_the_server(
    ops: Ops, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEIGHTVAULT_SERVER", ops.url)
    monkeypatch.setenv("WEIGHTVAULT_TOKEN", ops.admin)
    home = tmp_path / "unused"
    for args, key in [
        (("sync", "--json"), "copied"),
        (("repair", "--json"), "checked"),
        (("recover", "--json"), "versions"),
        (("keys", "status", "--json"), "models"),
        (("gc", "--dry-run", "--json"), "dry_run"),
        (("show", "team/model@v1", "--json"), "replicas"),
    ]:
        r = wv_in(capsys, home, *args)
        assert r.returncode == 0, (args, r.stderr)
        assert key in json.loads(r.stdout), args
    gc = json.loads(wv_in(capsys, home, "gc", "--dry-run", "--json").stdout)
    assert gc["dry_run"] is True and gc["grace_seconds"] >= 0
    refused = wv_in(capsys, home, "keys", "rotate")
    assert (
        refused.returncode == exit_code_for(ConfigError("x"))
        and refused.stderr.count("\n") == 1
        and "server" in refused.stderr
    )
    assert not home.exists()


def test_secrets_in_provider_settings_never_leave_the_server() -> None:
    status = {
        "configured_provider": {"type": "passphrase", "passphrase": "hunter2", "passphrase_env": "WV_PASS"},
        "models": [{"provider": {"type": "aws_kms", "key_id": "alias/x", "secret_access_key": "s3cr3t"}}],
    }
    shown = json.dumps(_public(status))
    assert "hunter2" not in shown and "s3cr3t" not in shown
    assert "WV_PASS" in shown and "alias/x" in shown  # names and ids of keys are not secrets


def test_grace_is_not_taken_through_a_server(ops: Ops) -> None:
    with Vault.open(ops.url, token=ops.admin) as remote, pytest.raises(ConfigError, match="not available"):
        remote.gc(grace_seconds=0)
