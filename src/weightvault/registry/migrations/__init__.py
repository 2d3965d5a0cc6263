"""Alembic migrations of the index. ``HEAD`` names the newest one (a test checks it against
Alembic's own head), so code can tell an up-to-date database without importing Alembic or
SQLAlchemy."""

HEAD = "0006"
