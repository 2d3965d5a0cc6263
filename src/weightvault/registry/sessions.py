"""Plain sessions on the registry database, for the stores that live beside the index.

The access store and the upload sessions need no write order: each change is one short transaction
that commits when its block ends and rolls back (re-raising) when the block raises. The index's own
writes are different on purpose (``BEGIN IMMEDIATE`` on SQLite, an advisory lock on PostgreSQL, see
``RegistryIndex._write``) and do not use this.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker


class DatabaseSessions:
    """Sessions on one engine; objects stay readable after commit (``expire_on_commit=False``)."""

    def __init__(self, engine: Engine) -> None:
        self._factory = sessionmaker(engine, expire_on_commit=False)

    def session(self) -> Session:
        """A session for reads (use as a context manager: it closes, and rolls back, at the end)."""
        return self._factory()

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session in one transaction: committed when the block ends, rolled back if it raises."""
        with self._factory() as s, s.begin():
            yield s
