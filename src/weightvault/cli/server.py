"""``weightvault serve``: the REST API server over this vault (registered by ``cli/app.py``)."""

from __future__ import annotations

from typing import Annotated

import typer

from weightvault.cli.state import STATE


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8080,
    cors_origin: Annotated[
        list[str] | None,
        typer.Option("--cors-origin", help="Origin a browser UI may call from (repeatable)."),
    ] = None,
    max_upload_mb: Annotated[int, typer.Option(min=1, max=4096, help="Largest chunk-upload request.")] = 128,
    log_level: Annotated[str, typer.Option(help="uvicorn's log level (warning, info, debug).")] = "info",
) -> None:
    """Serve REST API v1, Swagger UI (/docs), /healthz, /readyz and /metrics."""
    from weightvault.server.app import ServerOptions
    from weightvault.server.run import serve as run

    vault = STATE.local_vault("serve")  # over a home or a database_url, never over --server
    options = ServerOptions(max_upload_bytes=max_upload_mb << 20, cors_origins=list(cors_origin or []))
    run(vault, host, port, options, log_level=log_level)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
