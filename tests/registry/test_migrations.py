from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, inspect

from weightvault.registry.index import MIGRATIONS, SCHEMA_HEAD, RegistryIndex, normalise_url, upgrade_schema
from weightvault.registry.schema import Base

from ..conftest import new_postgres_database


def test_schema_head_constant_matches_alembic() -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    assert ScriptDirectory.from_config(cfg).get_current_head() == SCHEMA_HEAD


def _migrated(url: str) -> Engine:
    """A database brought to head by the migration scripts, as an old index would be."""
    engine = create_engine(normalise_url(url))
    with engine.begin() as conn:
        upgrade_schema(conn)
    return engine


def _describe(engine: Engine) -> dict[str, Any]:
    """Every table with its columns, keys, indexes and constraints, as the database reports them."""
    insp = inspect(engine)
    out: dict[str, Any] = {}
    for table in insp.get_table_names():
        out[table] = {
            "columns": [
                (c["name"], str(c["type"]), c["nullable"], c.get("default")) for c in insp.get_columns(table)
            ],
            "pk": insp.get_pk_constraint(table),
            "fks": sorted(map(repr, insp.get_foreign_keys(table))),
            "indexes": sorted(map(repr, insp.get_indexes(table))),
            "unique": sorted(map(repr, insp.get_unique_constraints(table))),
            "checks": sorted(map(repr, insp.get_check_constraints(table))),
        }
    return out


def test_a_new_index_has_exactly_the_schema_the_migrations_build(
    db_url: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """A new database is created at head without running the migrations: it must be the same
    schema, table by table and constraint by constraint, as one the migration scripts built."""
    sqlite = db_url.startswith("sqlite")
    other = f"sqlite:///{tmp_path / 'm.db'}" if sqlite else new_postgres_database(request)
    migrated = _migrated(other)
    with migrated.connect() as conn:  # the declared tables are what the migrations build
        opts = {"compare_type": True, "compare_server_default": True}
        context = MigrationContext.configure(conn, opts=opts)
        assert compare_metadata(context, Base.metadata) == []
    index = RegistryIndex(db_url)
    assert index.schema_revision() == SCHEMA_HEAD
    fresh = _describe(index.engine)
    assert set(fresh) == {*Base.metadata.tables, "alembic_version"}
    assert fresh == _describe(migrated)
    index.close()
    migrated.dispose()
    again = RegistryIndex(db_url)  # reopening does not create or migrate again
    assert again.schema_revision() == SCHEMA_HEAD
    again.close()


def test_opening_a_new_or_current_index_does_not_load_alembic(tmp_path: Path) -> None:
    """Alembic is loaded only to migrate an older database, never to create or open a current one."""
    code = (
        "import sys\n"
        "from weightvault.registry.index import RegistryIndex\n"
        "RegistryIndex(sys.argv[1]).close()\n"
        "assert 'alembic' not in sys.modules, 'alembic was imported'\n"
    )
    url = f"sqlite:///{tmp_path / 'n.db'}"
    for _ in range(2):  # new, then current
        subprocess.run([sys.executable, "-c", code, url], check=True, capture_output=True)


def test_an_index_at_an_older_revision_is_migrated_to_head(db_url: str) -> None:
    engine = create_engine(normalise_url(db_url))
    with engine.begin() as conn:
        upgrade_schema(conn, "0001")
    engine.dispose()
    index = RegistryIndex(db_url)
    assert index.schema_revision() == SCHEMA_HEAD
    assert set(inspect(index.engine).get_table_names()) == {*Base.metadata.tables, "alembic_version"}
    index.close()


def test_two_processes_opening_a_new_database_at_once_migrate_it_once(db_url: str) -> None:
    """Several server processes start together on one database: none fails, the schema is at head."""
    code = "import sys\nfrom weightvault.registry.index import RegistryIndex as R\nR(sys.argv[1]).close()"
    procs = [subprocess.Popen([sys.executable, "-c", code, db_url], stderr=subprocess.PIPE) for _ in range(3)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
    index = RegistryIndex(db_url)
    assert index.schema_revision() == SCHEMA_HEAD
    index.close()
