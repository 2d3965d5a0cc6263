"""The Hugging Face Hub's HTTP API over the vault, so the unmodified ``huggingface_hub`` client
(and ``transformers``, which uses it) reads from and writes to the vault with ``HF_ENDPOINT``.

Mapping: a model is a repo; versions are commits (their 40-hex commit ids); aliases are branches
and version labels are tags; ``main`` is the alias ``main`` when there is one, else the latest
version. Every file is presented as an LFS file whose oid is its SHA-256 (the vault keeps no git
blob ids), so the client's ETag checks use the SHA-256 the vault verifies. Errors carry the Hub's
``X-Error-Code`` so the client raises its usual exceptions. Xet is never advertised: the client
then uses plain HTTP downloads and, with ``HF_HUB_DISABLE_XET=1``, the LFS upload path
(``hub_upload``).

Routes exist for ``name`` and ``namespace/name`` repos (a repo id has at most one slash).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials

from weightvault.core.access import Level
from weightvault.core.errors import (
    AccessDeniedError,
    AuthenticationError,
    InvalidInputError,
    ModelNotFoundError,
    NotFoundError,
    RevisionNotFoundError,
    WeightvaultError,
    http_status_for,
)
from weightvault.core.headers import CHECKSUM_SHA256
from weightvault.core.manifest import FileEntry
from weightvault.core.names import check_label, check_model_name, check_relative_path
from weightvault.core.revision import Ref
from weightvault.core.types import VersionInfo
from weightvault.server.auth import Caller, bearer, caller
from weightvault.server.transfer import file_body, parse_range
from weightvault.vault.stream import FileStream
from weightvault.vault.vault import Vault

router = APIRouter(include_in_schema=False)
#: entries per page of a tree listing (the Hub's own cap); ``?limit=`` asks for fewer
TREE_PAGE = 1000
DEFAULT_BRANCH = "main"
INVALID_CREDENTIALS = "Invalid credentials in Authorization header"


class HubError(Exception):
    """An error answered the Hub's way: status, ``X-Error-Code`` and ``X-Error-Message``."""

    def __init__(self, status: int, code: str | None, message: str, commit: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.commit = commit

    def response(self) -> JSONResponse:
        headers = {"X-Error-Message": _header_text(self.message)}
        if self.code:
            headers["X-Error-Code"] = self.code
        if self.commit:
            headers["X-Repo-Commit"] = self.commit
        if self.status == 401:
            headers["WWW-Authenticate"] = "Bearer"
        return JSONResponse({"error": self.message}, status_code=self.status, headers=headers)


def _header_text(text: str) -> str:
    return text.encode("ascii", "replace").decode().replace("\r", " ").replace("\n", " ")[:500]


def translate(exc: WeightvaultError, who: Caller | None, commit: str | None = None) -> HubError:
    """A vault error as the Hub would signal it (the client maps these codes to its exceptions)."""
    anonymous = who is None or who.identity.principal is None
    if isinstance(exc, AuthenticationError):
        if anonymous:  # the Hub answers 401 RepoNotFound to a missing token on a private repo
            return HubError(401, "RepoNotFound", str(exc))
        return HubError(401, None, INVALID_CREDENTIALS)
    if isinstance(exc, ModelNotFoundError):
        return HubError(401 if anonymous else 404, "RepoNotFound", str(exc))
    if isinstance(exc, RevisionNotFoundError):
        return HubError(404, "RevisionNotFound", str(exc))
    if isinstance(exc, NotFoundError):
        return HubError(404, "EntryNotFound", str(exc), commit)
    if isinstance(exc, AccessDeniedError):
        return HubError(403, None, str(exc))
    return HubError(http_status_for(exc), None, str(exc))


def hub_caller(
    request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)
) -> Caller:
    """The server's caller, with authentication failures answered the Hub's way."""
    try:
        return caller(request, credentials, None)
    except AuthenticationError:
        raise HubError(401, None, INVALID_CREDENTIALS) from None


def repo_of(request: Request) -> str:
    params = request.path_params
    repo = f"{params['ns']}/{params['name']}" if "ns" in params else str(params["name"])
    try:
        return check_model_name(repo)
    except InvalidInputError as exc:
        raise HubError(404, "RepoNotFound", str(exc)) from None


