"""REST v1: models, versions, files (ranged, streamed downloads), aliases and chunk uploads.

Model names may hold one ``/`` (``namespace/name``), so sub-resources of a model follow a
``/-/`` separator: ``/models/org/llama/-/versions/v1/files/config.json``. Every input is
validated by the core's name rules before any I/O; every route asks the caller's permissions.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from weightvault import __version__
from weightvault.core.access import Level
from weightvault.core.errors import ConfigError, InvalidInputError
from weightvault.core.manifest import FileRecipe
from weightvault.core.names import check_label, check_model_name, check_relative_path
from weightvault.core.revision import Ref
from weightvault.core.types import PushResult
from weightvault.server.auth import Caller, caller
from weightvault.server.schemas import (
    MAX_PAGE,
    AliasIn,
    ChunkIdsIn,
    ChunkIdsOut,
    ChunkUploadOut,
    FileOut,
    ModelOut,
    Page,
    PushOut,
    StoreOut,
    VersionIn,
    VersionOut,
    WhoAmI,
)
from weightvault.server.transfer import file_body, frames, parse_range
from weightvault.vault import file_ingest
from weightvault.vault.ingest import UploadedFile
from weightvault.vault.stream import FileStream
from weightvault.vault.vault import Vault

router = APIRouter()
CallerDep = Annotated[Caller, Depends(caller)]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description="page size")]
Offset = Annotated[int, Query(ge=0, le=1 << 40, description="items to skip")]
M = "/models/{model:path}/-"


def vault_of(request: Request) -> Vault:
    return request.app.state.vault  # type: ignore[no-any-return]


VaultDep = Annotated[Vault, Depends(vault_of)]


def pushed(
    request: Request, who: Caller, model: str, result: PushResult, files: int, started: float
) -> PushOut:
    """What every kind of push does once its version is committed: time it, audit it, answer it."""
    request.app.state.metrics.push_seconds.observe(time.perf_counter() - started)
    who.audit("push", model=model, version=result.version.label, detail=f"{files} files")
    return PushOut.of(result)


def _ref(model: str, rev: str) -> Ref:
    check_model_name(model)
    check_label(rev, "revision")
    return Ref(model, rev)


def _chunk_id(text: str) -> bytes:
    if len(text) != 64:
        raise InvalidInputError("a chunk id is 64 hex digits")
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise InvalidInputError("a chunk id is 64 hex digits") from None


@router.get("/store", response_model=StoreOut, tags=["store"], summary="How this vault chunks files")
def store(request: Request, vault: VaultDep) -> StoreOut:
    params = vault.chunker.params
    return StoreOut(
        api_version="v1",
        server_version=__version__,
        chunk_min_size=params.min_size,
        chunk_avg_size=params.avg_size,
        chunk_max_size=params.max_size,
        max_upload_bytes=request.app.state.options.max_upload_bytes,
    )


@router.get("/whoami", response_model=WhoAmI, tags=["access"], summary="The caller's principal and scope")
def whoami(who: CallerDep) -> WhoAmI:
    return WhoAmI(
        principal=who.identity.principal,
        scope=who.identity.scope.name.lower(),
        is_admin=who.identity.is_admin,
    )


@router.get("/models", response_model=Page[ModelOut], tags=["models"], summary="Models the caller may read")
def list_models(
    vault: VaultDep,
    who: CallerDep,
    limit: Limit = 100,
    offset: Offset = 0,
    q: Annotated[str | None, Query(max_length=96, description="substring of the name")] = None,
) -> Page[ModelOut]:
    names = [n for n in vault.model_names() if (q is None or q in n) and who.level(n) >= Level.READ]
    public = who.access.public_models()
    items = [ModelOut.of(vault.model(n), n in public) for n in names[offset : offset + limit]]
    return Page[ModelOut](items=items, total=len(names), limit=limit, offset=offset)


@router.get(
    M + "/versions", response_model=Page[VersionOut], tags=["versions"], summary="Versions, newest first"
)
def list_versions(
    model: str, vault: VaultDep, who: CallerDep, limit: Limit = 100, offset: Offset = 0
) -> Page[VersionOut]:
    check_model_name(model)
    who.require(model, Level.READ, "list")
    versions = vault.list_versions(model)
    items = [VersionOut.of(v) for v in versions[offset : offset + limit]]
    return Page[VersionOut](items=items, total=len(versions), limit=limit, offset=offset)


@router.post(
    M + "/versions",
    response_model=PushOut,
    status_code=201,
    tags=["versions"],
    summary="Commit a version whose chunks were uploaded",
)
def commit_version(model: str, body: VersionIn, request: Request, vault: VaultDep, who: CallerDep) -> PushOut:
    check_model_name(model)
    if body.version is not None:
        check_label(body.version)
    who.require(model, Level.WRITE, "push", body.version)
    _require_chunk_mode(vault, model, read_refs=True)
    files = []
    for f in body.files:
        check_relative_path(f.path)
        chunks = tuple((_chunk_id(c), n) for c, n in f.chunks)
        if any(n <= 0 for _, n in chunks):
            raise InvalidInputError(f"{f.path}: chunk lengths must be positive")
        if sum(n for _, n in chunks) != f.size:
            raise InvalidInputError(f"{f.path}: chunk lengths do not add up to its size")
        files.append(UploadedFile(f.path, FileRecipe(f.sha256, f.size, chunks)))
    started = time.perf_counter()
    result = vault.commit_upload(
        model,
        files,
        version=body.version,
        message=body.message,
        metadata=body.metadata,
        lineage=body.lineage,
        parent=body.parent,
        refuse_unsafe=body.refuse_unsafe,
    )
    return pushed(request, who, model, result, len(files), started)


@router.get(
    M + "/versions/{rev}", response_model=VersionOut, tags=["versions"], summary="A version with its files"
)
def show_version(model: str, rev: str, vault: VaultDep, who: CallerDep) -> VersionOut:
    ref = _ref(model, rev)
    who.require(model, Level.READ, "show", rev)
    return VersionOut.of(vault.show(ref), with_files=True)


@router.delete(
    M + "/versions/{rev}", response_model=VersionOut, tags=["versions"], summary="Delete a version"
)
def delete_version(model: str, rev: str, vault: VaultDep, who: CallerDep) -> VersionOut:
    ref = _ref(model, rev)
    who.require(model, Level.WRITE, "delete", rev)
    info = vault.resolve(ref)
    if set(info.aliases) & who.access.protected_aliases(model):
        who.require(model, Level.ADMIN, "delete", rev)  # it would drop a protected alias
    deleted = vault.delete(Ref(model, info.label))
    who.audit("delete", model=model, version=deleted.label)
    return VersionOut.of(deleted)


@router.get(
    M + "/versions/{rev}/files", response_model=Page[FileOut], tags=["files"], summary="Files of a version"
)
def list_files(
    model: str,
    rev: str,
    vault: VaultDep,
    who: CallerDep,
    limit: Limit = 1000,
    offset: Offset = 0,
    prefix: Annotated[str | None, Query(max_length=1024)] = None,
) -> Page[FileOut]:
    ref = _ref(model, rev)
    who.require(model, Level.READ, "list", rev)
    files = [f for f in vault.show(ref).files if prefix is None or f.path.startswith(prefix)]
    return Page[FileOut](
        items=[FileOut.of(f) for f in files[offset : offset + limit]],
        total=len(files),
        limit=limit,
        offset=offset,
    )


def _file_headers(fs: FileStream) -> dict[str, str]:
    return {"Accept-Ranges": "bytes", "ETag": f'"{fs.entry.sha256}"', "X-Checksum-Sha256": fs.entry.sha256}


@router.get(
    M + "/versions/{rev}/files/{path:path}",
    tags=["files"],
    summary="Download a file (HTTP Range supported)",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
        206: {"content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
        416: {"description": "Range not satisfiable"},
    },
)
async def download(
    model: str, rev: str, path: str, request: Request, vault: VaultDep, who: CallerDep
) -> Response:
    ref = _ref(model, rev)
    check_relative_path(path)
    await run_in_threadpool(who.require, model, Level.READ, "pull", rev)
    fs: FileStream = await run_in_threadpool(vault.open_file, ref, path)
    size = fs.entry.size
    span = parse_range(request.headers.get("range"), size)
    start, stop = span if span is not None else (0, size)
    headers = {**_file_headers(fs), "Content-Length": str(stop - start)}
    status = 200
    if span is not None:
        status = 206
        headers["Content-Range"] = f"bytes {start}-{stop - 1}/{size}"
    if size == 0:
        return Response(b"", status_code=200, headers=headers, media_type="application/octet-stream")
    body = file_body(request.app.state.bridge, request.app.state.metrics, fs, start, stop)
    return StreamingResponse(body, status_code=status, headers=headers, media_type="application/octet-stream")


@router.head(M + "/versions/{rev}/files/{path:path}", include_in_schema=False)
def file_head(model: str, rev: str, path: str, vault: VaultDep, who: CallerDep) -> Response:
    ref = _ref(model, rev)
    check_relative_path(path)
    who.require(model, Level.READ, "pull", rev)
    fs = vault.open_file(ref, path)
    return Response(
        headers={**_file_headers(fs), "Content-Length": str(fs.entry.size)},
        media_type="application/octet-stream",
    )


@router.get(M + "/aliases", response_model=dict[str, str], tags=["aliases"], summary="alias -> version label")
def list_aliases(model: str, vault: VaultDep, who: CallerDep) -> dict[str, str]:
    check_model_name(model)
    who.require(model, Level.READ, "list")
    return vault.model(model).aliases


def _require_alias_change(who: Caller, model: str, alias: str, action: str) -> None:
    who.require(model, Level.WRITE, action, alias)
    if alias in who.access.protected_aliases(model):
        who.require(model, Level.ADMIN, action, alias)


@router.put(
    M + "/aliases/{alias}", response_model=VersionOut, tags=["aliases"], summary="Point an alias at a version"
)
def set_alias(model: str, alias: str, body: AliasIn, vault: VaultDep, who: CallerDep) -> VersionOut:
    check_model_name(model)
    check_label(alias, "alias")
    check_label(body.revision, "revision")
    _require_alias_change(who, model, alias, "alias.set")
    info = vault.set_alias(model, alias, body.revision)
    who.audit("alias.set", model=model, version=alias, detail=f"-> {info.label}")
    return VersionOut.of(info)


@router.delete(M + "/aliases/{alias}", status_code=204, tags=["aliases"], summary="Remove an alias")
def remove_alias(model: str, alias: str, vault: VaultDep, who: CallerDep) -> Response:
    check_model_name(model)
    check_label(alias, "alias")
    _require_alias_change(who, model, alias, "alias.remove")
    vault.remove_alias(model, alias)
    who.audit("alias.remove", model=model, version=alias)
    return Response(status_code=204)


def _require_chunk_mode(vault: Vault, model: str, *, read_refs: bool = False) -> None:
    """Chunks a client named cannot be keyed, sealed or float-compressed: such models take
    whole files (``api_uploads``), so their pushes store what an embedded push would. The
    commit also reads the model's refs (a deleted keyring does not make a model plain)."""
    if file_ingest.needs_files(vault, model, read_refs=read_refs):
        raise ConfigError(
            f"{model} is pushed in whole files on this server (encrypted or float-compressed): "
            "see GET .../upload-mode and the /uploads routes"
        )


