"""The access store: principals, API tokens, grants, model policies and the audit log.

Lives in the registry database next to the index (SQLite or PostgreSQL), so several server
processes share one view of who may do what. Tokens are stored only as SHA-256 hashes with their
last characters for identification; the secret is returned once, at creation.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError as SAIntegrityError
from sqlalchemy.orm import Session

from weightvault.core.access import (
    ROLES,
    SCOPES,
    TOKEN_PREFIX,
    AuditEntry,
    GrantInfo,
    Identity,
    Level,
    NewToken,
    TokenInfo,
    check_pattern,
    check_principal_name,
    check_role,
    check_scope,
    pattern_matches,
)
from weightvault.core.errors import AuthenticationError, InvalidInputError, NotFoundError
from weightvault.core.names import check_label, check_model_name
from weightvault.registry.index import RegistryIndex, _aware, utcnow
from weightvault.registry.schema import (
    AuditRow,
    GrantRow,
    ModelPolicyRow,
    PrincipalRow,
    ProtectedAliasRow,
    TokenRow,
)
from weightvault.registry.sessions import DatabaseSessions

#: ``last_used`` is refreshed at most this often, so authenticating is not a write per request
_TOUCH_EVERY = timedelta(seconds=60)
LOCAL_ACTOR = "local"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _token_info(row: TokenRow, principal: str) -> TokenInfo:
    return TokenInfo(
        id=row.id,
        principal=principal,
        scope=row.scope,
        kind=row.kind,
        description=row.description,
        last_chars=row.last_chars,
        created=_aware(row.created_at),
        expires=_aware(row.expires_at) if row.expires_at else None,
        revoked=_aware(row.revoked_at) if row.revoked_at else None,
        last_used=_aware(row.last_used_at) if row.last_used_at else None,
    )


class AccessStore:
    def __init__(self, index: RegistryIndex) -> None:
        self._db = DatabaseSessions(index.engine)

    # ---- principals and tokens ------------------------------------------------------------------

    def _principal(self, s: Session, name: str, *, create: bool, admin: bool | None = None) -> PrincipalRow:
        row = s.scalar(select(PrincipalRow).where(PrincipalRow.name == name))
        if row is None:
            if not create:
                raise NotFoundError(f"principal {name!r} not found")
            row = PrincipalRow(name=name, is_admin=bool(admin), created_at=utcnow())
            s.add(row)
            s.flush()
        elif admin is not None:
            row.is_admin = admin
        return row

    def has_principals(self) -> bool:
        with self._db.session() as s:
            return bool(s.scalar(select(func.count()).select_from(PrincipalRow)))

    def create_token(
        self,
        principal: str,
        scope: str = "read",
        *,
        expires_in: timedelta | None = None,
        description: str = "",
        admin: bool | None = None,
        kind: str = "api",
        actor: str = LOCAL_ACTOR,
        source: str = "",
    ) -> NewToken:
        """A new random token for ``principal`` (created if new; ``admin`` sets it a global admin)."""
        check_principal_name(principal)
        check_scope(scope)
        if expires_in is not None and expires_in <= timedelta(0):
            raise InvalidInputError("a token's lifetime must be positive")
        if len(description) > 200:
            raise InvalidInputError("token description is longer than 200 characters")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        now = utcnow()
        with self._db.transaction() as s:
            prow = self._principal(s, principal, create=True, admin=admin)
            if kind == "oauth":  # short-lived tokens pile up otherwise; a day after expiry they go
                stale = now - timedelta(days=1)
                s.execute(delete(TokenRow).where(TokenRow.kind == "oauth", TokenRow.expires_at < stale))
            row = TokenRow(
                principal_id=prow.id,
                token_hash=hash_token(token),
                last_chars=token[-4:],
                scope=scope,
                kind=kind,
                description=description,
                created_at=now,
                expires_at=now + expires_in if expires_in is not None else None,
            )
            s.add(row)
            s.flush()
            if kind == "api":
                self._audit(
                    s, actor, "token.create", "ok", source=source, detail=f"{principal} #{row.id} {scope}"
                )
            return NewToken(token, _token_info(row, principal))

    def bootstrap_admin(self) -> NewToken | None:
        """The first administrator and its token, when the database has no principal at all."""
        if self.has_principals():
            return None
        try:
            return self.create_token("admin", "admin", admin=True, description="first admin (bootstrap)")
        except SAIntegrityError:  # another server process bootstrapped at the same moment
            return None

    def list_tokens(self, principal: str | None = None) -> list[TokenInfo]:
        with self._db.session() as s:
            q = select(TokenRow, PrincipalRow.name).join(
                PrincipalRow, PrincipalRow.id == TokenRow.principal_id
            )
            if principal is not None:
                q = q.where(PrincipalRow.name == principal)
            return [_token_info(row, name) for row, name in s.execute(q.order_by(TokenRow.id))]

    def token(self, token_id: int) -> TokenInfo:
        for info in self.list_tokens():
            if info.id == token_id:
                return info
        raise NotFoundError(f"token #{token_id} not found")

    def revoke_token(self, token_id: int, *, actor: str = LOCAL_ACTOR, source: str = "") -> TokenInfo:
        with self._db.transaction() as s:
            row = s.get(TokenRow, token_id)
            if row is None:
                raise NotFoundError(f"token #{token_id} not found")
            if row.revoked_at is None:
                row.revoked_at = utcnow()
            name = s.scalar(select(PrincipalRow.name).where(PrincipalRow.id == row.principal_id)) or "?"
            self._audit(s, actor, "token.revoke", "ok", source=source, detail=f"{name} #{token_id}")
            return _token_info(row, name)

    def authenticate(self, token: str) -> Identity:
        """The identity a bearer token stands for; AuthenticationError if unknown, expired or revoked."""
        now = utcnow()
        with self._db.session() as s:
            found = s.execute(
                select(TokenRow, PrincipalRow)
                .join(PrincipalRow, PrincipalRow.id == TokenRow.principal_id)
                .where(TokenRow.token_hash == hash_token(token))
            ).first()
            if found is None:
                raise AuthenticationError("unknown token")
            row, principal = found
            if row.revoked_at is not None:
                raise AuthenticationError(f"token ...{row.last_chars} was revoked")
            if row.expires_at is not None and _aware(row.expires_at) <= now:
                raise AuthenticationError(f"token ...{row.last_chars} has expired")
            identity = Identity(principal.name, SCOPES[row.scope], principal.is_admin)
            stale = row.last_used_at is None or _aware(row.last_used_at) < now - _TOUCH_EVERY
            token_id = row.id
        if stale:
            with self._db.transaction() as s:
                s.execute(update(TokenRow).where(TokenRow.id == token_id).values(last_used_at=now))
        return identity

    # ---- grants and policies --------------------------------------------------------------------

    def add_grant(
        self, principal: str, pattern: str, role: str, *, actor: str = LOCAL_ACTOR, source: str = ""
    ) -> GrantInfo:
        check_principal_name(principal)
        check_pattern(pattern)
        check_role(role)
        now = utcnow()
        with self._db.transaction() as s:
            prow = self._principal(s, principal, create=True)
            row = s.scalar(
                select(GrantRow).where(GrantRow.principal_id == prow.id, GrantRow.pattern == pattern)
            )
            if row is None:
                row = GrantRow(principal_id=prow.id, pattern=pattern, role=role, created_at=now)
                s.add(row)
            else:
                row.role = role
            self._audit(
                s, actor, "grant.add", "ok", model=pattern, source=source, detail=f"{principal} {role}"
            )
            return GrantInfo(principal, pattern, role, _aware(row.created_at))

    def remove_grant(
        self, principal: str, pattern: str, *, actor: str = LOCAL_ACTOR, source: str = ""
    ) -> None:
        with self._db.transaction() as s:
            prow = self._principal(s, principal, create=False)
            result = s.execute(
                delete(GrantRow).where(GrantRow.principal_id == prow.id, GrantRow.pattern == pattern)
            )
            if not getattr(result, "rowcount", 0):
                raise NotFoundError(f"{principal} has no grant on {pattern!r}")
            self._audit(s, actor, "grant.remove", "ok", model=pattern, source=source, detail=principal)

    def grants(self, principal: str | None = None) -> list[GrantInfo]:
        with self._db.session() as s:
            q = select(GrantRow, PrincipalRow.name).join(
                PrincipalRow, PrincipalRow.id == GrantRow.principal_id
            )
            if principal is not None:
                q = q.where(PrincipalRow.name == principal)
            rows = s.execute(q.order_by(PrincipalRow.name, GrantRow.pattern))
            return [GrantInfo(name, g.pattern, g.role, _aware(g.created_at)) for g, name in rows]

    def set_public(self, model: str, public: bool, *, actor: str = LOCAL_ACTOR, source: str = "") -> None:
        check_model_name(model)
        with self._db.transaction() as s:
            row = s.get(ModelPolicyRow, model)
            if row is None:
                s.add(ModelPolicyRow(model=model, public_read=public))
            else:
                row.public_read = public
            self._audit(
                s, actor, "model.public" if public else "model.private", "ok", model=model, source=source
            )

    def public_models(self) -> set[str]:
        with self._db.session() as s:
            return set(s.scalars(select(ModelPolicyRow.model).where(ModelPolicyRow.public_read.is_(True))))

    def protect_alias(
        self, model: str, alias: str, protected: bool = True, *, actor: str = LOCAL_ACTOR, source: str = ""
    ) -> None:
        check_model_name(model)
        check_label(alias, "alias")
        with self._db.transaction() as s:
            row = s.get(ProtectedAliasRow, (model, alias))
            if protected and row is None:
                s.add(ProtectedAliasRow(model=model, alias=alias))
            elif not protected and row is not None:
                s.delete(row)
            action = "alias.protect" if protected else "alias.unprotect"
            self._audit(s, actor, action, "ok", model=model, version=alias, source=source)

    def protected_aliases(self, model: str) -> set[str]:
        with self._db.session() as s:
            return set(s.scalars(select(ProtectedAliasRow.alias).where(ProtectedAliasRow.model == model)))

    # ---- decisions ------------------------------------------------------------------------------

    def level_function(self, identity: Identity) -> Callable[[str], Level]:
        """``model -> level`` for one request: grants and public models are read once, then applied
        to as many models as a listing has."""
        if identity.is_admin:
            return lambda model: identity.scope
        public = self.public_models()
        grants = (
            [(g.pattern, ROLES[g.role]) for g in self.grants(identity.principal)]
            if identity.principal
            else []
        )

        def level(model: str) -> Level:
            best = Level.READ if model in public else Level.NONE
            for pattern, role in grants:
                if role > best and pattern_matches(pattern, model):
                    best = role
            return min(best, identity.scope)

        return level

    def level(self, identity: Identity, model: str) -> Level:
        return self.level_function(identity)(model)

    # ---- audit ----------------------------------------------------------------------------------

    def _audit(
        self,
        s: Session,
        principal: str,
        action: str,
        outcome: str,
        *,
        model: str | None = None,
        version: str | None = None,
        source: str = "",
        detail: str = "",
    ) -> None:
        s.add(
            AuditRow(
                at=utcnow(),
                principal=principal[:64],
                action=action[:64],
                outcome=outcome[:16],
                model=model[:96] if model else None,
                version=version[:128] if version else None,
                source=source[:64],
                detail=detail[:2000],
            )
        )

    def audit(
        self,
        principal: str,
        action: str,
        outcome: str = "ok",
        *,
        model: str | None = None,
        version: str | None = None,
        source: str = "",
        detail: str = "",
    ) -> None:
        with self._db.transaction() as s:
            self._audit(
                s, principal, action, outcome, model=model, version=version, source=source, detail=detail
            )

    def audit_log(
        self,
        *,
        model: str | None = None,
        since: datetime | None = None,
        principal: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[AuditEntry]:
        """Newest first."""
        with self._db.session() as s:
            q = select(AuditRow)
            if model is not None:
                q = q.where(AuditRow.model == model)
            if since is not None:
                q = q.where(AuditRow.at >= since)
            if principal is not None:
                q = q.where(AuditRow.principal == principal)
            q = q.order_by(AuditRow.at.desc(), AuditRow.id.desc()).limit(limit).offset(offset)
            return [
                AuditEntry(
                    r.id,
                    _aware(r.at),
                    r.principal,
                    r.action,
                    r.outcome,
                    r.model,
                    r.version,
                    r.source,
                    r.detail,
                )
                for r in s.scalars(q)
            ]
