"""REST v1: tokens (and the OAuth2 client-credentials endpoint), grants, model policies,
protected aliases, the audit log, verify and gc."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from weightvault.core.access import SCOPES, Level, check_scope
from weightvault.core.errors import AccessDeniedError, AuthenticationError, InvalidInputError
from weightvault.core.names import check_label, check_model_name
from weightvault.core.revision import Ref
from weightvault.server.api_models import CallerDep, Limit, Offset, VaultDep
from weightvault.server.auth import OAUTH_TOKEN_TTL, TOKEN_URL, Caller, client_credentials, source_of
from weightvault.server.schemas import (
    AuditOut,
    GcOut,
    GcStatusOut,
    GrantIn,
    GrantOut,
    NewTokenOut,
    OAuthTokenOut,
    Page,
    PolicyIn,
    TokenIn,
    TokenOut,
    VerifyOut,
)

router = APIRouter()
API = "/api/v1"


@router.post(
    TOKEN_URL.removeprefix(API),
    response_model=OAuthTokenOut,
    tags=["access"],
    summary="OAuth2 client credentials: client_id = principal, client_secret = one of its API tokens",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/x-www-form-urlencoded": {
                    "schema": {
                        "type": "object",
                        "required": ["grant_type"],
                        "properties": {
                            "grant_type": {"type": "string", "enum": ["client_credentials"]},
                            "client_id": {"type": "string"},
                            "client_secret": {"type": "string"},
                            "scope": {"type": "string"},
                        },
                    }
                }
            },
        }
    },
)
async def oauth_token(request: Request) -> OAuthTokenOut:
    access = request.app.state.access
    raw = await request.form()
    form = {k: v for k, v in raw.items() if isinstance(v, str)}
    if form.get("grant_type") != "client_credentials":
        raise InvalidInputError("grant_type must be client_credentials")
    client_id, secret = client_credentials(request, form)
    from fastapi.concurrency import run_in_threadpool

    try:
        identity = await run_in_threadpool(access.authenticate, secret)
    except AuthenticationError:
        await run_in_threadpool(
            access.audit,
            client_id[:64],
            "oauth.token",
            "denied",
            source=source_of(request),
            detail="bad client credentials",
        )
        raise AuthenticationError("invalid client credentials") from None
    if identity.principal != client_id:
        raise AuthenticationError("invalid client credentials")
    wanted = [s for s in form.get("scope", "").split() if s]
    for s in wanted:
        check_scope(s)
    level = max((SCOPES[s] for s in wanted), default=identity.scope)
    if level > identity.scope:
        raise AccessDeniedError(f"the client may ask for at most scope {identity.scope.name.lower()}")
    scope = level.name.lower()
    new = await run_in_threadpool(
        lambda: access.create_token(
            client_id, scope, expires_in=OAUTH_TOKEN_TTL, kind="oauth", description="oauth client credentials"
        )
    )
    return OAuthTokenOut(
        access_token=new.token,
        token_type="bearer",
        expires_in=int(OAUTH_TOKEN_TTL.total_seconds()),
        scope=scope,
    )


@router.get(
    "/tokens", response_model=Page[TokenOut], tags=["access"], summary="Tokens (admins: all; others: own)"
)
def list_tokens(
    who: CallerDep,
    limit: Limit = 100,
    offset: Offset = 0,
    principal: Annotated[str | None, Query(max_length=64)] = None,
) -> Page[TokenOut]:
    if who.identity.principal is None:
        who.require_admin("token.list")
    if not (who.identity.is_admin and who.identity.scope >= Level.ADMIN):
        if principal not in (None, who.identity.principal):
            who.require_admin("token.list")
        principal = who.identity.principal
    tokens = who.access.list_tokens(principal)
    return Page[TokenOut](
        items=[TokenOut.of(t) for t in tokens[offset : offset + limit]],
        total=len(tokens),
        limit=limit,
        offset=offset,
    )


@router.post(
    "/tokens",
    response_model=NewTokenOut,
    status_code=201,
    tags=["access"],
    summary="Create a token (its secret is in this response only)",
)
def create_token(body: TokenIn, who: CallerDep) -> NewTokenOut:
    who.require_admin("token.create")
    new = who.access.create_token(
        body.principal,
        body.scope,
        expires_in=timedelta(seconds=body.expires_in_seconds) if body.expires_in_seconds else None,
        description=body.description,
        admin=body.admin,
        actor=who.name,
        source=who.source,
    )
    return NewTokenOut(token=new.token, **TokenOut.of(new.info).model_dump())


@router.delete("/tokens/{token_id}", response_model=TokenOut, tags=["access"], summary="Revoke a token")
def revoke_token(token_id: int, who: CallerDep) -> TokenOut:
    if token_id < 1 or token_id > 1 << 62:
        raise InvalidInputError("token ids are positive integers")
    if who.identity.principal is None:
        who.require_admin("token.revoke")
    own = who.access.token(token_id).principal == who.identity.principal
    if not own:
        who.require_admin("token.revoke")
    return TokenOut.of(who.access.revoke_token(token_id, actor=who.name, source=who.source))


@router.get("/grants", response_model=Page[GrantOut], tags=["access"], summary="Grants")
def list_grants(
    who: CallerDep,
    limit: Limit = 100,
    offset: Offset = 0,
    principal: Annotated[str | None, Query(max_length=64)] = None,
) -> Page[GrantOut]:
    who.require_admin("grant.list")
    grants = who.access.grants(principal)
    return Page[GrantOut](
        items=[GrantOut.of(g) for g in grants[offset : offset + limit]],
        total=len(grants),
        limit=limit,
        offset=offset,
    )


@router.post(
    "/grants", response_model=GrantOut, status_code=201, tags=["access"], summary="Add or change a grant"
)
def add_grant(body: GrantIn, who: CallerDep) -> GrantOut:
    who.require_admin("grant.add")
    return GrantOut.of(
        who.access.add_grant(body.principal, body.pattern, body.role, actor=who.name, source=who.source)
    )


@router.delete("/grants", status_code=204, tags=["access"], summary="Remove a grant")
def remove_grant(
    who: CallerDep,
    principal: Annotated[str, Query(min_length=1, max_length=64)],
    pattern: Annotated[str, Query(min_length=1, max_length=100)],
) -> Response:
    who.require_admin("grant.remove")
    who.access.remove_grant(principal, pattern, actor=who.name, source=who.source)
    return Response(status_code=204)


@router.put(
    "/models/{model:path}/-/policy",
    response_model=PolicyIn,
    tags=["access"],
    summary="Public read on or off (model admins)",
)
def set_policy(model: str, body: PolicyIn, who: CallerDep) -> PolicyIn:
    check_model_name(model)
    who.require(model, Level.ADMIN, "policy")
    who.access.set_public(model, body.public_read, actor=who.name, source=who.source)
    return body


@router.get(
    "/models/{model:path}/-/protected-aliases",
    response_model=list[str],
    tags=["access"],
    summary="Aliases only model admins may move",
)
def list_protected(model: str, who: CallerDep) -> list[str]:
    check_model_name(model)
    who.require(model, Level.READ, "list")
    return sorted(who.access.protected_aliases(model))


@router.put(
    "/models/{model:path}/-/protected-aliases/{alias}",
    status_code=204,
    tags=["access"],
    summary="Protect an alias",
)
def protect(model: str, alias: str, who: CallerDep) -> Response:
    return _set_protected(who, model, alias, True)


@router.delete(
    "/models/{model:path}/-/protected-aliases/{alias}",
    status_code=204,
    tags=["access"],
    summary="Lift an alias's protection",
)
def unprotect(model: str, alias: str, who: CallerDep) -> Response:
    return _set_protected(who, model, alias, False)


def _set_protected(who: Caller, model: str, alias: str, on: bool) -> Response:
    """Both directions of an alias's protection: model admins only, each audited by its own name."""
    check_model_name(model)
    check_label(alias, "alias")
    who.require(model, Level.ADMIN, "alias.protect" if on else "alias.unprotect", alias)
    who.access.protect_alias(model, alias, on, actor=who.name, source=who.source)
    return Response(status_code=204)


