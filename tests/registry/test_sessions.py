"""Plain transactions beside the index, on SQLite and PostgreSQL: all of a block or none of it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import select

from weightvault.registry.index import RegistryIndex
from weightvault.registry.schema import ModelPolicyRow
from weightvault.registry.sessions import DatabaseSessions


@pytest.fixture
def db(db_url: str) -> Iterator[DatabaseSessions]:
    index = RegistryIndex(db_url)
    yield DatabaseSessions(index.engine)
    index.close()


def _models(db: DatabaseSessions) -> list[str]:
    with db.session() as s:
        return list(s.scalars(select(ModelPolicyRow.model).order_by(ModelPolicyRow.model)))


def test_a_transaction_commits_when_its_block_ends(db: DatabaseSessions) -> None:
    with db.transaction() as s:
        row = ModelPolicyRow(model="team/a", public_read=True)
        s.add(row)
    assert row.model == "team/a"  # still readable after the commit
    assert _models(db) == ["team/a"]


def test_a_transaction_that_raises_leaves_nothing_and_the_error_propagates(db: DatabaseSessions) -> None:
    class Boom(Exception):
        pass

    with pytest.raises(Boom), db.transaction() as s:
        s.add(ModelPolicyRow(model="team/b", public_read=True))
        s.flush()
        raise Boom
    assert _models(db) == []
