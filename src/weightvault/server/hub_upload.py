"""Uploads through the Hub client's non-Xet path: create_repo, preupload, LFS batch (basic
transfer), the LFS PUT, and the ndjson commit; each commit becomes a new version.

A commit is applied to a branch as on the Hub: the branch's version, minus deleted files, plus
added ones. ``main`` moves by being the latest version (or by moving the alias ``main`` when one
exists); any other branch is an alias, moved to the new version, and since that version is now
the latest, an alias ``main`` is first set where ``main`` was, so ``main`` does not move.
Files are always uploaded as LFS objects (the client sends empty files inline). The client sends
the LFS PUT without its token, so the batch answer carries a short-lived write token of the
caller in the upload URL. Each stored upload is audited (``hub.upload``); a commit may name by
SHA-256 only files of the model's own versions or files uploaded to it, never another model's.
Encrypted models and ``compression: float`` vaults take whole files instead (``hub_files``): an
upload waits on the server's disk for the commit that names its path, then is stored exactly as
an embedded push of that file stores it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from weightvault.core.access import Level
from weightvault.core.errors import (
    AuthenticationError,
    InvalidInputError,
    RevisionNotFoundError,
    WeightvaultError,
)
from weightvault.core.manifest import FileRecipe
from weightvault.core.names import check_label, check_model_name, check_relative_path
from weightvault.core.revision import Ref
from weightvault.server import hub_files
from weightvault.server.auth import Caller, source_of
from weightvault.server.hub_api import (
    DEFAULT_BRANCH,
    CallerDep,
    HubError,
    RepoDep,
    VaultDep,
    routes,
    translate,
)
from weightvault.server.upload_sessions import UploadSessions
from weightvault.vault import file_ingest
from weightvault.vault.file_ingest import AnnouncedFile
from weightvault.vault.ingest import UploadedFile
from weightvault.vault.vault import Vault

LFS_PREFIX = "/api/hub-lfs/"
UPLOAD_TOKEN_TTL = timedelta(hours=1)
#: how long an uploaded file may wait for the commit that names it
UPLOAD_WINDOW = timedelta(days=1)
LFS_JSON = "application/vnd.git-lfs+json"


def _guard(who: Caller, fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except HubError:
        raise
    except WeightvaultError as exc:
        raise translate(exc, who) from None


def _model_exists(vault: Vault, model: str) -> bool:
    return model in vault.index.list_model_names()


def _endpoint(request: Request) -> str:
    return str(request.base_url).rstrip("/")


@routes("GET", "/api/models/{repo}/xet-{kind}-token/{rev:path}")
def xet_token(kind: str, rev: str, model: RepoDep) -> Any:
    """Xet is never advertised; a client that tries it anyway (uploads, unless Xet is disabled)
    is told what to do instead of getting a bare 404."""
    raise HubError(
        501, None, f"this vault does not speak Xet ({model}): set HF_HUB_DISABLE_XET=1 to upload over LFS"
    )


# ---- create_repo --------------------------------------------------------------------------------


@routes("POST", "/api/repos/create")
async def create_repo(request: Request, vault: VaultDep, who: CallerDep) -> Any:
    """Repos need no creation: a model exists from its first version. This checks the caller
    may write there and answers 409 for an existing one, as the Hub does."""
    body = await request.json()
    if not isinstance(body, dict) or not isinstance(body.get("name"), str):
        raise HubError(400, None, "the body needs a repo name")
    if body.get("type", "model") not in (None, "model"):
        raise HubError(400, None, "this vault holds model repos only")
    if body.get("visibility") == "public" or body.get("private") is False:
        raise HubError(400, None, "models are private; an administrator makes one public (access public)")
    org = body.get("organization")
    model = f"{org}/{body['name']}" if org else str(body["name"])

    def check() -> Any:
        who.require(model, Level.WRITE, "hub.create")
        if _model_exists(vault, model):
            raise HubError(409, None, f"You already created this model repo: {model}")
        return {"url": f"{_endpoint(request)}/{model}", "name": model, "id": model}

    return await run_in_threadpool(_guard, who, lambda: check_model_name(model) and check())


# ---- preupload and LFS batch --------------------------------------------------------------------


def _known_here(vault: Vault, who: Caller, model: str, whole_files: bool) -> set[str]:
    """SHA-256s a commit to ``model`` may name: its versions' files and recent uploads to it that
    the vault holds (for a model it ingests itself: holds for this model, keyed as it needs)."""
    in_versions: dict[str, int] = {}
    if _model_exists(vault, model):
        for v in vault.list_versions(model):
            in_versions.update((f.sha256, f.size) for f in vault.show(Ref(model, v.commit)).files)
    since = datetime.now(UTC) - UPLOAD_WINDOW
    uploaded: dict[str, int] = {}
    for e in who.access.audit_log(model=model, since=since, limit=100_000):
        if e.action == "hub.upload" and e.outcome == "ok":
            sha, _, rest = e.detail.partition(" ")
            size = rest.split(" ", 1)[0]
            if size.isdigit():
                uploaded[sha] = int(size)
    if whole_files:
        return hub_files.held(vault, model, {**uploaded, **in_versions})
    known = set(in_versions)
    known.update(sha for sha in set(uploaded) - known if vault.file_present(sha))
    return known


def _branch_head(vault: Vault, model: str, rev: str) -> tuple[str | None, dict[str, str]]:
    """(commit, {path: sha256}) of the branch a commit goes to; (None, {}) for a new repo's main."""
    check_label(rev, "revision")
    if not _model_exists(vault, model):
        if rev != DEFAULT_BRANCH:
            raise RevisionNotFoundError(f"{model} has no branch {rev!r}")
        return None, {}
    aliases = vault.model(model).aliases
    if rev in aliases:
        info = vault.show(Ref(model, rev))
    elif rev == DEFAULT_BRANCH:
        try:
            info = vault.show(Ref(model))
        except RevisionNotFoundError:
            return None, {}
    else:
        raise RevisionNotFoundError(f"{model} has no branch {rev!r} (commit to main or an alias)")
    return info.commit, {f.path: f.sha256 for f in info.files}


