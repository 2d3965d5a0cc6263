"""``weightvault token|grant|audit``: API tokens, per-model grants and the audit log.

Run against the home (the local index: whoever can open it is trusted, as ``weightvault token
create --scope admin`` must work before any token exists) or, with ``--server``, through the
server's API as the token's principal. Registered on the main app by ``cli/app.py``; the vault
of the invocation comes from ``cli/state.py``.
"""

from __future__ import annotations

import getpass
import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer

from weightvault.cli import output
from weightvault.cli.state import STATE
from weightvault.core.errors import InvalidInputError

token_app = typer.Typer(
    help="API tokens for the server: create (shown once), list, revoke.", no_args_is_help=True
)
grant_app = typer.Typer(
    help="Who may read, write or administer which models; public models; protected aliases.",
    no_args_is_help=True,
)

_DURATION = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> timedelta:
    m = _DURATION.match(text.strip())
    if not m or int(m.group(1)) == 0:
        raise InvalidInputError(
            f"invalid duration {text!r}: a positive number and s, m, h, d or w (e.g. 90d)"
        )
    return timedelta(seconds=int(m.group(1)) * _UNITS[m.group(2)])


def parse_since(text: str) -> datetime:
    """An ISO time (UTC if no zone) or a duration back from now (``7d``)."""
    if _DURATION.match(text.strip()):
        return datetime.now(UTC) - parse_duration(text)
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInputError(
            f"invalid time {text!r}: ISO 8601 (2026-11-29T18:00) or a duration (7d)"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _access() -> Any:
    return STATE.vault().access


def _actor() -> str:
    try:
        return f"local:{getpass.getuser()}"
    except (KeyError, OSError):
        return "local"


def _fmt(when: datetime | None) -> str:
    return when.strftime("%Y-%m-%d %H:%M") if when else "-"


@token_app.command("create")
def token_create(
    principal: Annotated[str, typer.Option("--principal", "-p", help="Who the token acts for.")] = "admin",
    scope: Annotated[str, typer.Option(help="read, write or admin.")] = "read",
    expires: Annotated[str, typer.Option(help="Lifetime (90d, 12h, …) or 'never'.")] = "90d",
    admin: Annotated[
        bool | None, typer.Option("--admin/--no-admin", help="Make the principal a global administrator.")
    ] = None,
    description: Annotated[str, typer.Option(help="What the token is for.")] = "",
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")] = False,
) -> None:
    """Create a token; its secret is printed once and stored only as a hash."""
    lifetime = None if expires == "never" else parse_duration(expires)
    new = _access().create_token(
        principal, scope, expires_in=lifetime, description=description, admin=admin, actor=_actor()
    )
    if as_json:
        output.emit_json({"token": new.token, **new.info.to_json()})
        return
    output.out.print(new.token, markup=False, highlight=False)
    if not STATE.quiet:
        output.err.print(
            f"token #{new.info.id} for {principal} ({scope}, expires {_fmt(new.info.expires)}); "
            "it is not shown again",
            markup=False,
        )


@token_app.command("list")
def token_list(
    principal: Annotated[str | None, typer.Option("--principal", "-p", help="Only this principal's.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")] = False,
) -> None:
    """Tokens with their last characters, scope, expiry, revocation and last use (never the secret)."""
    tokens = _access().list_tokens(principal)
    if as_json:
        output.emit_json([t.to_json() for t in tokens])
        return
    table = output.table(
        "id", "principal", "scope", "token", "created", "expires", "revoked", "last used", "description"
    )
    for t in tokens:
        table.add_row(
            str(t.id),
            t.principal,
            t.scope,
            f"…{t.last_chars}",
            _fmt(t.created),
            _fmt(t.expires),
            _fmt(t.revoked),
            _fmt(t.last_used),
            t.description,
        )
    output.out.print(table)


@token_app.command("revoke")
def token_revoke(token_id: Annotated[int, typer.Argument(help="The token's id (token list).")]) -> None:
    """Revoke a token at once (every server process refuses it from its next request)."""
    info = _access().revoke_token(token_id, actor=_actor())
    if not STATE.quiet:
        output.err.print(f"revoked token #{info.id} of {info.principal} (…{info.last_chars})", markup=False)


@grant_app.command("add")
def grant_add(
    principal: Annotated[str, typer.Argument(help="Who: a principal name (created if new).")],
    pattern: Annotated[str, typer.Argument(help="A model, NAMESPACE/* or *.")],
    role: Annotated[str, typer.Argument(help="reader, writer or admin.")],
) -> None:
    """Give PRINCIPAL a ROLE on the models PATTERN names (replaces its role there)."""
    _access().add_grant(principal, pattern, role, actor=_actor())


@grant_app.command("rm")
def grant_rm(
    principal: Annotated[str, typer.Argument(help="Whose grant.")],
    pattern: Annotated[str, typer.Argument(help="The pattern it was given on.")],
) -> None:
    """Remove PRINCIPAL's grant on PATTERN."""
    _access().remove_grant(principal, pattern, actor=_actor())


@grant_app.command("ls")
def grant_ls(
    principal: Annotated[str | None, typer.Option("--principal", "-p", help="Only this principal's.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")] = False,
) -> None:
    grants = _access().grants(principal)
    if as_json:
        output.emit_json([g.to_json() for g in grants])
        return
    table = output.table("principal", "pattern", "role", "since")
    for g in grants:
        table.add_row(g.principal, g.pattern, g.role, _fmt(g.created))
    output.out.print(table)


@grant_app.command("public")
def grant_public(
    model: Annotated[str, typer.Argument(help="The model.")],
    off: Annotated[bool, typer.Option("--off", help="Make the model private again.")] = False,
) -> None:
    """Let anyone, without a token, read MODEL."""
    _access().set_public(model, not off, actor=_actor())


@grant_app.command("protect")
def grant_protect(
    model: Annotated[str, typer.Argument(help="The model.")],
    alias: Annotated[str, typer.Argument(help="The alias (e.g. production).")],
    off: Annotated[bool, typer.Option("--off", help="Lift the protection.")] = False,
) -> None:
    """Only admins of MODEL may move or remove ALIAS (e.g. production)."""
    _access().protect_alias(model, alias, not off, actor=_actor())


def audit(
    model: Annotated[str | None, typer.Option(help="Only events about this model.")] = None,
    since: Annotated[str | None, typer.Option(help="ISO time or a duration back from now (7d).")] = None,
    principal: Annotated[str | None, typer.Option("--principal", "-p", help="Only this principal's.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10000, help="At most this many entries.")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")] = False,
) -> None:
    """Writes, deletes, alias moves, grant and token changes and denied requests, newest first."""
    entries = _access().audit_log(
        model=model, since=parse_since(since) if since else None, principal=principal, limit=limit
    )
    if as_json:
        output.emit_json([e.to_json() for e in entries])
        return
    table = output.table("time", "principal", "action", "outcome", "model", "version", "source", "detail")
    for e in entries:
        table.add_row(
            e.at.strftime("%Y-%m-%d %H:%M:%S"),
            e.principal,
            e.action,
            e.outcome,
            e.model or "",
            e.version or "",
            e.source,
            e.detail,
        )
    output.out.print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(token_app, name="token")
    app.add_typer(grant_app, name="grant")
    app.command("audit")(audit)
