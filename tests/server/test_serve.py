"""``weightvault serve``: no default credentials; the first start prints a one-time admin token."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from weightvault.testing.server import ServerProcess
from weightvault.vault.vault import Vault


def test_first_serve_prints_an_admin_token_once(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with ServerProcess(home) as server:
        assert httpx.get(f"{server.url}/api/v1/whoami").json()["principal"] is None  # anonymous
        assert httpx.get(f"{server.url}/api/v1/tokens").status_code == 401
        found = re.findall(r"wvt_[A-Za-z0-9_-]{43}", server.log.read_text())
        assert len(found) == 1
        who = httpx.get(f"{server.url}/api/v1/whoami", headers={"Authorization": f"Bearer {found[0]}"}).json()
        assert who == {"principal": "admin", "scope": "admin", "is_admin": True}
    with ServerProcess(home) as again:
        assert "wvt_" not in again.log.read_text()
    with Vault.open(home) as v:
        (stored,) = v.access.list_tokens("admin")
        assert stored.last_chars == found[0][-4:]
