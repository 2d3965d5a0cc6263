"""Listing a model's versions in two queries keeps each version's own aliases and the order."""

from __future__ import annotations

from pathlib import Path

from weightvault.vault.vault import Vault

from ..conftest import write_random


def test_versions_newest_first_with_their_own_aliases(vault: Vault, tmp_path: Path) -> None:
    src = tmp_path / "src"
    for i in range(4):
        write_random(src / "w.bin", 2000, seed=i)
        vault.push("m", src, version=f"v{i}")
    write_random(src / "w.bin", 2000, seed=9)
    vault.push("other", src, version="v0")
    vault.set_alias("m", "staging", "v0")
    vault.set_alias("m", "production", "v0")
    vault.set_alias("m", "canary", "v2")
    vault.set_alias("other", "production", "v0")
    records = vault.index.list_versions("m")
    assert [r.label for r in records] == ["v3", "v2", "v1", "v0"]
    assert {r.label: r.aliases for r in records} == {
        "v3": (),
        "v2": ("canary",),
        "v1": (),
        "v0": ("production", "staging"),
    }
    assert [r.aliases for r in vault.index.list_versions("other")] == [("production",)]
    one = vault.index.resolve("m", "v2")
    assert next(r for r in records if r.label == "v2") == one