@routes("POST", "/api/models/{repo}/preupload/{rev}")
async def preupload(rev: str, request: Request, model: RepoDep, vault: VaultDep, who: CallerDep) -> Any:
    body = await request.json()
    files = body.get("files") if isinstance(body, dict) else None
    if not isinstance(files, list) or not all(
        isinstance(f, dict) and isinstance(f.get("path"), str) for f in files
    ):
        raise HubError(400, None, "the body needs a list of files with paths")

    def answer() -> Any:
        who.require(model, Level.WRITE, "hub.preupload", rev)
        _, head = _branch_head(vault, model, rev)
        out = []
        for f in files:
            check_relative_path(f["path"])
            out.append(
                {"path": f["path"], "uploadMode": "lfs", "shouldIgnore": False, "oid": head.get(f["path"])}
            )
        return {"files": out, "commitOid": None}

    return await run_in_threadpool(_guard, who, answer)


def _lfs_upload_path(model: str, oid: str) -> str:
    return f"{LFS_PREFIX}{model}/{oid}"


@routes("POST", "/{repo}.git/info/lfs/objects/batch")
async def lfs_batch(request: Request, model: RepoDep, vault: VaultDep, who: CallerDep) -> Any:
    sessions: UploadSessions = request.app.state.uploads
    body = await request.json()
    objects = body.get("objects") if isinstance(body, dict) else None
    if body.get("operation") != "upload" or not isinstance(objects, list):
        raise HubError(400, None, "this endpoint takes LFS uploads (operation 'upload' with objects)")
    if body.get("hash_algo", "sha256") != "sha256" or "basic" not in body.get("transfers", ["basic"]):
        raise HubError(400, None, "only the basic transfer of SHA-256 objects is offered")
    for o in objects:
        if not (isinstance(o, dict) and isinstance(o.get("oid"), str) and isinstance(o.get("size"), int)):
            raise HubError(400, None, "each object needs an oid and a size")

    def answer() -> Any:
        who.require(model, Level.WRITE, "hub.upload")
        whole_files = file_ingest.needs_files(vault, model)
        if whole_files:
            file_ingest.prepare(vault, model)  # a key problem stops the upload before any byte
        principal = who.identity.principal
        assert principal is not None  # anonymous callers never have write access
        known = _known_here(vault, who, model, whole_files)
        if whole_files:
            known.update(o["oid"] for o in objects if hub_files.pending(sessions, model, o["oid"]))
        token: str | None = None
        out: list[dict[str, Any]] = []
        for o in objects:
            item: dict[str, Any] = {"oid": o["oid"], "size": o["size"], "authenticated": True}
            if o["oid"] not in known:
                if token is None:
                    token = who.access.create_token(
                        principal,
                        "write",
                        expires_in=UPLOAD_TOKEN_TTL,
                        kind="oauth",
                        description=f"hub lfs upload to {model}"[:200],
                    ).token
                href = (
                    f"{_endpoint(request)}{_lfs_upload_path(model, o['oid'])}?size={o['size']}&token={token}"
                )
                item["actions"] = {
                    "upload": {"href": href, "expires_in": int(UPLOAD_TOKEN_TTL.total_seconds())}
                }
            out.append(item)
        return {"transfer": "basic", "objects": out, "hash_algo": "sha256"}

    result = await run_in_threadpool(_guard, who, answer)
    return JSONResponse(result, media_type=LFS_JSON)


