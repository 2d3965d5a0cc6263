"""A real server process per test module, and tokens for a few principals."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from weightvault.testing.server import ServerProcess
from weightvault.vault.vault import Vault


@dataclass
class Served:
    url: str
    home: Path
    admin: str
    process: ServerProcess

    def local(self) -> Vault:
        """The same vault opened embedded, next to the server (as an operator would)."""
        return Vault.open(self.home)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    home = tmp_path_factory.mktemp("served") / "home"
    with Vault.open(home) as v:
        admin = v.access.create_token("root", "admin", admin=True).token
    env = {"WEIGHTVAULT_GC_GRACE_SECONDS": "0"}
    with ServerProcess(home, env=env) as proc:
        yield Served(proc.url, home, admin, proc)
