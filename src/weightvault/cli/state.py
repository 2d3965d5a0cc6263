"""The invocation's state: the global options of this command line and the vault they open.

Every command module reads it; it owns nothing of Typer, so a command module depends on it and
``cli/app.py`` assembles the commands without a loop between them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from weightvault.core.errors import ConfigError

if TYPE_CHECKING:
    from weightvault.vault.vault import Vault


@dataclass
class State:
    home: Path | None = None
    config: Path | None = None
    quiet: bool = False
    server: str | None = None
    token: str | None = None
    cache_dir: Path | None = None
    _vault: Vault | None = None

    def vault(self) -> Vault:
        if self._vault is None:
            from weightvault import Vault

            if self.server:  # the remote client: same methods, over the server's REST API
                if self.cache_dir is not None:
                    raise ConfigError("--cache-dir is for an embedded vault; a remote pull writes only DEST")
                self._vault = Vault.open(self.server, token=self.token)
            else:
                # a path on the command line is taken from the working folder, not the home
                cache = self.cache_dir
                overrides: dict[str, Any] = {}
                if cache is not None:
                    overrides["cache_directory"] = cache.expanduser().absolute()
                self._vault = Vault.open(self.home, config=self.config, **overrides)
        return self._vault

    def local_vault(self, what: str) -> Vault:
        """The embedded vault, for a command that works only next to the store and its keys."""
        if self.server:
            raise ConfigError(f"`{what}` is not available through a server; run it where the store is")
        return self.vault()


STATE = State()
