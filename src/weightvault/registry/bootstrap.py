"""A new, empty index database gets the head schema at once, without Alembic.

Importing Alembic (with Mako and its plugins) and running every migration script costs a fresh
home about 0.15 s before a first push or pull can start. The tables the migrations build are
exactly those ``registry.schema`` declares (a test compares the two, on SQLite and PostgreSQL,
constraint by constraint), so an empty database is given them by ``create_all`` and stamped with
the head revision, as Alembic would stamp it; a database at an older revision still goes through
the migrations.
"""

from __future__ import annotations

from sqlalchemy import Column, Connection, MetaData, PrimaryKeyConstraint, String, Table, inspect

from weightvault.registry.migrations import HEAD
from weightvault.registry.schema import Base

#: Alembic's own version table, as ``alembic upgrade`` creates it
_VERSIONS = MetaData()
VERSION_TABLE = Table(
    "alembic_version",
    _VERSIONS,
    Column("version_num", String(32), nullable=False),
    PrimaryKeyConstraint("version_num", name="alembic_version_pkc"),
)


def is_empty(conn: Connection) -> bool:
    """True when the database holds none of the index's tables (nor Alembic's)."""
    names = set(inspect(conn).get_table_names())
    return not names & ({VERSION_TABLE.name} | set(Base.metadata.tables))


def create_head(conn: Connection) -> None:
    """Create every table at the head revision and stamp it, in the caller's transaction."""
    Base.metadata.create_all(conn)
    _VERSIONS.create_all(conn)
    conn.execute(VERSION_TABLE.insert().values(version_num=HEAD))
