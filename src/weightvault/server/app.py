"""The FastAPI application: wiring, error responses, limits, metrics, health.

``create_app(vault)`` serves one open :class:`Vault` (embedded façade over the shared store and
index); the routes live in ``api_models`` (models, versions, files, aliases, uploads) and
``api_admin`` (tokens, grants, audit, policies, verify, gc), and the Hugging Face Hub-compatible
API in ``hub_api``. Processes are stateless: run as many
as needed against one PostgreSQL and one store.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from weightvault import __version__
from weightvault.core import layout
from weightvault.core.errors import WeightvaultError, http_status_for
from weightvault.registry.access import AccessStore
from weightvault.registry.upload_sessions import UploadSessionIndex
from weightvault.server import api_admin, api_models, api_ops, api_uploads, hub_api, hub_upload
from weightvault.server.metrics import Metrics
from weightvault.server.schemas import Error, Health
from weightvault.server.transfer import Bridge
from weightvault.server.upload_sessions import UploadSessions
from weightvault.vault.vault import Vault

API_VERSION = "v1"


@dataclass
class ServerOptions:
    #: largest body of one chunk-upload request (several chunks); JSON bodies have their own limit
    max_upload_bytes: int = 128 << 20
    max_json_bytes: int = 32 << 20
    max_header_bytes: int = 16 << 10
    #: threads that stream downloads and take uploads (each holds one chunk reader's buffers)
    transfer_threads: int = 32
    #: origins a browser UI may call the API from (bearer tokens, no cookies)
    cors_origins: list[str] = field(default_factory=list)


_STATUS_CODES = {
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    431: "headers_too_large",
}


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"code": code, "message": message}, status_code=status, headers=headers)


_NO_LIMIT = 1 << 62


class _Limits:
    """Pure ASGI middleware: header and body size limits (JSON errors), and request metrics."""

    def __init__(self, app: ASGIApp, options: ServerOptions, metrics: Metrics) -> None:
        self.app = app
        self.options = options
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}
        headers = scope.get("headers", [])
        if sum(len(k) + len(v) for k, v in headers) > self.options.max_header_bytes:
            await _error(431, "headers_too_large", "request headers are too large")(scope, receive, send)
            self._count(scope, 431, started)
            return
        limit = (
            self.options.max_upload_bytes
            if scope["path"].endswith("/-/chunks")
            else _NO_LIMIT  # one file's bytes, streamed to a spool; its session bounds them
            if scope["method"] == "PUT" and "/-/uploads/" in scope["path"]
            else _NO_LIMIT  # a whole file, streamed into chunks as it arrives (bounded memory)
            if scope["path"].startswith(hub_upload.LFS_PREFIX)
            else self.options.max_json_bytes
        )
        declared = next((v for k, v in headers if k == b"content-length"), None)
        if declared is not None:
            if not declared.isdigit():
                await _error(400, "invalid_input", "malformed Content-Length")(scope, receive, send)
                self._count(scope, 400, started)
                return
            if int(declared) > limit:
                await _error(413, "payload_too_large", f"request body is larger than {limit} bytes")(
                    scope, receive, send
                )
                self._count(scope, 413, started)
                return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                n = len(message.get("body", b""))
                received += n
                self.metrics.bytes_in.inc(n)
                if received > limit:
                    raise _BodyTooLarge(limit)
            return message

        async def recording_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, counting_receive, recording_send)
        except _BodyTooLarge as exc:
            await _error(413, "payload_too_large", f"request body is larger than {exc.limit} bytes")(
                scope, receive, send
            )
            status["code"] = 413
        self._count(scope, status["code"], started)

    def _count(self, scope: Scope, status: int, started: float) -> None:
        route = scope.get("route")
        template = getattr(route, "path", None) or "unmatched"
        self.metrics.requests.labels(scope["method"], template, str(status)).inc()
        self.metrics.latency.labels(scope["method"], template).observe(time.perf_counter() - started)


class _BodyTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        self.limit = limit


def create_app(vault: Vault, options: ServerOptions | None = None) -> FastAPI:
    options = options or ServerOptions()
    access = AccessStore(vault.index) if getattr(vault, "_access", None) is None else vault.access
    metrics = Metrics(vault.index.stats)
    bridge = Bridge(options.transfer_threads)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        bridge.close()

    app = FastAPI(
        title="weightvault",
        version=__version__,
        description="Versioned, verified, deduplicated storage for model weights. REST API v1.",
        lifespan=lifespan,
        responses={
            400: {"model": Error},
            401: {"model": Error},
            403: {"model": Error},
            404: {"model": Error},
            409: {"model": Error},
            413: {"model": Error},
            422: {"model": Error},
            431: {"model": Error},
            500: {"model": Error},
            503: {"model": Error},
        },
        swagger_ui_init_oauth={"clientId": "", "scopes": "read"},
    )
    app.state.vault = vault
    app.state.access = access
    app.state.metrics = metrics
    app.state.bridge = bridge
    app.state.options = options
    # sessions in the shared index (any process continues them); bytes spooled on this one's disk
    app.state.uploads = UploadSessions(
        vault.settings.home / "tmp" / "uploads", UploadSessionIndex(vault.index)
    )

    @app.exception_handler(WeightvaultError)
    async def _weightvault_error(_request: Request, exc: WeightvaultError) -> JSONResponse:
        status = http_status_for(exc)
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return _error(status, exc.code, exc.message, headers)

    @app.exception_handler(hub_api.HubError)
    async def _hub_error(_request: Request, exc: hub_api.HubError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return _error(422, "invalid_input", f"{where}: {first.get('msg', 'invalid request')}")

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(exc.status_code, "http_error")
        return _error(exc.status_code, code, str(exc.detail), dict(exc.headers or {}))

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        return _error(500, "internal_error", f"internal error: {type(exc).__name__}")

    @app.get("/healthz", response_model=Health, tags=["health"], summary="The process is up")
    def healthz() -> Health:
        return Health(status="ok")

    @app.get(
        "/readyz",
        response_model=Health,
        tags=["health"],
        summary="The index and the store answer",
        responses={503: {"model": Health}},
    )
    def readyz() -> Any:
        checks: dict[str, str] = {}
        try:
            with vault.index.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            checks["index"] = "ok"
        except Exception as exc:
            checks["index"] = f"error: {type(exc).__name__}"
        try:
            checks["store"] = "ok" if vault.backend.exists(layout.CONFIG_KEY) else "error: no store config"
        except Exception as exc:
            checks["store"] = f"error: {type(exc).__name__}"
        ok = all(v == "ok" for v in checks.values())
        body = Health(status="ok" if ok else "unavailable", checks=checks)
        return body if ok else JSONResponse(body.model_dump(), status_code=503)

    @app.get(
        "/metrics",
        tags=["health"],
        summary="Prometheus metrics",
        response_class=Response,
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
    )
    def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    # before api_models: its "/models/{model:path}" route would take the upload routes' GETs
    app.include_router(api_uploads.router, prefix=f"/api/{API_VERSION}")
    app.include_router(api_models.router, prefix=f"/api/{API_VERSION}")
    app.include_router(api_admin.router, prefix=f"/api/{API_VERSION}")
    app.include_router(api_ops.router, prefix=f"/api/{API_VERSION}")
    # last: the Hub's "/{ns}/{name}/resolve/..." routes are broad (hub_upload adds to this router)
    app.include_router(hub_api.router)
    app.add_middleware(_Limits, options=options, metrics=metrics)
    if options.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=options.cors_origins,
            allow_credentials=False,
            allow_methods=["*"],
            allow_headers=["Authorization", "Content-Type", "Range"],
            expose_headers=["Content-Range", "Content-Length", "ETag", "Accept-Ranges"],
        )
    return app
