"""The access store's methods over REST (``RemoteVault.access``), as the server's caller."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from weightvault.client import convert
from weightvault.client.http import Http
from weightvault.core.access import AuditEntry, GrantInfo, NewToken, TokenInfo
from weightvault.core.errors import InvalidInputError
from weightvault.core.names import check_label, check_model_name


class RemoteAccess:
    def __init__(self, http: Http) -> None:
        self._http = http

    def create_token(
        self,
        principal: str,
        scope: str = "read",
        *,
        expires_in: timedelta | None = None,
        description: str = "",
        admin: bool | None = None,
        **_ignored: Any,  # actor/source: the server records the caller itself
    ) -> NewToken:
        body = {
            "principal": principal,
            "scope": scope,
            "expires_in_seconds": int(expires_in.total_seconds()) if expires_in is not None else None,
            "description": description,
            "admin": admin,
        }
        d = self._http.json("POST", "/tokens", json=body)
        return NewToken(d["token"], convert.token(d))

    def list_tokens(self, principal: str | None = None) -> list[TokenInfo]:
        params = {"principal": principal} if principal else {}
        return [convert.token(d) for d in self._http.pages("/tokens", params)]

    def revoke_token(self, token_id: int, **_ignored: Any) -> TokenInfo:
        return convert.token(self._http.json("DELETE", f"/tokens/{int(token_id)}"))

    def add_grant(self, principal: str, pattern: str, role: str, **_ignored: Any) -> GrantInfo:
        body = {"principal": principal, "pattern": pattern, "role": role}
        return convert.grant(self._http.json("POST", "/grants", json=body))

    def remove_grant(self, principal: str, pattern: str, **_ignored: Any) -> None:
        self._http.json("DELETE", "/grants", params={"principal": principal, "pattern": pattern})

    def grants(self, principal: str | None = None) -> list[GrantInfo]:
        params = {"principal": principal} if principal else {}
        return [convert.grant(d) for d in self._http.pages("/grants", params)]

    def set_public(self, model: str, public: bool, **_ignored: Any) -> None:
        check_model_name(model)
        self._http.json("PUT", f"/models/{model}/-/policy", json={"public_read": public})

    def protect_alias(self, model: str, alias: str, protected: bool = True, **_ignored: Any) -> None:
        check_model_name(model)
        check_label(alias, "alias")
        self._http.json("PUT" if protected else "DELETE", f"/models/{model}/-/protected-aliases/{alias}")

    def protected_aliases(self, model: str) -> set[str]:
        check_model_name(model)
        return set(self._http.json("GET", f"/models/{model}/-/protected-aliases"))

    def audit_log(
        self,
        *,
        model: str | None = None,
        since: datetime | None = None,
        principal: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[AuditEntry]:
        if limit < 1:
            raise InvalidInputError("limit must be positive")
        params: dict[str, Any] = {"limit": min(limit, 1000), "offset": offset}
        if model:
            params["model"] = model
        if since:
            params["since"] = since.isoformat()
        if principal:
            params["principal"] = principal
        return [convert.audit(d) for d in self._http.json("GET", "/audit", params=params)["items"]]