def vault_of(request: Request) -> Vault:
    return request.app.state.vault  # type: ignore[no-any-return]


CallerDep = Annotated[Caller, Depends(hub_caller)]
RepoDep = Annotated[str, Depends(repo_of)]
VaultDep = Annotated[Vault, Depends(vault_of)]


def routes(method: str, template: str, **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register one endpoint for ``{repo}`` = ``ns/name`` and ``{repo}`` = ``name``."""

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        for repo in ("{ns}/{name}", "{name}"):
            router.add_api_route(template.replace("{repo}", repo), fn, methods=[method], **kwargs)
        return fn

    return register


# ---- revisions ----------------------------------------------------------------------------------


def resolve(vault: Vault, who: Caller, model: str, rev: str, action: str) -> VersionInfo:
    """The version ``rev`` names for the Hub: an alias, a label or a commit id; ``main`` is the
    alias or label ``main`` when there is one, else the latest version."""
    try:
        who.require(model, Level.READ, action, rev)
        try:
            check_label(rev, "revision")
        except InvalidInputError:
            raise RevisionNotFoundError(f"revision {rev!r} of {model} not found") from None
        try:
            return vault.show(Ref(model, rev))
        except RevisionNotFoundError:
            if rev != DEFAULT_BRANCH:
                raise
            return vault.show(Ref(model))
    except WeightvaultError as exc:
        raise translate(exc, who) from None


def _lfs(f: FileEntry) -> dict[str, Any]:
    pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{f.sha256}\nsize {f.size}\n"
    return {"oid": f.sha256, "size": f.size, "pointerSize": len(pointer)}


def _oid(f: FileEntry) -> str:
    """Stands in for the git blob id the vault does not keep (derived from the SHA-256)."""
    return f.sha256[:40]


def _tree_oid(commit: str, path: str) -> str:
    return hashlib.sha1(f"tree\0{commit}\0{path}".encode(), usedforsecurity=False).hexdigest()


_PICKLE_SAFETY = {"safe": "innocuous", "unknown": "suspicious", "dangerous": "dangerous"}
_LEVEL = {"safe": "safe", "unknown": "caution", "dangerous": "danger"}


def _pickle_scan(record: dict[str, Any]) -> dict[str, Any]:
    return {
        "highestSafetyLevel": _PICKLE_SAFETY.get(record.get("verdict", ""), "suspicious"),
        "imports": [
            {"module": m, "name": n, "safety": _PICKLE_SAFETY.get(v, "suspicious")}
            for m, n, v in record.get("globals", [])
        ],
    }


def security_status(info: VersionInfo) -> dict[str, Any]:
    """The Hub's ``securityRepoStatus`` from the pickle findings kept in the manifest."""
    issues = [
        {
            "path": path,
            "level": _LEVEL.get(rec.get("verdict", ""), "caution"),
            "pickleImportScan": _pickle_scan(rec),
        }
        for path, rec in sorted(info.safety.items())
        if rec.get("verdict") != "safe"
    ]
    return {"scansDone": True, "filesWithIssues": issues}


def _file_security(info: VersionInfo, path: str) -> dict[str, Any]:
    rec = info.safety.get(path)
    if rec is None:
        return {"status": "safe", "avScan": None, "pickleImportScan": None}
    status = "safe" if rec.get("verdict") == "safe" else "unsafe"
    return {"status": status, "avScan": None, "pickleImportScan": _pickle_scan(rec)}


def _iso(info: VersionInfo) -> str:
    return info.created.isoformat().replace("+00:00", "Z")


# ---- repo and revision info ---------------------------------------------------------------------


def _info_body(request: Request, vault: Vault, who: Caller, model: str, info: VersionInfo) -> dict[str, Any]:
    params = request.query_params
    blobs = params.get("blobs", "").lower() in ("1", "true")
    siblings = []
    for f in info.files:
        sib: dict[str, Any] = {"rfilename": f.path}
        if blobs:
            sib.update(size=f.size, blobId=_oid(f), lfs={**_lfs(f), "sha256": f.sha256})
        siblings.append(sib)
    ns, _, _ = model.rpartition("/")
    body: dict[str, Any] = {
        "_id": info.commit[:24],
        "id": model,
        "modelId": model,
        "author": ns or None,
        "sha": info.commit,
        "lastModified": _iso(info),
        "createdAt": vault.index.model_created(model).isoformat().replace("+00:00", "Z"),
        "private": model not in who.access.public_models(),
        "gated": False,
        "disabled": False,
        "downloads": 0,
        "likes": 0,
        "tags": [],
        "siblings": siblings,
        "usedStorage": info.total_size,
    }
    if params.get("securityStatus", "").lower() in ("1", "true"):
        body["securityRepoStatus"] = security_status(info)
    return body


@routes("GET", "/api/models/{repo}/revision/{rev:path}")  # "refs/pr/1" arrives decoded
def revision_info(rev: str, request: Request, model: RepoDep, vault: VaultDep, who: CallerDep) -> Any:
    info = resolve(vault, who, model, rev, "show")
    return _info_body(request, vault, who, model, info)


@routes("GET", "/api/models/{repo}/refs")
def refs(model: RepoDep, vault: VaultDep, who: CallerDep) -> Any:
    """Aliases are branches (movable), version labels are tags; ``main`` always exists."""
    info = resolve(vault, who, model, DEFAULT_BRANCH, "list")
    versions = {v.label: v.commit for v in vault.list_versions(model)}
    aliases = vault.model(model).aliases
    branches = {DEFAULT_BRANCH: info.commit}
    branches.update({a: versions[label] for a, label in aliases.items() if label in versions})
    return {
        "branches": [
            {"name": n, "ref": f"refs/heads/{n}", "targetCommit": c} for n, c in sorted(branches.items())
        ],
        "converts": [],
        "tags": [
            {"name": n, "ref": f"refs/tags/{n}", "targetCommit": c} for n, c in sorted(versions.items())
        ],
        "pullRequests": [],
    }


# ---- tree listing -------------------------------------------------------------------------------


def _entries(info: VersionInfo, prefix: str, recursive: bool, expand: bool) -> list[dict[str, Any]]:
    """Files and folders under ``prefix`` (one level, or all below it), folders first per level
    as the Hub lists them."""
    base = f"{prefix}/" if prefix else ""
    folders: set[str] = set()
    files: list[dict[str, Any]] = []
    last = {"id": info.commit, "title": info.message or info.label, "date": _iso(info)}
    for f in info.files:
        if not f.path.startswith(base):
            continue
        rest = f.path[len(base) :]
        parts = rest.split("/")
        for i in range(1, len(parts) if recursive else min(len(parts), 2)):
            folders.add(base + "/".join(parts[:i]))
        if len(parts) > 1 and not recursive:
            continue
        entry: dict[str, Any] = {
            "type": "file",
            "oid": _oid(f),
            "size": f.size,
            "path": f.path,
            "lfs": _lfs(f),
        }
        if expand:
            entry["lastCommit"] = last
            entry["securityFileStatus"] = _file_security(info, f.path)
        files.append(entry)
    dirs: list[dict[str, Any]] = []
    for d in sorted(folders):
        entry = {"type": "directory", "oid": _tree_oid(info.commit, d), "size": 0, "path": d}
        if expand:
            entry["lastCommit"] = last
        dirs.append(entry)
    return sorted(dirs + files, key=lambda e: e["path"])


def _tree(
    request: Request, model: str, rev: str, path: str, vault: Vault, who: Caller, cursor: int, limit: int
) -> Any:
    info = resolve(vault, who, model, rev, "list")
    q = request.query_params
    recursive = q.get("recursive", "").lower() in ("1", "true")
    expand = q.get("expand", "").lower() in ("1", "true")
    prefix = path.strip("/")
    if prefix:
        try:
            check_relative_path(prefix)
        except InvalidInputError as exc:
            raise HubError(404, "EntryNotFound", str(exc), info.commit) from None
    entries = _entries(info, prefix, recursive, expand)
    if prefix and not entries:
        raise HubError(404, "EntryNotFound", f"{model}@{info.label} has no folder {prefix!r}", info.commit)
    page = entries[cursor : cursor + limit]
    headers = {"X-Repo-Commit": info.commit}
    if cursor + limit < len(entries):
        params = {k: v for k, v in q.items() if k != "cursor"}
        params["cursor"] = str(cursor + limit)
        nxt = request.url.replace(query=urlencode(params))
        headers["Link"] = f'<{nxt}>; rel="next"'
    return JSONResponse(page, headers=headers)


Cursor = Annotated[int, Query(ge=0, le=1 << 40)]
Limit = Annotated[int, Query(ge=1, le=TREE_PAGE)]


@routes("GET", "/api/models/{repo}/tree/{rev}/{path:path}")
def tree_path(
    rev: str,
    path: str,
    request: Request,
    model: RepoDep,
    vault: VaultDep,
    who: CallerDep,
    cursor: Cursor = 0,
    limit: Limit = TREE_PAGE,
) -> Any:
    return _tree(request, model, rev, path, vault, who, cursor, limit)


@routes("GET", "/api/models/{repo}/tree/{rev}")
def tree_root(
    rev: str,
    request: Request,
    model: RepoDep,
    vault: VaultDep,
    who: CallerDep,
    cursor: Cursor = 0,
    limit: Limit = TREE_PAGE,
) -> Any:
    return _tree(request, model, rev, "", vault, who, cursor, limit)


# registered after the routes above: "/api/models/{ns}/{name}" would also match "/api/models/m/refs"
@routes("GET", "/api/models/{repo}")
def repo_info(request: Request, model: RepoDep, vault: VaultDep, who: CallerDep) -> Any:
    info = resolve(vault, who, model, DEFAULT_BRANCH, "show")
    return _info_body(request, vault, who, model, info)


# ---- file downloads -----------------------------------------------------------------------------


def _open(vault: Vault, who: Caller, model: str, rev: str, path: str) -> tuple[VersionInfo, FileStream]:
    info = resolve(vault, who, model, rev, "pull")
    try:
        check_relative_path(path)
        return info, vault.open_file(Ref(model, info.commit), path, info=info)
    except WeightvaultError as exc:
        raise translate(exc, who, info.commit) from None


def _file_headers(info: VersionInfo, fs: FileStream) -> dict[str, str]:
    sha = fs.entry.sha256
    return {
        "Accept-Ranges": "bytes",
        "ETag": f'"{sha}"',
        "X-Linked-Etag": f'"{sha}"',
        "X-Linked-Size": str(fs.entry.size),
        "X-Repo-Commit": info.commit,
        CHECKSUM_SHA256: sha,
        "Content-Disposition": f"inline; filename*=UTF-8''{quote(fs.entry.path.rsplit('/', 1)[-1])}",
    }


@routes("HEAD", "/{repo}/resolve/{rev}/{path:path}")
def resolve_head(rev: str, path: str, model: RepoDep, vault: VaultDep, who: CallerDep) -> Response:
    info, fs = _open(vault, who, model, rev, path)
    headers = {**_file_headers(info, fs), "Content-Length": str(fs.entry.size)}
    return Response(headers=headers, media_type="application/octet-stream")


@routes("GET", "/{repo}/resolve/{rev}/{path:path}")
async def resolve_get(
    rev: str, path: str, request: Request, model: RepoDep, vault: VaultDep, who: CallerDep
) -> Response:
    info, fs = await run_in_threadpool(_open, vault, who, model, rev, path)
    size = fs.entry.size
    try:
        span = parse_range(request.headers.get("range"), size)
    except WeightvaultError as exc:
        raise HubError(416, None, str(exc)) from None
    start, stop = span if span is not None else (0, size)
    headers = {**_file_headers(info, fs), "Content-Length": str(stop - start)}
    if size == 0:
        return Response(b"", headers=headers, media_type="application/octet-stream")
    status = 200
    if span is not None:
        status = 206
        headers["Content-Range"] = f"bytes {start}-{stop - 1}/{size}"
    try:  # always checked per chunk: Hub clients do not check a file as they download it
        body = await file_body(request.app.state.bridge, request.app.state.metrics, fs, start, stop)
    except WeightvaultError as exc:
        raise translate(exc, who, info.commit) from None
    return StreamingResponse(body, status_code=status, headers=headers, media_type="application/octet-stream")
