"""the chunk table's constraints get the names a new database gives them

Revision ID: 0006
Revises: 0005

0003 rebuilt ``chunks`` as ``chunks_new`` and renamed the table; PostgreSQL keeps constraint names
across a rename, so a migrated index had ``chunks_new_pkey`` and ``chunks_new_pack_id_fkey``
where a new one (created at head by ``registry.bootstrap``) has ``chunks_pkey`` and
``chunks_pack_id_fkey``. One name for each, whichever way the index was made. SQLite's
constraints here are unnamed: nothing to do there.
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_NAMES = [("chunks_new_pkey", "chunks_pkey"), ("chunks_new_pack_id_fkey", "chunks_pack_id_fkey")]


def _rename(pairs: list[tuple[str, str]]) -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    query = sa.text("SELECT conname FROM pg_constraint WHERE conrelid = 'chunks'::regclass")
    present: set[str] = set(bind.execute(query).scalars())
    for old, new in pairs:
        if old in present and new not in present:
            op.execute(f'ALTER TABLE chunks RENAME CONSTRAINT "{old}" TO "{new}"')


def upgrade() -> None:
    _rename(_NAMES)


def downgrade() -> None:
    _rename([(new, old) for old, new in _NAMES])