@router.get(
    "/audit",
    response_model=Page[AuditOut],
    tags=["access"],
    summary="The audit log, newest first (admins; model admins for their model)",
)
def audit_log(
    who: CallerDep,
    limit: Limit = 100,
    offset: Offset = 0,
    model: Annotated[str | None, Query(max_length=100)] = None,
    since: Annotated[datetime | None, Query()] = None,
    principal: Annotated[str | None, Query(max_length=64)] = None,
) -> Page[AuditOut]:
    if model is not None and "*" not in model:
        check_model_name(model)
        who.require(model, Level.ADMIN, "audit")
    else:
        who.require_admin("audit")
    entries = who.access.audit_log(model=model, since=since, principal=principal, limit=limit, offset=offset)
    return Page[AuditOut](
        items=[AuditOut.of(e) for e in entries], total=offset + len(entries), limit=limit, offset=offset
    )


@router.post(
    "/verify",
    response_model=VerifyOut,
    tags=["maintenance"],
    summary="Check a version (readers) or the whole vault (admins)",
)
def verify(
    vault: VaultDep,
    who: CallerDep,
    model: Annotated[str | None, Query(max_length=96)] = None,
    rev: Annotated[str | None, Query(max_length=128)] = None,
    read_data: bool = False,
) -> VerifyOut:
    ref: Ref | None = None
    if model is not None:
        check_model_name(model)
        if rev is not None:
            check_label(rev, "revision")
        who.require(model, Level.READ, "verify", rev)
        ref = Ref(model, rev)
    else:
        if rev is not None:
            raise InvalidInputError("rev needs model")
        who.require_admin("verify")
    return VerifyOut(**vault.verify(ref, read_data=read_data).to_json())


@router.get("/gc", response_model=GcStatusOut, tags=["maintenance"], summary="What gc would work on")
def gc_status(vault: VaultDep, who: CallerDep) -> GcStatusOut:
    who.require_admin("gc.status")
    s = vault.gc_status()
    return GcStatusOut(**{k: s[k] for k in GcStatusOut.model_fields})


@router.post("/gc", response_model=GcOut, tags=["maintenance"], summary="Run gc (grace period as configured)")
def run_gc(
    vault: VaultDep,
    who: CallerDep,
    dry_run: Annotated[bool, Query(description="only say what would be deleted")] = False,
    force: Annotated[bool, Query(description="delete even while some objects cannot be parsed")] = False,
) -> GcOut:
    who.require_admin("gc")
    report = vault.gc(dry_run=dry_run, force=force)
    what = "gc --dry-run" if dry_run else "gc --force" if force else "gc"
    who.audit(what, detail=f"{report.packs_deleted} packs, {report.bytes_freed} bytes")
    return GcOut(**report.to_json())
