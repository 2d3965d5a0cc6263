"""a chunk may live in several packs; the index remembers how far it has read the store's journal

Revision ID: 0003
Revises: 0002

Several machines share one store, so the same chunk can be written to two packs (two pushes
that did not know of each other, or gc copying live chunks out of a sparse pack). The index
records every location (primary key ``(id, pack_id)``) so dropping one pack never leaves a
chunk without a location. ``store_state`` holds the journal cursor and the store id the
index was built from (docs/format.md, "Refresh").
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _chunks(name: str, pk: list[str]) -> None:
    op.create_table(
        name,
        sa.Column("id", sa.LargeBinary(length=32), nullable=False),
        sa.Column("pack_id", sa.String(length=64), nullable=False),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        sa.Column("stored_len", sa.Integer(), nullable=False),
        sa.Column("raw_len", sa.Integer(), nullable=False),
        sa.Column("codec", sa.Integer(), nullable=False),
        sa.Column("key_slot", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["pack_id"], ["packs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint(*pk),
    )


def _move(pk: list[str]) -> None:
    cols = 'id, pack_id, "offset", stored_len, raw_len, codec, key_slot'
    _chunks("chunks_new", pk)
    op.execute(f"INSERT INTO chunks_new ({cols}) SELECT {cols} FROM chunks")
    op.drop_index("ix_chunks_pack", table_name="chunks")
    op.drop_table("chunks")
    op.rename_table("chunks_new", "chunks")
    op.create_index("ix_chunks_pack", "chunks", ["pack_id"], unique=False)


def upgrade() -> None:
    _move(["id", "pack_id"])
    op.create_table(
        "store_state",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("store_state")
    op.execute(
        "DELETE FROM chunks WHERE EXISTS (SELECT 1 FROM chunks AS d "
        "WHERE d.id = chunks.id AND d.pack_id < chunks.pack_id)"
    )
    _move(["id"])
