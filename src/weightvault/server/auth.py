"""Who is calling and what they may do: bearer tokens, OAuth2 client credentials, checks, audit.

Every route takes a :class:`Caller` (``Depends(caller)``) and asks it before touching the vault:
``require(model, Level.WRITE, "push")``. A denial is audited and answered without revealing
more than the caller may see: a model the caller may not read is "not found" to them.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from urllib.parse import unquote

from fastapi import Depends, Request
from fastapi.openapi.models import OAuthFlowClientCredentials, OAuthFlows
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer, OAuth2

from weightvault.core.access import ANONYMOUS, SCOPES, Identity, Level
from weightvault.core.errors import (
    AccessDeniedError,
    AuthenticationError,
    InvalidInputError,
    ModelNotFoundError,
)
from weightvault.registry.access import AccessStore

TOKEN_URL = "/api/v1/oauth/token"
#: lifetime of an access token issued by the client-credentials endpoint
OAUTH_TOKEN_TTL = timedelta(hours=1)

bearer = HTTPBearer(auto_error=False, description="An API token (`weightvault token create`).")
oauth2 = OAuth2(
    flows=OAuthFlows(
        clientCredentials=OAuthFlowClientCredentials(tokenUrl=TOKEN_URL, scopes=dict.fromkeys(SCOPES, ""))
    ),
    auto_error=False,
    description="Client credentials: client_id = principal, client_secret = one of its API tokens.",
)


def source_of(request: Request) -> str:
    return request.client.host if request.client else ""


@dataclass
class Caller:
    identity: Identity
    source: str
    access: AccessStore
    _levels: Callable[[str], Level] | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.identity.name

    def level(self, model: str) -> Level:
        if self._levels is None:
            self._levels = self.access.level_function(self.identity)
        return self._levels(model)

    def audit(
        self,
        action: str,
        outcome: str = "ok",
        *,
        model: str | None = None,
        version: str | None = None,
        detail: str = "",
    ) -> None:
        self.access.audit(
            self.name, action, outcome, model=model, version=version, source=self.source, detail=detail
        )

    def deny(self, action: str, model: str | None, version: str | None, why: str) -> None:
        self.audit(action, "denied", model=model, version=version, detail=why)

    def require(self, model: str, need: Level, action: str, version: str | None = None) -> None:
        have = self.level(model)
        if have >= need:
            return
        self.deny(action, model, version, f"needs {need.name.lower()}, has {have.name.lower()}")
        if self.identity.principal is None:
            raise AuthenticationError(
                "authentication required: send an API token as 'Authorization: Bearer …'"
            )
        if have == Level.NONE and need == Level.READ:  # same answer whether or not the model exists
            raise ModelNotFoundError(f"model {model!r} not found")
        raise AccessDeniedError(f"{self.name} may not {action} on {model} (needs {need.name.lower()} access)")

    def require_admin(self, action: str) -> None:
        if self.identity.is_admin and self.identity.scope >= Level.ADMIN:
            return
        self.deny(action, None, None, "needs a global administrator with an admin-scope token")
        if self.identity.principal is None:
            raise AuthenticationError(
                "authentication required: send an API token as 'Authorization: Bearer …'"
            )
        raise AccessDeniedError(f"{action} needs a global administrator with an admin-scope token")


def caller(
    request: Request,
    credentials: HTTPAuthorizationCredentials | None = Depends(bearer),
    _oauth: str | None = Depends(oauth2),  # documents the OAuth2 scheme; the same header is read above
) -> Caller:
    access: AccessStore = request.app.state.access
    source = source_of(request)
    if credentials is None:
        header = request.headers.get("authorization")
        if header:  # present but not "Bearer <token>"
            access.audit(
                "anonymous", "auth", "denied", source=source, detail="malformed Authorization header"
            )
            raise AuthenticationError("the Authorization header must be 'Bearer <token>'")
        return Caller(ANONYMOUS, source, access)
    try:
        identity = access.authenticate(credentials.credentials)
    except AuthenticationError as exc:
        access.audit("anonymous", "auth", "denied", source=source, detail=str(exc))
        raise
    return Caller(identity, source, access)


def client_credentials(request: Request, form: dict[str, str]) -> tuple[str, str]:
    """client_id and client_secret from the form body or HTTP Basic (Swagger UI sends either)."""
    header = request.headers.get("authorization", "")
    if header.lower().startswith("basic "):
        try:
            decoded = base64.b64decode(header[6:], validate=True).decode()
        except (ValueError, UnicodeDecodeError):
            raise AuthenticationError("malformed Basic credentials") from None
        cid, sep, secret = decoded.partition(":")
        if not sep:
            raise AuthenticationError("malformed Basic credentials")
        return unquote(cid), unquote(secret)
    form_id, form_secret = form.get("client_id"), form.get("client_secret")
    if not form_id or not form_secret:
        raise InvalidInputError("client_id and client_secret are required")
    return form_id, form_secret
