"""Rebuilding the registry index from the store alone (any single replica and its keys).

Order: packs (from their index objects, or from the table at the end of the pack when the
index object is lost), recipes, then versions oldest first, then aliases. A chunk found in
several packs is located in the one with the highest key slot (the newest seal; see
``RegistryIndex.add_pack``). Sealed recipes are recorded as stored; opening them (with the keys
of each encrypted model) is how recover tells them from garbage.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from weightvault.cas.pack import FOOTER, decode_table, table_size
from weightvault.core import layout
from weightvault.core.errors import (
    CorruptObjectError,
    FormatError,
    IntegrityError,
    MissingObjectError,
    WeightvaultError,
)
from weightvault.core.manifest import FileRecipe
from weightvault.vault.keyring import Domain, is_sealed_recipe

if TYPE_CHECKING:
    from weightvault.vault.vault import Vault


def _when(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def _open_recipe(name: str, data: bytes, domains: list[Domain]) -> FileRecipe:
    """A plain recipe (named by its file's SHA-256) or a sealed one of one of ``domains``."""
    if not is_sealed_recipe(data):
        recipe = FileRecipe.from_bytes(data)
        if recipe.sha256 != name:
            raise FormatError(f"recipe {name} names another file")
        return recipe
    for dom in domains:
        try:
            return FileRecipe.from_bytes(dom.open_recipe(name, data))
        except CorruptObjectError:
            continue
    raise CorruptObjectError(f"sealed recipe {name} opens with the keys of no model")


def rebuild_index(vault: Vault) -> dict[str, int]:
    backend, index, store = vault.backend, vault.index, vault.store
    counts = {"packs": 0, "recipes": 0, "versions": 0, "aliases": 0, "skipped": 0, "refused_refs": 0}
    # Every encrypted model's keys are opened before anything is cleared: sealed recipes can only
    # be told apart with them, and a key problem should stop recover while the index is intact.
    vault.keys.forget()
    domains = [d for m in vault.keys.models() if (d := vault.keys.domain(m)) is not None]
    index.clear()

    pack_infos = {layout.name_from_key(i.key): i for i in backend.list(layout.PACKS)}
    tables = {layout.name_from_key(i.key): i.key for i in backend.list(layout.INDEX)}
    for pack_id, info in pack_infos.items():
        try:
            if pack_id in tables:
                entries = decode_table(backend.get(tables[pack_id]))
            else:
                tail = backend.get_range(info.key, max(0, info.size - FOOTER.size), FOOTER.size)
                n = table_size(tail)
                entries = decode_table(backend.get_range(info.key, info.size - n, n))
        except (FormatError, MissingObjectError):
            counts["skipped"] += 1
            continue
        index.add_pack(pack_id, info.size, entries, created=_when(info.mtime))
        counts["packs"] += 1

    for info in backend.list(layout.RECIPES):
        name = layout.name_from_key(info.key)
        try:
            data = backend.get(info.key)
            recipe = _open_recipe(name, data, domains)
        except (IntegrityError, MissingObjectError):
            counts["skipped"] += 1
            continue
        index.put_recipe(name, recipe.size, data, created=_when(info.mtime))
        counts["recipes"] += 1

    versions: list[tuple[datetime, str, str, str]] = []
    aliases: list[tuple[str, str, str]] = []
    refused: list[tuple[str, str]] = []
    for model, kind, name, body in store.refs(refused):
        if kind == "version":
            versions.append((datetime.fromisoformat(body["created"]), model, name, body["commit"]))
        else:
            aliases.append((model, name, body["label"]))
    counts["skipped"] += len(refused)  # refs of encrypted models that fail authentication
    counts["refused_refs"] = len(refused)
    for created, model, label, commit in sorted(versions):
        try:
            manifest, stored = store.read_manifest(commit)
        except (MissingObjectError, IntegrityError):
            counts["skipped"] += 1
            continue
        if manifest.model != model:  # a manifest swapped in from another model
            counts["skipped"] += 1
            continue
        index.add_version(
            model=model,
            label=label,
            commit=commit,
            parent=manifest.parent,
            created=created,
            message=manifest.message,
            metadata=dict(manifest.metadata),
            total_size=manifest.total_size,
            file_count=len(manifest.files),
            manifest=stored,
        )
        counts["versions"] += 1
    for model, alias, label in aliases:
        try:
            index.set_alias(model, alias, label)
            counts["aliases"] += 1
        except WeightvaultError:
            counts["skipped"] += 1
    return counts
