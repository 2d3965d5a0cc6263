"""REST v1: pushes that send whole files (encrypted models, float-aware compression).

The server holds the keys, so for these models it does what an embedded push does on the
client's machine (``vault.file_ingest``): the client asks which files the server lacks (by
plain SHA-256), opens an upload session per missing file, sends its bytes (several files at
once, each resumable from the session's offset), and commits the version by path and SHA-256.
A file is stored only once the whole of it arrived and matches its size and SHA-256.
Sessions live in the shared index (``server.upload_sessions``), so behind a load balancer any
server process takes any of these requests.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from weightvault.core.access import Level
from weightvault.core.errors import InvalidInputError, PayloadTooLargeError
from weightvault.core.names import check_label, check_model_name, check_relative_path
from weightvault.server.api_models import CallerDep, VaultDep, pushed
from weightvault.server.auth import Caller
from weightvault.server.schemas import (
    AnnouncedFileIn,
    FilesMissingIn,
    FilesMissingOut,
    FileVersionIn,
    PushOut,
    UploadModeOut,
    UploadOut,
)
from weightvault.server.upload_sessions import Session, UploadSessions
from weightvault.vault import file_ingest
from weightvault.vault.file_ingest import AnnouncedFile

router = APIRouter()
M = "/models/{model:path}/-"
#: bytes gathered from the request before each write to the spool
WRITE_BATCH = 4 << 20


def _sessions(request: Request) -> UploadSessions:
    return request.app.state.uploads  # type: ignore[no-any-return]


def _principal(who: Caller) -> str:
    return who.identity.principal or ""


def _require_write(
    who: Caller, model: str, paths: Iterable[str], action: str, version: str | None = None
) -> None:
    """Refuse a bad name, label or path before the access check, then require write access."""
    check_model_name(model)
    if version is not None:
        check_label(version)
    for path in paths:
        check_relative_path(path)
    who.require(model, Level.WRITE, action, version)


def _out(session: Session, offset: int, complete: bool) -> UploadOut:
    return UploadOut(
        id=session.id,
        path=session.path,
        size=session.size,
        sha256=session.sha256,
        offset=offset,
        complete=complete,
    )


@router.get(
    M + "/upload-mode",
    response_model=UploadModeOut,
    tags=["upload"],
    summary="Whether a push of this model sends chunks or whole files",
)
def upload_mode(model: str, vault: VaultDep, who: CallerDep) -> UploadModeOut:
    check_model_name(model)
    who.require(model, Level.WRITE, "upload")
    files = file_ingest.needs_files(vault, model)
    encrypted = vault.keys.domain(model) is not None or vault.settings.encryption.enabled
    return UploadModeOut(
        mode="files" if files else "chunks", encrypted=encrypted, compression=vault.settings.compression
    )


@router.post(
    M + "/files/missing",
    response_model=FilesMissingOut,
    tags=["upload"],
    summary="Which of these files the vault lacks for this model (step 1 of a file push)",
)
def files_missing(model: str, body: FilesMissingIn, vault: VaultDep, who: CallerDep) -> FilesMissingOut:
    _require_write(who, model, [f.path for f in body.files], "upload")
    files = [AnnouncedFile(f.path, f.size, f.sha256) for f in body.files]
    return FilesMissingOut(missing=file_ingest.missing_files(vault, model, files))


@router.post(
    M + "/uploads",
    response_model=UploadOut,
    status_code=201,
    tags=["upload"],
    summary="Open an upload session for one file (step 2 of a file push)",
)
def open_upload(
    model: str, body: AnnouncedFileIn, request: Request, vault: VaultDep, who: CallerDep
) -> UploadOut:
    _require_write(who, model, [body.path], "upload")
    file_ingest.prepare(vault, model)  # a key problem stops the push before any byte is sent
    session = _sessions(request).create(model, body.path, body.size, body.sha256, _principal(who))
    return _out(session, 0, False)


@router.get(
    M + "/uploads/{upload_id}",
    response_model=UploadOut,
    tags=["upload"],
    summary="Where this server process continues an upload session (0 when it holds none of its bytes)",
)
def show_upload(model: str, upload_id: str, request: Request, who: CallerDep) -> UploadOut:
    check_model_name(model)
    who.require(model, Level.WRITE, "upload")
    sessions = _sessions(request)
    session = sessions.get(upload_id, model, _principal(who))
    return _out(session, sessions.settled_offset(session.id), False)


@router.delete(M + "/uploads/{upload_id}", status_code=204, tags=["upload"], summary="Abandon an upload")
def abandon_upload(model: str, upload_id: str, request: Request, who: CallerDep) -> Response:
    check_model_name(model)
    who.require(model, Level.WRITE, "upload")
    sessions = _sessions(request)
    session = sessions.get(upload_id, model, _principal(who))
    sessions.abandon(session.id)
    return Response(status_code=204)


@router.put(
    M + "/uploads/{upload_id}",
    response_model=UploadOut,
    tags=["upload"],
    summary="Send a file's bytes from ``offset``; the last piece stores the file (step 3)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
async def send_upload(
    model: str,
    upload_id: str,
    request: Request,
    vault: VaultDep,
    who: CallerDep,
    offset: Annotated[int, Query(ge=0, le=1 << 44, description="bytes the session already holds")],
) -> UploadOut:
    check_model_name(model)
    await run_in_threadpool(who.require, model, Level.WRITE, "upload")
    sessions = _sessions(request)
    session = await run_in_threadpool(sessions.get, upload_id, model, _principal(who))
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and offset + int(declared) > session.size:
        raise PayloadTooLargeError(
            f"{session.path}: {declared} bytes from offset {offset} pass the {session.size} bytes announced"
        )
    counter = request.app.state.metrics.upload_bytes
    appender = await run_in_threadpool(sessions.begin, session, offset)
    try:
        pieces: list[bytes] = []  # gathered up to WRITE_BATCH, then written in one call
        held = 0
        try:
            async for piece in request.stream():
                counter.inc(len(piece))
                pieces.append(piece)
                held += len(piece)
                if held >= WRITE_BATCH:
                    data = b"".join(pieces)
                    pieces.clear()
                    held = 0
                    await run_in_threadpool(appender.write, data)
        except ClientDisconnect:
            await run_in_threadpool(appender.write, b"".join(pieces))  # kept: the client resumes from here
            raise InvalidInputError(
                f"{session.path}: the request ended early; resume from its offset"
            ) from None
        if pieces:
            await run_in_threadpool(appender.write, b"".join(pieces))
        complete = await run_in_threadpool(appender.finish)
        if complete:
            await run_in_threadpool(
                lambda: file_ingest.ingest_file(
                    vault,
                    model,
                    session.path,
                    sessions.spool(session.id),
                    session.sha256,
                    session.size,
                    verified=appender.verified,
                )
            )
            sessions.remove(session.id)
    finally:
        await run_in_threadpool(sessions.end, appender)
    return _out(session, appender.offset, complete)


@router.post(
    M + "/versions/from-uploads",
    response_model=PushOut,
    status_code=201,
    tags=["versions"],
    summary="Commit a version of files the vault holds, named by path and SHA-256 (step 4)",
)
def commit_files(
    model: str, body: FileVersionIn, request: Request, vault: VaultDep, who: CallerDep
) -> PushOut:
    _require_write(who, model, [f.path for f in body.files], "push", body.version)
    started = time.perf_counter()
    result = file_ingest.commit(
        vault,
        model,
        [AnnouncedFile(f.path, f.size, f.sha256) for f in body.files],
        version=body.version,
        message=body.message,
        metadata=body.metadata,
        lineage=body.lineage,
        parent=body.parent,
        refuse_unsafe=body.refuse_unsafe,
    )
    return pushed(request, who, model, result, len(body.files), started)
