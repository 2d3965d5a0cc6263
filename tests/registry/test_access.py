"""The access store on SQLite and PostgreSQL: tokens, grants, policies, audit."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import select

from weightvault.core.access import Identity, Level
from weightvault.core.errors import AuthenticationError, InvalidInputError, InvalidNameError, NotFoundError
from weightvault.registry.access import AccessStore, hash_token
from weightvault.registry.index import RegistryIndex
from weightvault.registry.schema import TokenRow


@pytest.fixture
def access(db_url: str) -> Iterator[AccessStore]:
    index = RegistryIndex(db_url)
    yield AccessStore(index)
    index.close()


def test_token_is_shown_once_and_stored_only_as_a_hash(access: AccessStore, db_url: str) -> None:
    new = access.create_token("alice", "write", description="laptop")
    assert new.token.startswith("wvt_") and len(new.token) > 40
    assert new.info.last_chars == new.token[-4:] and new.info.scope == "write"
    index = RegistryIndex(db_url)
    try:
        with index.engine.connect() as conn:
            rows = conn.execute(select(TokenRow.token_hash, TokenRow.last_chars)).all()
    finally:
        index.close()
    assert rows == [(hash_token(new.token), new.token[-4:])]
    assert new.token not in repr(access.list_tokens())
    identity = access.authenticate(new.token)
    assert identity == Identity("alice", Level.WRITE, False)
    assert access.list_tokens("alice")[0].last_used is not None


def test_revoked_expired_and_unknown_tokens_are_refused(access: AccessStore) -> None:
    new = access.create_token("bob", "read")
    access.revoke_token(new.info.id)
    with pytest.raises(AuthenticationError, match="revoked"):
        access.authenticate(new.token)
    short = access.create_token("bob", "read", expires_in=timedelta(microseconds=1))
    with pytest.raises(AuthenticationError, match="expired"):
        access.authenticate(short.token)
    with pytest.raises(AuthenticationError):
        access.authenticate("wvt_" + "x" * 43)
    with pytest.raises(NotFoundError):
        access.revoke_token(9999)
    with pytest.raises(InvalidInputError):
        access.create_token("bob", "superuser")
    with pytest.raises(InvalidNameError):
        access.create_token("../etc", "read")


def test_levels_combine_grants_public_models_admin_and_token_scope(access: AccessStore) -> None:
    access.add_grant("carol", "team/*", "writer")
    access.add_grant("carol", "team/secret", "reader")  # the higher of two matching grants wins
    access.add_grant("carol", "other", "admin")
    access.set_public("open", True)
    carol_write = Identity("carol", Level.WRITE)
    carol_read = Identity("carol", Level.READ)
    assert access.level(carol_write, "team/a") == Level.WRITE
    assert access.level(carol_write, "team/secret") == Level.WRITE
    assert access.level(carol_read, "team/a") == Level.READ  # a read token caps a writer
    assert access.level(carol_write, "other") == Level.WRITE  # admin role, write scope
    assert access.level(Identity("carol", Level.ADMIN), "other") == Level.ADMIN
    assert access.level(carol_write, "teamx/a") == Level.NONE  # a pattern is a namespace, not a prefix
    assert access.level(carol_write, "open") == Level.READ
    assert access.level(Identity(None, Level.READ), "open") == Level.READ
    assert access.level(Identity(None, Level.READ), "team/a") == Level.NONE
    assert access.level(Identity("root", Level.ADMIN, is_admin=True), "anything") == Level.ADMIN
    access.remove_grant("carol", "team/*")
    assert access.level(carol_write, "team/a") == Level.NONE
    with pytest.raises(InvalidNameError):
        access.add_grant("carol", "te*m", "reader")
    with pytest.raises(InvalidInputError):
        access.add_grant("carol", "x", "owner")


def test_bootstrap_creates_one_admin_only_on_an_empty_database(access: AccessStore) -> None:
    first = access.bootstrap_admin()
    assert first is not None and first.info.scope == "admin"
    assert access.authenticate(first.token).is_admin
    assert access.bootstrap_admin() is None


def test_protected_aliases_and_audit_log(access: AccessStore) -> None:
    access.protect_alias("m", "production")
    assert access.protected_aliases("m") == {"production"}
    access.audit("alice", "alias.set", "denied", model="m", version="production", source="127.0.0.1")
    access.audit("bob", "push", model="n", version="v1")
    entries = access.audit_log(model="m")
    assert [e.action for e in entries] == ["alias.set", "alias.protect"]
    assert entries[0].outcome == "denied" and entries[0].source == "127.0.0.1"
    assert [e.principal for e in access.audit_log(principal="bob")] == ["bob"]
    assert access.audit_log(limit=1)[0].action == "push"
    access.protect_alias("m", "production", False)
    assert access.protected_aliases("m") == set()
