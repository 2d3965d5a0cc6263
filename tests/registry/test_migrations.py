from __future__ import annotations

from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from weightvault.registry.index import MIGRATIONS, SCHEMA_HEAD, RegistryIndex
from weightvault.registry.schema import Base


def test_schema_head_constant_matches_alembic() -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    assert ScriptDirectory.from_config(cfg).get_current_head() == SCHEMA_HEAD


def test_migrations_create_exactly_the_declared_schema(db_url: str) -> None:
    index = RegistryIndex(db_url)
    assert index.schema_revision() == SCHEMA_HEAD
    insp = inspect(index.engine)
    for table in Base.metadata.sorted_tables:
        assert {c["name"] for c in insp.get_columns(table.name)} == {c.name for c in table.columns}
    index.close()
    again = RegistryIndex(db_url)  # reopening does not migrate twice
    assert again.schema_revision() == SCHEMA_HEAD
    again.close()


def test_two_processes_opening_a_new_database_at_once_migrate_it_once(db_url: str) -> None:
    """Several server processes start together on one database: none fails, the schema is at head."""
    import subprocess
    import sys

    code = "import sys\nfrom weightvault.registry.index import RegistryIndex as R\nR(sys.argv[1]).close()"
    procs = [subprocess.Popen([sys.executable, "-c", code, db_url], stderr=subprocess.PIPE) for _ in range(3)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
    index = RegistryIndex(db_url)
    assert index.schema_revision() == SCHEMA_HEAD
    index.close()
