"""The team server: REST API v1 over the vault façade (FastAPI on uvicorn)."""

from weightvault.server.app import ServerOptions, create_app

__all__ = ["ServerOptions", "create_app"]
