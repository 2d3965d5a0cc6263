"""``weightvault.Vault``: the SDK's entry point, the embedded vault whose ``open`` also reaches
a server.

It stands above both the embedded vault and the remote client, so that choosing between them
by the target (a folder, or an ``http(s)://`` URL) is the only place that knows both: the
façade itself knows nothing of transport, and the client is imported only for a URL.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from weightvault.core.errors import ConfigError
from weightvault.vault.vault import Vault as EmbeddedVault


class Vault(EmbeddedVault):
    """The embedded vault; ``Vault.open`` of a server URL gives the remote client instead."""

    @classmethod
    def open(
        cls,
        path: Path | str | None = None,
        *,
        config: Path | str | None = None,
        token: str | None = None,
        **overrides: Any,
    ) -> EmbeddedVault:
        """Open (creating if needed) the vault at ``path``, ``$WEIGHTVAULT_HOME`` or ``~/.weightvault``.

        An ``http(s)://`` URL (or ``$WEIGHTVAULT_SERVER`` when no path is given) opens a remote
        vault instead: ``weightvault.client.RemoteVault``, the same methods over a server's REST
        API, authenticated by ``token`` or ``$WEIGHTVAULT_TOKEN``. The client module is imported
        only then.
        """
        target = path if path is not None else os.environ.get("WEIGHTVAULT_SERVER") or None
        if isinstance(target, str) and target.startswith(("http://", "https://")):
            if config is not None or overrides:
                raise ConfigError("a remote vault takes its settings from the server; give only a token")
            from weightvault.client import RemoteVault

            return RemoteVault(target, token=token or os.environ.get("WEIGHTVAULT_TOKEN"))  # type: ignore[return-value]
        return super().open(path, config=config, token=token, **overrides)
