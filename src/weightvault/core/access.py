"""Who may do what: scopes, roles, grant patterns and the records the access store returns.

Pure rules, no I/O. A request is allowed a *level* on a model: the highest role its principal's
grants give there (or reader on a public-read model, or admin for a global administrator),
capped by the scope of the token it came with.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import asdict, dataclass
from datetime import datetime
from enum import IntEnum
from typing import Any

from weightvault.core.errors import InvalidInputError, InvalidNameError
from weightvault.core.names import check_model_name


class Level(IntEnum):
    NONE = 0
    READ = 1
    WRITE = 2
    ADMIN = 3


#: token scopes and grant roles name the same three levels
SCOPES: dict[str, Level] = {"read": Level.READ, "write": Level.WRITE, "admin": Level.ADMIN}
ROLES: dict[str, Level] = {"reader": Level.READ, "writer": Level.WRITE, "admin": Level.ADMIN}
_PRINCIPAL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
TOKEN_PREFIX = "wvt_"


def check_scope(scope: str) -> Level:
    if scope not in SCOPES:
        raise InvalidInputError(f"unknown scope {scope!r}: use one of {', '.join(SCOPES)}")
    return SCOPES[scope]


def check_role(role: str) -> Level:
    if role not in ROLES:
        raise InvalidInputError(f"unknown role {role!r}: use one of {', '.join(ROLES)}")
    return ROLES[role]


def check_principal_name(name: str) -> str:
    if not isinstance(name, str) or not _PRINCIPAL.match(name):
        raise InvalidNameError(
            f"invalid principal name {name!r}: 1-64 letters, digits, '._@-', starting alphanumeric"
        )
    return name


def check_pattern(pattern: str) -> str:
    """A grant's target: a model name, ``namespace/*`` (every model of a namespace) or ``*``."""
    if pattern == "*":
        return pattern
    if pattern.endswith("/*"):
        namespace = pattern[:-2]
        if "/" in namespace:
            raise InvalidNameError(f"invalid grant pattern {pattern!r}: use NAMESPACE/*")
        check_model_name(namespace)
        return pattern
    if any(c in pattern for c in "*?[]"):
        raise InvalidNameError(f"invalid grant pattern {pattern!r}: a model name, NAMESPACE/* or *")
    return check_model_name(pattern)


def pattern_matches(pattern: str, model: str) -> bool:
    return fnmatch.fnmatchcase(model, pattern) if "*" in pattern else pattern == model


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a request acts for: a principal, or nobody (``principal is None``) for anonymous reads."""

    principal: str | None
    scope: Level
    is_admin: bool = False

    @property
    def name(self) -> str:
        return self.principal or "anonymous"


ANONYMOUS = Identity(None, Level.READ)


@dataclass(frozen=True, slots=True)
class TokenInfo:
    id: int
    principal: str
    scope: str
    kind: str
    description: str
    last_chars: str
    created: datetime
    expires: datetime | None
    revoked: datetime | None
    last_used: datetime | None

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("created", "expires", "revoked", "last_used"):
            out[key] = out[key].isoformat() if out[key] else None
        return out


@dataclass(frozen=True, slots=True)
class NewToken:
    """A freshly created token: the only time its secret exists outside the caller's hands."""

    token: str
    info: TokenInfo


@dataclass(frozen=True, slots=True)
class GrantInfo:
    principal: str
    pattern: str
    role: str
    created: datetime

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "created": self.created.isoformat()}


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    at: datetime
    principal: str
    action: str
    outcome: str
    model: str | None
    version: str | None
    source: str
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "at": self.at.isoformat()}
