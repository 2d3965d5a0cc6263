"""Migration 0005: an index at revision 0004 gains the shared upload-session table; its rows
(here: a principal and its token) survive, and sessions then work on it."""

from __future__ import annotations

from sqlalchemy import create_engine, inspect

from weightvault.registry.access import AccessStore
from weightvault.registry.index import SCHEMA_HEAD, RegistryIndex, normalise_url, upgrade_schema
from weightvault.registry.upload_sessions import UploadSessionIndex


def test_upgrade_from_0004_adds_upload_sessions_and_keeps_rows(db_url: str) -> None:
    engine = create_engine(normalise_url(db_url))
    with engine.begin() as conn:
        upgrade_schema(conn, "0004")
        conn.exec_driver_sql(
            "INSERT INTO principals (id, name, is_admin, created_at) VALUES (1, 'alice', false, "
            "'2026-01-01 00:00:00+00:00')"
        )
    assert "upload_sessions" not in inspect(engine).get_table_names()
    engine.dispose()

    index = RegistryIndex(db_url)  # opening migrates to head
    try:
        assert index.schema_revision() == SCHEMA_HEAD
        assert "upload_sessions" in inspect(index.engine).get_table_names()
        assert AccessStore(index).has_principals()
        table = UploadSessionIndex(index)
        rec = table.create("org/m", "w.bin", 10, "0" * 64, "alice")
        assert table.get(rec.id) == rec
        assert table.touch(rec.id)
        table.remove(rec.id)
        assert table.get(rec.id) is None and not table.touch(rec.id)
    finally:
        index.close()