@router.post(
    M + "/chunks/missing",
    response_model=ChunkIdsOut,
    tags=["upload"],
    summary="Which of these chunks the vault lacks (step 1 of a push)",
)
def missing(model: str, body: ChunkIdsIn, vault: VaultDep, who: CallerDep) -> ChunkIdsOut:
    check_model_name(model)
    ids = [_chunk_id(c) for c in body.ids]
    who.require(model, Level.WRITE, "upload")
    _require_chunk_mode(vault, model)
    return ChunkIdsOut(missing=[c.hex() for c in vault.missing_chunks(model, ids)])


@router.post(
    M + "/chunks",
    response_model=ChunkUploadOut,
    tags=["upload"],
    summary="Send chunks (step 2 of a push): frames of id (32 bytes) | length (4 bytes BE) | data",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
async def upload_chunks(model: str, request: Request, vault: VaultDep, who: CallerDep) -> ChunkUploadOut:
    check_model_name(model)
    await run_in_threadpool(who.require, model, Level.WRITE, "upload")
    await run_in_threadpool(_require_chunk_mode, vault, model)
    options = request.app.state.options
    max_chunk = vault.chunker.params.max_size

    def work(items: Iterator[tuple[bytes, bytes]]) -> Any:
        return vault.put_chunks(model, items)

    result = await request.app.state.bridge.consume(
        frames(request.stream(), max_chunk, options.max_upload_bytes), work
    )
    if result.received == 0:
        raise InvalidInputError("the upload body holds no chunk")
    return ChunkUploadOut(received=result.received, stored=result.stored, bytes_stored=result.bytes_stored)


@router.get(
    "/models/{model:path}", response_model=ModelOut, tags=["models"], summary="A model and its aliases"
)
def show_model(model: str, vault: VaultDep, who: CallerDep) -> ModelOut:
    check_model_name(model)
    who.require(model, Level.READ, "show")
    return ModelOut.of(vault.model(model), model in who.access.public_models())
