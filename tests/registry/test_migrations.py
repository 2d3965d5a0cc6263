from __future__ import annotations

from pathlib import Path

from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from weightvault.registry.index import MIGRATIONS, SCHEMA_HEAD, RegistryIndex
from weightvault.registry.schema import Base


def test_schema_head_constant_matches_alembic() -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    assert ScriptDirectory.from_config(cfg).get_current_head() == SCHEMA_HEAD


def test_migrations_create_exactly_the_declared_schema(tmp_path: Path) -> None:
    index = RegistryIndex.sqlite(tmp_path / "i.db")
    assert index.schema_revision() == SCHEMA_HEAD
    insp = inspect(index.engine)
    for table in Base.metadata.sorted_tables:
        assert {c["name"] for c in insp.get_columns(table.name)} == {c.name for c in table.columns}
    index.close()
    again = RegistryIndex.sqlite(tmp_path / "i.db")  # reopening does not migrate twice
    assert again.schema_revision() == SCHEMA_HEAD
    again.close()
