"""Migration 0002: the recipes table is keyed by recipe name; rows of an existing index survive."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import create_engine, inspect, text

from weightvault.registry.index import SCHEMA_HEAD, RegistryIndex, normalise_url, upgrade_schema


def test_upgrade_from_0001_keeps_recipes(db_url: str) -> None:
    url = db_url
    engine = create_engine(normalise_url(url))
    with engine.begin() as conn:
        upgrade_schema(conn, "0001")
        conn.execute(
            text("INSERT INTO recipes (sha256, size, body, created_at) VALUES (:s, 3, :b, :c)"),
            {"s": "ab" * 32, "b": b'{"x":1}', "c": datetime.now(UTC)},
        )
    engine.dispose()
    index = RegistryIndex(url)
    try:
        assert index.schema_revision() == SCHEMA_HEAD
        assert {c["name"] for c in inspect(index.engine).get_columns("recipes")} >= {"name", "body"}
        assert index.get_recipe("ab" * 32) == b'{"x":1}'
        assert index.recipe_names() == {"ab" * 32}
    finally:
        index.close()
