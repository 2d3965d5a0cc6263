"""``weightvault token|grant|audit`` against the home."""

from __future__ import annotations

import json
from pathlib import Path

from weightvault.core.access import Level
from weightvault.vault.vault import Vault

from ..conftest import run_cli


def test_token_grant_and_audit_commands(tmp_path: Path) -> None:
    home = tmp_path / "home"
    made = run_cli(home, "token", "create", "-p", "ci", "--scope", "write", "--expires", "7d", "--json")
    assert made.returncode == 0, made.stderr
    created = json.loads(made.stdout)
    secret, token_id = created["token"], created["id"]
    assert run_cli(home, "grant", "add", "ci", "team/*", "writer").returncode == 0
    listed = json.loads(run_cli(home, "token", "list", "--json").stdout)
    assert [(t["principal"], t["scope"], t["last_chars"]) for t in listed] == [("ci", "write", secret[-4:])]
    assert secret not in run_cli(home, "token", "list").stdout
    with Vault.open(home) as v:
        identity = v.access.authenticate(secret)
        assert v.access.level(identity, "team/model") == Level.WRITE
        assert v.access.level(identity, "elsewhere") == Level.NONE
    assert run_cli(home, "token", "revoke", str(token_id)).returncode == 0
    log = json.loads(run_cli(home, "audit", "--json", "--since", "1h").stdout)
    assert [e["action"] for e in log] == ["token.revoke", "grant.add", "token.create"]
    assert all(e["principal"].startswith("local") for e in log)
    by_model = json.loads(run_cli(home, "audit", "--json", "--model", "team/*").stdout)
    assert [e["action"] for e in by_model] == ["grant.add"]


def test_bad_input_is_one_line_with_the_family_exit_code(tmp_path: Path) -> None:
    home = tmp_path / "home"
    bad_scope = run_cli(home, "token", "create", "--scope", "root")
    assert bad_scope.returncode == 4 and bad_scope.stderr.strip().count("\n") == 0
    assert run_cli(home, "grant", "add", "x", "../m", "reader").returncode == 4
    assert run_cli(home, "token", "revoke", "42").returncode == 3
    assert run_cli(home, "audit", "--since", "yesterday").returncode == 4
    assert json.loads(run_cli(home, "token", "list", "--json").stdout) == []
