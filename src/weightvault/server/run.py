"""``weightvault serve``: one server process on uvicorn.

On an index with no principal at all, the first start creates the administrator ``admin`` and
prints its token once (there is no default password or token). Several processes may serve one
vault (same PostgreSQL ``database_url``, same store) behind a load balancer.
"""

from __future__ import annotations

import sys
from typing import TextIO

import uvicorn

from weightvault.server.app import ServerOptions, create_app
from weightvault.vault.vault import Vault


def bootstrap_message(vault: Vault) -> str | None:
    new = vault.access.bootstrap_admin()
    if new is None:
        return None
    return (
        "weightvault: this index had no principals; created the administrator 'admin'.\n"
        f"weightvault: its token (shown once, stored only as a hash): {new.token}\n"
    )


def serve(
    vault: Vault,
    host: str = "127.0.0.1",
    port: int = 8080,
    options: ServerOptions | None = None,
    log_level: str = "info",
    out: TextIO = sys.stderr,
) -> None:
    message = bootstrap_message(vault)
    if message:
        out.write(message)
        out.flush()
    app = create_app(vault, options)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        proxy_headers=False,  # the source address in the audit log is the peer's, never a header's
        server_header=False,
        timeout_keep_alive=30,
    )
    uvicorn.Server(config).run()