@routes("PUT", LFS_PREFIX + "{repo}/{oid}")
async def lfs_put(oid: str, size: int, token: str, request: Request, model: RepoDep, vault: VaultDep) -> Any:
    """The body of one LFS object: chunked and checked against its SHA-256 as it streams in
    (for a model the server ingests itself: spooled, checked, and kept for its commit)."""
    access = request.app.state.access
    try:
        identity = await run_in_threadpool(access.authenticate, token)
    except AuthenticationError:
        raise HubError(401, None, "the upload URL has expired; ask the LFS batch endpoint again") from None
    who = Caller(identity, source_of(request), access)
    await run_in_threadpool(_guard, who, who.require, model, Level.WRITE, "hub.upload")

    async def pieces() -> AsyncIterator[bytes]:
        async for piece in request.stream():
            if piece:
                yield piece

    def work(items: Iterator[bytes]) -> FileRecipe:
        return vault.put_file(model, items, oid, size)

    try:
        if await run_in_threadpool(file_ingest.needs_files, vault, model):
            principal = who.identity.principal or ""
            await hub_files.receive(request.app.state.uploads, pieces(), model, oid, size, principal)
        else:
            await request.app.state.bridge.consume(pieces(), work)
    except WeightvaultError as exc:
        who.audit("hub.upload", "failed", model=model, detail=f"{oid} {exc}"[:500])
        raise translate(exc, who) from None
    await run_in_threadpool(lambda: who.audit("hub.upload", model=model, detail=f"{oid} {size} bytes"))
    return JSONResponse({}, status_code=200)


@routes("POST", "/api/models/{repo}/branch/{branch}")
async def create_branch(
    branch: str, request: Request, model: RepoDep, vault: VaultDep, who: CallerDep
) -> Any:
    """A branch is an alias: made at ``startingPoint`` (default: what ``main`` is)."""
    raw = await request.body()
    body = json.loads(raw) if raw.strip() else {}
    start = body.get("startingPoint") if isinstance(body, dict) else None

    def make() -> Any:
        check_label(branch, "alias")
        who.require(model, Level.WRITE, "alias.set", branch)
        if branch in who.access.protected_aliases(model):
            who.require(model, Level.ADMIN, "alias.set", branch)
        if branch == DEFAULT_BRANCH or branch in vault.model(model).aliases:
            raise HubError(409, None, f"branch {branch} already exists in {model}")
        head, _ = _branch_head(vault, model, DEFAULT_BRANCH)
        target = str(start) if start else head
        if target is None:
            raise RevisionNotFoundError(f"{model} has no version to start a branch at")
        info = vault.set_alias(model, branch, target)
        who.audit("alias.set", model=model, version=branch, detail=f"-> {info.label} (hub branch)")
        return {}

    return await run_in_threadpool(_guard, who, make)


# ---- commit -------------------------------------------------------------------------------------


def _parse_commit(raw: bytes) -> tuple[dict[str, Any], list[tuple[str, dict[str, Any]]]]:
    header: dict[str, Any] | None = None
    ops: list[tuple[str, dict[str, Any]]] = []
    for line in raw.splitlines():
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError:
            raise InvalidInputError("the commit body is not ndjson") from None
        if not isinstance(item, dict) or not isinstance(item.get("value"), dict):
            raise InvalidInputError("each commit line needs a key and a value")
        if item.get("key") == "header":
            header = item["value"]
        else:
            ops.append((str(item.get("key")), item["value"]))
    if header is None:
        raise InvalidInputError("the commit has no header line")
    return header, ops


