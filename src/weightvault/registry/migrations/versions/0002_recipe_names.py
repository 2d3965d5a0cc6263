"""recipes are keyed by recipe name

Revision ID: 0002
Revises: 0001

Recipes of encrypted models are named by a keyed hash of the file's SHA-256 (docs/format.md,
"Encryption"), so the recipes table's key is now the recipe *name*: the plain SHA-256 for
plain models, as before, which is why existing rows need no rewriting.
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("recipes", schema=None) as batch_op:
        batch_op.alter_column("sha256", new_column_name="name")


def downgrade() -> None:
    with op.batch_alter_table("recipes", schema=None) as batch_op:
        batch_op.alter_column("name", new_column_name="sha256")
