"""The registry suite runs on both index databases: SQLite and a real PostgreSQL server."""

from __future__ import annotations

from pathlib import Path

import pytest

from ..conftest import new_postgres_database


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'i.db'}"
    return new_postgres_database(request)