@routes("POST", "/api/models/{repo}/commit/{rev}")
async def commit(rev: str, request: Request, model: RepoDep, vault: VaultDep, who: CallerDep) -> Any:
    raw = await request.body()
    if request.query_params.get("create_pr") in ("1", "true"):
        raise HubError(400, None, "pull requests are not supported; commit to a branch")

    sessions: UploadSessions = request.app.state.uploads

    def apply() -> Any:
        who.require(model, Level.WRITE, "push", rev)
        whole_files = file_ingest.needs_files(vault, model)
        header, ops = _parse_commit(raw)
        head, files = _branch_head(vault, model, rev)
        moves_alias = rev != DEFAULT_BRANCH or (
            head is not None and DEFAULT_BRANCH in vault.model(model).aliases
        )
        if moves_alias and rev in who.access.protected_aliases(model):
            who.require(model, Level.ADMIN, "alias.set", rev)
        parent = header.get("parentCommit")
        if parent is not None and parent != head:
            raise HubError(412, None, f"the branch {rev} is at {head}, not at the parent commit {parent}")
        known: set[str] | None = None
        added: dict[str, FileRecipe] = {}
        to_ingest: dict[str, str] = {}  # path -> SHA-256 of a pending object (whole-file models)
        for key, value in ops:
            path = check_relative_path(str(value.get("path", "")).strip("/"))
            if key == "file":
                if value.get("encoding", "base64") != "base64":
                    raise InvalidInputError(f"{path}: inline files are sent base64-encoded")
                try:
                    data = base64.b64decode(str(value.get("content", "")), validate=True)
                except binascii.Error:
                    raise InvalidInputError(f"{path}: its content is not base64") from None
                if whole_files:
                    sha = to_ingest[path] = hub_files.spool_inline(sessions, model, data)
                else:
                    sha = hashlib.sha256(data).hexdigest()
                    added[path] = vault.put_file(model, [data], sha, len(data))
                files[path] = sha
            elif key == "lfsFile":
                oid = str(value.get("oid", ""))
                added.pop(path, None)
                to_ingest.pop(path, None)
                if whole_files and hub_files.pending(sessions, model, oid) is not None:
                    to_ingest[path] = oid
                else:
                    if known is None:
                        known = _known_here(vault, who, model, whole_files)
                    if oid not in known:
                        raise InvalidInputError(
                            f"{path}: no upload of {oid[:16]}… to {model}; upload it first"
                        )
                files[path] = oid
            elif key == "deletedFile":
                if files.pop(path, None) is None:
                    raise HubError(404, "EntryNotFound", f"{path} is not in {model}@{rev}")
                added.pop(path, None)
                to_ingest.pop(path, None)
            elif key == "deletedFolder":
                gone = [p for p in files if p.startswith(path + "/")]
                if not gone:
                    raise HubError(404, "EntryNotFound", f"no folder {path} in {model}@{rev}")
                for p in gone:
                    files.pop(p)
                    added.pop(p, None)
                    to_ingest.pop(p, None)
            else:
                raise InvalidInputError(f"unsupported commit operation {key!r}")
        for p, sha in to_ingest.items():  # now that their paths are known: stored as a push stores them
            if hub_files.ingest_pending(vault, sessions, model, p, sha) is not None:
                continue
            if known is None:  # a concurrent commit stored it first
                known = _known_here(vault, who, model, whole_files)
            if sha not in known:
                raise InvalidInputError(f"{p}: no upload of {sha[:16]}… to {model}; upload it first")
        if whole_files:
            announced = [
                AnnouncedFile(p, vault.file_recipe(model, sha).size, sha) for p, sha in files.items()
            ]
        else:
            uploaded = [
                UploadedFile(p, added[p] if p in added else vault.file_recipe(model, sha))
                for p, sha in files.items()
            ]
        message = "\n\n".join(x for x in (header.get("summary"), header.get("description")) if x)
        if rev != DEFAULT_BRANCH and DEFAULT_BRANCH not in vault.model(model).aliases:
            pin = vault.resolve(Ref(model)).label  # the new version will be the latest
            vault.set_alias(model, DEFAULT_BRANCH, pin)
            who.audit(
                "alias.set", model=model, version=DEFAULT_BRANCH, detail=f"-> {pin} (hub branch commit)"
            )
        if whole_files:
            result = file_ingest.commit(vault, model, announced, message=str(message)[:10_000], parent=head)
        else:
            result = vault.commit_upload(model, uploaded, message=str(message)[:10_000], parent=head)
        info = result.version
        if moves_alias:
            vault.set_alias(model, rev, info.label)
        who.audit("push", model=model, version=info.label, detail=f"hub commit to {rev}, {len(files)} files")
        return {
            "commitUrl": f"{_endpoint(request)}/{model}/commit/{info.commit}",
            "commitOid": info.commit,
            "pullRequestUrl": None,
            "success": True,
        }

    return await run_in_threadpool(_guard, who, apply)
